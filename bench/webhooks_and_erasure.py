"""Webhooks and erasure costs: RCPT lookup with the erasure hash, erase time, webhook drain rate.

    python3 bench/webhooks_and_erasure.py [--entries 100000] [--events 1000000]
                                          [--webhook-events 50000]

1. `SuppressionStore.lookup()` — the query each RCPT costs — with no erasure
   key (nothing ever erased: no hash computed) and with one (the recipient's
   HMAC is computed and looked up in the same query), over `--entries` stored
   suppressions, 4,000 lookups each, hits and misses mixed.
2. `erase_address()` on a state.db holding `--events` events (1 in 1,000 for
   the erased address) plus the suppression table: the scan-and-rewrite time.
3. A webhook sender draining a backlog of `--webhook-events` events to a local
   aiohttp receiver that verifies each signature (batch_size 100 and 500).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.clock import SystemClock
from gateway.model import Event, EventType, Reply, Secret, Suppression, SuppressionReason
from gateway.retention import erase_address
from gateway.state import StateStore
from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import EVENTS
from gateway.webhooks.dispatcher import WebhookDispatcher
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.settings import WebhookConfig
from tests.fixtures.webhook_receiver import Receiver

SECRET = "bench-secret-0123456789"


async def lookups(state: StateStore, entries: int, n: int = 4000) -> tuple[float, float]:
    rng = random.Random(entries)
    times = []
    for k in range(n):
        i = rng.randrange(entries) if k % 2 == 0 else entries + rng.randrange(10**9)
        addr = f"user{i}@domain{i % 5000}.example"
        t0 = time.perf_counter()
        await state.suppressions.lookup((addr, "@" + addr.split("@")[1]), 2.0)
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return statistics.median(times), times[int(n * 0.95)]


async def bench_lookup(work: Path, entries: int) -> None:
    state = StateStore(work / "state.db")
    await state.open()
    for start in range(0, entries, 100_000):
        count = min(100_000, entries - start)
        await state.suppressions.add(
            [Suppression(f"user{i}@domain{i % 5000}.example", SuppressionReason.HARD_BOUNCE,
                         "all", 1.0, "bench") for i in range(start, start + count)], "b", 1.0)
    await lookups(state, entries, 500)  # warm the page cache
    before = await lookups(state, entries)
    state.hasher.ensure_key()
    after = await lookups(state, entries)
    await state.close()
    print(f"| lookup, {entries:,} entries | no erasure key: median {before[0]:.1f} µs,"
          f" p95 {before[1]:.1f} µs | with key (hash looked up too): median {after[0]:.1f} µs,"
          f" p95 {after[1]:.1f} µs |")


async def bench_erase(work: Path, events: int) -> None:
    state = StateStore(work / "state.db")
    await state.open()
    reply = Reply(250, "2.0.0", "OK")
    for start in range(0, events, 100_000):
        state.events.record(
            Event(1.0, f"Q{i // 3}", EventType.DELIVERED,
                  "guest@example.net" if i % 1000 == 0 else f"user{i}@example.org",
                  message_id=f"<{i}@app>", route="default", host="mx.example.org", reply=reply,
                  detail=f"from <app@example.com> via relay size={i}")
            for i in range(start, min(events, start + 100_000)))
        await state.events.flush()  # type: ignore[attr-defined]
    await state.suppressions.add([Suppression("guest@example.net",
                                              SuppressionReason.COMPLAINT)], "b", 1.0)
    t0 = time.perf_counter()
    report = await erase_address(state, "guest@example.net", "bench")
    elapsed = time.perf_counter() - t0
    await state.close()
    print(f"| erase, {events:,} events | {elapsed:.2f} s | {report.changed['events']:,} events"
          f" rewritten, checkpointed={report.checkpointed} |")


async def bench_webhook(work: Path, count: int, batch: int) -> None:
    state = StateStore(work / f"hook{batch}.db")
    await state.open()
    receiver = Receiver(SECRET).start()
    clock = SystemClock()
    cfg = WebhookConfig(name="bench", url=receiver.url, secret=Secret(SECRET),
                        batch_size=batch, poll_interval=0.05)
    events_db = StateDb(state.path, EVENTS)
    dispatcher = WebhookDispatcher([cfg], Outbox(events_db), clock)
    await dispatcher.start()
    await asyncio.sleep(0.2)  # the sender's cursor is set (at the empty table's head)
    reply = Reply(250, "2.0.0", "OK")
    state.events.record(Event(clock.now(), f"Q{i}", EventType.DELIVERED, f"u{i}@example.org",
                              message_id=f"<{i}@app>", route="default", host="mx", reply=reply)
                        for i in range(count))
    await state.events.flush()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for _ in range(100_000):  # bounded wait
        if dispatcher.events_sent >= count:
            break
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    await dispatcher.stop()
    await events_db.close()
    receiver.stop()
    await state.close()
    assert not receiver.rejected and len(receiver.events()) == count
    print(f"| webhook drain, batch_size {batch} | {count:,} events in {elapsed:.2f} s |"
          f" {count / elapsed:,.0f} events/s ({len(receiver.batches)} POSTs) |")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hookbench.") as tmp:
        work = Path(tmp)
        (work / "a").mkdir()
        (work / "b").mkdir()
        await bench_lookup(work / "a", args.entries)
        await bench_erase(work / "b", args.events)
        for batch in (100, 500):
            await bench_webhook(work, args.webhook_events, batch)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--webhook-events", type=int, default=50_000)
    asyncio.run(main(p.parse_args()))
