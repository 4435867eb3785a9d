"""Per-message CPU of the cleanup stage, in-process (issue 16).

    python3 bench/cleanup_cost.py [--n 20000]

"ordinary" is the message smtp-source sends in the relay benchmarks (From, To,
Date, Message-Id, 2 KiB of 7-bit text in short lines): it needs no repair, so
this is the common path every message pays — the CR/LF check at DATA plus
Cleanup.clean(). The other rows are repairs, for scale. Prints the median over
5 passes of CPU µs (thread time: time the machine gives to other processes
does not count) per message.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from gateway.cleanup import Cleanup, replace_stray_cr_lf
from gateway.model import Client, Envelope

HEAD = (b"From: <from@example.com>\r\nTo: <to@example.net>\r\n"
        b"Date: Mon,  7 Dec 2026 14:37:49 +0000 (UTC)\r\nMessage-Id: <2f28.0003.0000@vm>\r\n")
ORDINARY = HEAD + b"\r\n" + b"".join(b"%dX" % (i % 10) + b"X" * 77 + b"\r\n" for i in range(25))
MESSAGES = {
    "ordinary 2 KiB (common path)": ORDINARY,
    "long HTML line (re-encoded)": HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
    + b"<td>x</td>" * 200 + b"\r\n",
    "8-bit body (made 7-bit)": HEAD + "\r\nGrüße aus Köln\r\n".encode() * 100,
    "Subject : (obsolete syntax)": HEAD + b"Subject : hi\r\n\r\n" + ORDINARY[len(HEAD) + 2:],
    "no Date, no Message-ID": b"From: <from@example.com>\r\n\r\n" + ORDINARY[len(HEAD) + 2:],
}


def per_message(step: Callable[[], object], n: int) -> float:
    passes = []
    for _ in range(5):
        t0 = time.thread_time()
        for _ in range(n):
            step()
        passes.append((time.thread_time() - t0) / n * 1e6)
    return statistics.median(passes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    cleanup = Cleanup("gateway.bench.invalid")
    envelope = Envelope("from@example.com", ("to@example.net",), Client("relay", "127.0.0.1"),
                        time.time())
    print(f"{'message':34} {'octets':>7} {'CPU µs/message':>15}")
    for name, message in MESSAGES.items():
        def step(message: bytes = message) -> object:
            return cleanup.clean(envelope, replace_stray_cr_lf(message))
        n = args.n if name.startswith("ordinary") else max(args.n // 10, 100)
        print(f"{name:34} {len(message):7} {per_message(step, n):15.1f}")


if __name__ == "__main__":
    main()
