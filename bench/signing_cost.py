"""DKIM signing cost per message: DkimSigner.sign() on 2 KB and 100 KB messages
with RSA 2048, Ed25519 and both (dual signing), plus the cost of a message
whose domain has no key (parsed, then passed on unsigned).

    python bench/signing_cost.py [--seconds 2]

Prints one line per case: median and 95th percentile time per message and the
messages per second one core signs. Keys are made fresh in memory; nothing is
written to disk. The intake on/off throughput comparison is bench/'s job with
the whole gateway (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.signing.keys import generate_private_key, parse_private_key
from gateway.signing.settings import DkimConfig, DkimKey
from gateway.signing.signer import DkimSigner, SignOutcome

HEAD = (b"Received: from app.test ([127.0.0.1])\r\n\tby gateway.test with ESMTP id 01JD5Q8W3K\r\n"
        b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
        b"Subject: Your booking is confirmed\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"Message-ID: <booking-42@example.com>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")


def message(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * ((size - len(HEAD)) // len(line) + 1)
    return HEAD + body[: size - len(HEAD) - 2] + b"\r\n"


def signer(algorithms: tuple[str, ...]) -> DkimSigner:
    keys = tuple(
        DkimKey("example.com", f"s{i}", algo, Path("/dev/null"), True,
                parse_private_key(generate_private_key(algo)))
        for i, algo in enumerate(algorithms))
    return DkimSigner(DkimConfig(keys=keys, dual_sign=len(keys) > 1))


def measure(sign: DkimSigner, content: bytes, seconds: float,
            expect: SignOutcome) -> list[float]:
    assert sign.sign(content).outcome is expect  # and a warm-up
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 20:
        start = time.perf_counter()
        sign.sign(content)
        times.append(time.perf_counter() - start)
    return times


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()}, "
          f"dkimpy {metadata.version('dkimpy')}")
    print(f"{'case':<32} {'median':>10} {'p95':>10} {'msg/s/core':>11}")
    signers = {"rsa-2048": signer(("rsa",)), "ed25519": signer(("ed25519",)),
               "rsa-2048 + ed25519 (dual)": signer(("rsa", "ed25519"))}
    for size in (2 * 1024, 100 * 1024):
        content = message(size)
        cases = [(name, s, content, SignOutcome.SIGNED) for name, s in signers.items()]
        no_key = content.replace(b"app@example.com", b"app@elsewhere.test")
        cases.append(("no key: parsed, unsigned", signers["ed25519"], no_key,
                      SignOutcome.UNSIGNED))
        for name, sign, data, expect in cases:
            times = measure(sign, data, args.seconds, expect)
            median = statistics.median(times)
            p95 = statistics.quantiles(times, n=20)[-1]
            print(f"{name + f' {size // 1024} KB':<32} {median * 1e6:>8.0f}µs "
                  f"{p95 * 1e6:>8.0f}µs {1 / median:>11.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
