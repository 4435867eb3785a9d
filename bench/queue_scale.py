#!/usr/bin/env python3
"""Queue scale: start-up with a big spool, and scheduling with a huge index.

    python3 bench/queue_scale.py [--files 100000] [--rows 1000000] [--dir /tmp/qscale]

1. Writes --files deferred queue files (2 KB, indexed), then measures a cold
   start-up: Spool.open() = directory listing + reconciliation with the index.
   Then deletes the index and measures the rebuild from the files' headers.
2. Adds --rows extra index rows (deferred, due over 5 days) and times the
   scheduler's queries: "what is due now?" (LIMIT 1000) and the next due time,
   plus the query plan (it must use the messages_due index, not scan).
3. Times Spool.put() at 20 concurrent writers into a spool that holds the
   --files queued messages and the index rows, against an empty spool (intake
   never reads the index; the directories are what it shares with the queue).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.model import Client, Envelope, QueuedMessage, QueueState
from gateway.spool import Spool
from gateway.spool.queue_id import new_queue_id
from gateway.spool.store import encode_header

BODY = b"Subject: scale\r\n\r\n" + b"x" * 2000 + b"\r\n"


def envelope(now: float) -> Envelope:
    return Envelope("app@example.com", ("guest@example.net",), Client("relay", "127.0.0.1"), now)


async def build(root: Path, files: int) -> None:
    spool = Spool(root, SystemClock(), fsync=False)  # set-up only; measured paths fsync
    await spool.open()
    now = time.time()
    for i in range(files):
        qm = QueuedMessage(new_queue_id(now - i * 0.001), envelope(now), len(BODY))
        spool.files.path(qm.id, QueueState.DEFERRED).write_bytes(encode_header(qm) + BODY)
        spool.index.add(qm, QueueState.DEFERRED)
        spool.index.set_state(qm.id, QueueState.DEFERRED, next_attempt_at=now + 3600,
                              attempts=1)
        if i % 5000 == 0:
            await spool.index.flush()
    await spool.close()


async def timed_open(root: Path) -> tuple[float, object]:
    spool = Spool(root, SystemClock())
    t = time.perf_counter()
    recovery = await spool.open()
    elapsed = time.perf_counter() - t
    await spool.close()
    return elapsed, recovery


def add_rows(db: Path, rows: int) -> None:
    con = sqlite3.connect(db)
    now = time.time()
    rng = random.Random(1)
    with con:
        con.executemany(
            "INSERT INTO messages (id, state, created_at, next_attempt_at, attempts, sender,"
            " message_id, size, recipient_count) VALUES (?, 'deferred', ?, ?, 1, ?, NULL, 2048, 1)",
            ((new_queue_id(now - i * 0.0001), now, now + rng.uniform(-60, 5 * 86400),
              "app@example.com") for i in range(rows)),
        )
    con.close()


async def query_times(root: Path) -> dict[str, float]:
    spool = Spool(root, SystemClock())
    await spool.index.open()
    now = time.time()
    due, nxt = [], []
    for _ in range(50):
        t = time.perf_counter()
        await spool.index.due(now, 1000)
        due.append(time.perf_counter() - t)
        t = time.perf_counter()
        await spool.index.next_due_time()
        nxt.append(time.perf_counter() - t)
    await spool.index.close()
    return {"due_ms": statistics.median(due) * 1000, "next_due_ms": statistics.median(nxt) * 1000}


def plan(db: Path) -> str:
    con = sqlite3.connect(db)
    rows = con.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE state = 'deferred'"
        " AND next_attempt_at <= 0 ORDER BY next_attempt_at LIMIT 1000").fetchall()
    con.close()
    return "; ".join(str(r[-1]) for r in rows)


async def put_rate(root: Path, n: int = 4000, concurrency: int = 20) -> float:
    # As an intake worker opens it: the spool's directories, not the index.
    spool = Spool(root, SystemClock())
    spool.open_for_intake()
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await spool.put(envelope(time.time()), BODY)

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    rate = n / (time.perf_counter() - t)
    for queue_id in spool.files.ids(QueueState.INCOMING):
        spool.files.remove(queue_id, QueueState.INCOMING)
    await spool.close()
    return rate


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dir", default="/tmp/qscale")
    a = p.parse_args()
    root = Path(a.dir)
    shutil.rmtree(root, ignore_errors=True)
    empty_rate = await put_rate(root)
    t = time.perf_counter()
    await build(root, a.files)
    print(f"built {a.files} deferred queue files in {time.perf_counter() - t:.1f}s", flush=True)
    elapsed, recovery = await timed_open(root)
    print(f"start-up with {a.files} queued (index intact): {elapsed:.2f}s  {recovery}", flush=True)
    (root / "queue.db").unlink()
    for extra in ("queue.db-wal", "queue.db-shm"):
        (root / extra).unlink(missing_ok=True)
    elapsed, recovery = await timed_open(root)
    print(f"start-up with {a.files} queued (index lost, rebuilt from files): {elapsed:.2f}s",
          flush=True)
    add_rows(root / "queue.db", a.rows)
    total = a.rows + a.files
    print(f"index rows: {total}; query plan: {plan(root / 'queue.db')}", flush=True)
    print(f"scheduler queries at {total} rows: {await query_times(root)}", flush=True)
    full_rate = await put_rate(root)
    print(f"Spool.put at 20 writers: empty queue {empty_rate:.0f}/s, "
          f"with {total} indexed {full_rate:.0f}/s")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
