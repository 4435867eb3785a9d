#!/usr/bin/env python3
"""Admin API queries on a big event store: summary (last hour, last day) and trace.

    python3 bench/admin_queries.py [--messages 250000] [--runs 5]

Fills a fresh state.db through SqliteEventStore (the gateway's own write path)
with `--messages` one-recipient messages spread over the last 24 hours: each
has an `accepted` and a `delivered` or `bounced` event on one of three routes,
a category tag and an X-Booking-Id tag (four messages per booking). Then times
EventStore.summary() for the last hour and the last day, and a trace by
booking id and by queue id (median of `--runs`), and what recording a
correlation header costs intake per message (gateway.intake.accept.header_tags
on a typical 10-field header). Prints the machine too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from gateway.intake.accept import header_tags
from gateway.model import Client, Envelope, Event, EventType, QueuedMessage, Reply
from gateway.spool.queue_id import new_queue_id
from gateway.state.events import SqliteEventStore


async def fill(store: SqliteEventStore, messages: int, now: float) -> list[str]:
    client = Client("relay", "127.0.0.1")
    ids = []
    for i in range(messages):
        t = now - 86400 + 86400 * i / messages
        qid = new_queue_id(t)
        env = Envelope("app@example.com", (f"g{i}@example.net",), client, t,
                       message_id=f"<m{i}@example.com>",
                       category="marketing" if i % 3 == 0 else "transactional",
                       tags=(("x-booking-id", f"B-{i // 4}"),))
        store.record_accepted(QueuedMessage(qid, replace(env), 1000), t)
        ok = i % 50 != 0
        store.record([Event(t + 1, qid, EventType.DELIVERED if ok else EventType.BOUNCED,
                            f"g{i}@example.net", env.message_id, f"route{i % 3}", "mx.test",
                            Reply(250, "2.0.0", "ok") if ok else Reply(550, "5.1.1", "no"))])
        ids.append(qid)
        if i % 10_000 == 0:
            await store.flush()
    await store.flush()
    return ids


async def timed(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


HEADER = (b"Received: from app.test (app.test [127.0.0.1])\r\n\tby gw.test with ESMTP id 1\r\n"
          b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
          b"Subject: Your booking B-123\r\nDate: Mon, 23 Nov 2026 14:00:00 +0000\r\n"
          b"Message-ID: <booking-42@example.com>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\nX-Booking-Id: B-123\r\n\r\n"
          + b"Body line.\r\n" * 200)


def header_tags_cost(rounds: int = 200_000) -> float:
    """Microseconds per message."""
    start = time.perf_counter()
    for _ in range(rounds):
        header_tags(HEADER, ("x-booking-id",))
    return (time.perf_counter() - start) / rounds * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=250_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteEventStore(Path(tmp) / "state.db")
        await store.open()
        now = time.time()
        start = time.perf_counter()
        ids = await fill(store, args.messages, now)
        print(f"filled {args.messages} messages ({2 * args.messages} events) in "
              f"{time.perf_counter() - start:.1f}s")
        hour = await timed(args.runs, lambda: store.summary(now - 3600))
        day = await timed(args.runs, lambda: store.summary(now - 86400))
        booking = await timed(args.runs, lambda: store.by_tag("x-booking-id", "B-1234"))
        by_id = await timed(args.runs, lambda: store.by_queue_id(ids[len(ids) // 2]))
        print(f"summary last hour: {hour:.1f} ms   last day: {day:.1f} ms")
        print(f"trace by booking id: {booking:.2f} ms   by queue id: {by_id:.2f} ms")
        print(f"correlation header at intake: {header_tags_cost():.1f} µs per message")
        await store.close()
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}")


if __name__ == "__main__":
    asyncio.run(main())
