#!/usr/bin/env python3
"""What one queue-gauge sample costs with a big queue (gateway.metrics.queue).

    python3 bench/queue_metrics_sample.py [--rows 100000 1000000] [--dir /tmp/qmetrics]

For each size: an index of that many deferred messages (one recipient each,
spread over 3 routes and 3 categories, as a retry leaves them), 1,000 files in
incoming/, then `QueueSampler.sample()` five times (depth by state and route,
oldest per category, the directory counts and 100 headers each of incoming/
and active/), then the two index queries alone, with a scheduler-like query
asked every 10 ms meanwhile: its worst wait is what counting costs delivery
(the count shares the index's database connection with the scheduler, in
chunks of DEPTH_CHUNK messages). The sampler runs every
`metrics.queue_sample_interval` (10 s), or less often when a sample is slow.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.metrics.queue import QueueSampler
from gateway.model import Client, Envelope, QueuedMessage, QueueState, RecipientState, Reply
from gateway.spool import Spool

ROUTES = ("mx", "providers", "bulk")
CATEGORIES = ("transactional", "marketing", "feedback")
LATER = Reply(451, "4.2.0", "later")


def message(i: int, now: float) -> QueuedMessage:
    env = Envelope("app@example.com", (f"g{i}@example.net",), Client("relay", "127.0.0.1"),
                   now - i % 86400, category=CATEGORIES[i % 3])
    return QueuedMessage(f"M{i:012d}", env, 2000)


async def fill(spool: Spool, rows: int, now: float) -> None:
    for start in range(0, rows, 50_000):
        batch = [message(i, now) for i in range(start, min(rows, start + 50_000))]
        spool.index.add_many((qm, QueueState.DEFERRED) for qm in batch)
        for qm in batch:
            spool.index.set_recipients(
                qm.id, [(0, RecipientState.DEFERRED, ROUTES[int(qm.id[1:]) % 3], LATER)], now)
        await spool.index.flush()
    for _ in range(1000):
        env = Envelope("app@example.com", ("g@example.net",), Client("relay", "127.0.0.1"), now,
                       category="transactional")
        await spool.put(env, b"Subject: x\r\n\r\nx\r\n", queue_id=spool.new_id())


async def depth_with_waits(spool: Spool) -> tuple[float, float]:
    """depth() while a scheduler-like query ("next due time") is asked every 10 ms:
    (depth's duration, that query's worst wait), in seconds."""
    started = time.perf_counter()
    task = asyncio.ensure_future(spool.index.depth())
    worst = 0.0
    for _ in range(1_000_000):
        if task.done():
            break
        await asyncio.sleep(0.01)
        asked = time.perf_counter()
        await spool.index.next_due_time()
        worst = max(worst, time.perf_counter() - asked)
    await task
    return time.perf_counter() - started, worst


async def run(rows: int, directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    clock = SystemClock()
    spool = Spool(directory / "spool", clock, fsync=False)
    await spool.open()
    try:
        started = time.perf_counter()
        await fill(spool, rows, clock.now())
        filled = time.perf_counter() - started
        sampler = QueueSampler(spool, clock)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            sample = await sampler.sample()
            times.append(time.perf_counter() - started)
        deferred = sum(n for (state, _), n in sample.depth.items() if state == "deferred")
        took, worst = await depth_with_waits(spool)
        depth_ms, worst_wait = took * 1000, worst * 1000
        started = time.perf_counter()
        await spool.index.oldest_by_category()
        oldest_ms = (time.perf_counter() - started) * 1000
        print(f"{rows:>9,} deferred (filled in {filled:.0f} s): sample median "
              f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
              f"(depth {depth_ms:.0f} ms, oldest {oldest_ms:.1f} ms); a scheduler query "
              f"meanwhile waited at most {worst_wait:.0f} ms; "
              f"deferred counted {deferred:,}, incoming "
              f"{sample.depth[('incoming', 'none')]:,}, categories {sorted(sample.oldest)}")
    finally:
        await spool.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/qmetrics"))
    args = parser.parse_args()
    for rows in args.rows:
        asyncio.run(run(rows, args.dir))


if __name__ == "__main__":
    main()
