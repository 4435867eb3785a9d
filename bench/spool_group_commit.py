#!/usr/bin/env python3
"""Spool.put() rate at 1, 5, 20 and 50 concurrent writers: does group commit pay?

    python3 bench/spool_group_commit.py [--n 3000] [--dir /var/tmp/gcbench]

Each put is durable (file fdatasync + directory fsync) exactly as at intake;
the directory must be on the filesystem you want to measure (not tmpfs).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.model import Client, Envelope
from gateway.spool import Spool

BODY = b"Subject: gc\r\n\r\n" + b"x" * 2000 + b"\r\n"


async def rate(root: Path, n: int, writers: int) -> tuple[float, int]:
    shutil.rmtree(root, ignore_errors=True)
    spool = Spool(root, SystemClock())
    spool.open_for_intake()
    sem = asyncio.Semaphore(writers)
    env = Envelope("a@example.com", ("b@example.net",), Client("relay", "127.0.0.1"), time.time())

    async def one() -> None:
        async with sem:
            await spool.put(env, BODY)

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - t
    commits = spool.files.commits
    await spool.close()
    shutil.rmtree(root, ignore_errors=True)
    return n / elapsed, commits


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--dir", default="/var/tmp/gcbench")
    a = p.parse_args()
    print("| writers | puts/s | directory fsyncs | messages per fsync |")
    print("|---|---|---|---|")
    for writers in (1, 5, 20, 50):
        puts, commits = await rate(Path(a.dir), a.n, writers)
        print(f"| {writers} | {puts:.0f} | {commits} | {a.n / commits:.1f} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
