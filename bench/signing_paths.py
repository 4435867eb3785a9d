#!/usr/bin/env python3
"""DKIM signing: the bytes path (gateway/signing/signature.py) against the dkimpy path
that messages it does not take still use, same keys, same messages, same process.

    python bench/signing_paths.py [--rounds 300]

CPU time (time.process_time) per message, so that a busy machine slows both paths
alike rather than adding other processes' time; RSA-2048 and Ed25519, 2 and 50 KiB,
relaxed/relaxed. Also `openssl speed`'s figure would be the floor for RSA: compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.signing.keys import generate_private_key, parse_private_key
from gateway.signing.settings import DkimConfig, DkimKey
from gateway.signing.signer import DkimSigner

HEAD = (b"Received: from app.test ([127.0.0.1])\r\n\tby gateway.test with ESMTP id 01JD5Q\r\n"
        b"From: <from@example.com>\r\nTo: <to@example.net>\r\n"
        b"Date: Mon, 7 Dec 2026 14:16:46 +0000\r\nMessage-Id: <3885.0003.0000@vm>\r\n\r\n")


def cpu_us(fn: Callable[[], object], rounds: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - start) / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    print("| key | message | bytes path µs | dkimpy path µs | saved |")
    print("|---|---|---|---|---|")
    for algorithm in ("rsa", "ed25519"):
        key = parse_private_key(generate_private_key(algorithm))
        signer = DkimSigner(DkimConfig(keys=(
            DkimKey("example.com", "s1", algorithm, Path("/nonexistent"), True, key),)))
        for kib in (2, 50):
            body = b"".join(f"{i:05d} {'x' * 70}\r\n".encode() for i in range(kib * 1024 // 77))
            message = HEAD + body
            fast = cpu_us(lambda m=message, s=signer: s.sign(m, crlf=True), args.rounds)
            slow = cpu_us(lambda m=message, s=signer: s._sign_with_dkimpy(m), args.rounds)
            print(f"| {algorithm} | {kib} KiB | {fast:.0f} | {slow:.0f} | {slow - fast:.0f} µs |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
