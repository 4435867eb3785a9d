"""Webhooks and erasure costs: RCPT lookup with the erasure hash, erase time, webhook drain rate.

    python3 bench/webhooks_and_erasure.py [--entries 100000] [--events 1000000]
                                          [--webhook-events 50000]
                                          [--backends sqlite,postgresql] [--pg DSN]

1. `SuppressionStore.lookup()` — the query each RCPT costs — with no erasure
   key (nothing ever erased: no hash computed) and with one (the recipient's
   HMAC is computed and looked up in the same query), over `--entries` stored
   suppressions, 4,000 lookups each, hits and misses mixed.
2. `erase_address()` on a state.db holding `--events` events (1 in 1,000 for
   the erased address) plus the suppression table: the scan-and-rewrite time.
3. A webhook sender draining a backlog of `--webhook-events` events to a local
   aiohttp receiver that verifies each signature (batch_size 100 and 500).

2 and 3 run on each of `--backends`: SQLite files in a temporary directory, and
PostgreSQL in a scratch database made on the server of `--pg` (an admin DSN,
default postgresql://postgres@127.0.0.1:5432/postgres) and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.clock import SystemClock
from gateway.model import Event, EventType, Reply, Secret, Suppression, SuppressionReason
from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import EVENTS
from gateway.state.retention import erase_address
from gateway.state.settings import StateConfig
from gateway.state.store import StateStore
from gateway.webhooks.dispatcher import WebhookDispatcher
from gateway.webhooks.outbox import Outbox, SqliteOutbox
from gateway.webhooks.outbox_postgres import PostgresOutbox
from gateway.webhooks.settings import WebhookConfig
from tests.fixtures.webhook_receiver import Receiver

SECRET = "bench-secret-0123456789"
# A state store on the backend being measured, in a directory of its own.
Opener = Callable[[Path], StateStore]


@asynccontextmanager
async def scratch_database(admin_dsn: str) -> AsyncIterator[str]:
    """A database made (and migrated) for this run on the server of `admin_dsn`."""
    name = f"hookbench_{os.getpid()}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        await StateStore(Path("/nonexistent/state.db"), StateConfig(dsn=Secret(dsn))).migrate()
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def empty_events(state: StateStore) -> None:
    if state.postgres is not None:
        await state.postgres.run(lambda c: c.execute(
            "TRUNCATE events, message_tags, webhook_cursors, suppressions, consent, audit,"
            " erasure_key"))


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


async def bench_erase(work: Path, events: int, open_state: Opener, backend: str) -> None:
    state = open_state(work)
    await state.open()
    await empty_events(state)
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
    print(f"| erase, {events:,} events, {backend} | {elapsed:.2f} s |"
          f" {report.changed['events']:,} events rewritten, checkpointed={report.checkpointed} |")


async def bench_webhook(work: Path, count: int, batch: int, open_state: Opener,
                        backend: str) -> None:
    state = open_state(work)
    await state.open()
    await empty_events(state)
    receiver = Receiver(SECRET).start()
    clock = SystemClock()
    cfg = WebhookConfig(name="bench", url=receiver.url, secret=Secret(SECRET),
                        batch_size=batch, poll_interval=0.05)
    events_db = StateDb(state.path, EVENTS)
    outbox: Outbox = SqliteOutbox(events_db)
    if state.postgres is not None:
        outbox = PostgresOutbox(state.postgres, clock)
    dispatcher = WebhookDispatcher([cfg], outbox, clock)
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
    print(f"| webhook drain, batch_size {batch}, {backend} | {count:,} events in {elapsed:.2f} s"
          f" | {count / elapsed:,.0f} events/s ({len(receiver.batches)} POSTs) |")


async def on_backend(work: Path, args: argparse.Namespace, backend: str, dsn: str | None
                     ) -> None:
    config = StateConfig() if dsn is None else StateConfig(dsn=Secret(dsn))

    def open_state(directory: Path) -> StateStore:
        directory.mkdir(exist_ok=True)
        return StateStore(directory / "state.db", config)
    await bench_erase(work / f"erase-{backend}", args.events, open_state, backend)
    for batch in (100, 500):
        await bench_webhook(work / f"hook{batch}-{backend}", args.webhook_events, batch,
                            open_state, backend)


async def main(args: argparse.Namespace) -> None:
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="hookbench.") as tmp:
        work = Path(tmp)
        (work / "a").mkdir()
        if args.entries:
            await bench_lookup(work / "a", args.entries)
        if "sqlite" in backends:
            await on_backend(work, args, "sqlite", None)
        if "postgresql" in backends:
            async with scratch_database(args.pg) as dsn:
                await on_backend(work, args, "postgresql", dsn)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--webhook-events", type=int, default=50_000)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="an admin DSN: a scratch database is made on that server")
    asyncio.run(main(p.parse_args()))
