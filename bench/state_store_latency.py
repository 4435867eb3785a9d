"""State-store operation latency: SQLite (embedded) against PostgreSQL (shared), through
the real StateStore interfaces, as the policy stage and the event writer call them.

    python3 bench/state_store_latency.py [--rows 100000] [--n 2000]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Creates (and drops) a database of its own on the PostgreSQL server, fills both
backends with ROWS suppressions and ROWS/10 consent records, then times N of:
suppression lookup (half hits, half misses; the address and its @domain, as at
RCPT), consent lookup (the latest record of one address), event writes
(one event recorded and flushed = the latency a reader waits for; and a
batch of 100, per event = the writer's cost), and idempotency keys as intake
uses them at DATA (a new message: claim, then stored — the claim alone too;
a resend: a claim that finds the key held). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from gateway.model import ConsentRecord, Event, EventType, Secret, Suppression, SuppressionReason
from gateway.state.events import SqliteEventStore
from gateway.state.postgres_stores import PostgresEventStore
from gateway.state.settings import StateConfig
from gateway.state.store import StateStore


async def fill(state: StateStore, rows: int) -> None:
    for start in range(0, rows, 50_000):
        await state.suppressions.add(
            [Suppression(f"user{i}@domain{i % 5000}.example", SuppressionReason.HARD_BOUNCE,
                         "all", 1.0, "bench") for i in range(start, min(rows, start + 50_000))],
            "bench", 1.0)
    await state.consent.record(
        [ConsentRecord(f"user{i}@domain{i % 5000}.example", "marketing", i % 3 != 0, 1.0 + i,
                       "imported") for i in range(rows // 10)], "bench", 1.0)


async def timed(n: int, op: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await op(i)
        out.append((time.perf_counter() - t0) * 1e6)
    return out


async def flush(state: StateStore) -> None:
    events = state.events
    assert isinstance(events, SqliteEventStore | PostgresEventStore)
    await events.flush()


async def measure(state: StateStore, rows: int, n: int) -> dict[str, list[float]]:
    def address(i: int) -> str:
        j = (i * 7919) % rows if i % 2 == 0 else rows + i  # even: a hit, odd: a miss
        return f"user{j}@domain{j % 5000}.example"

    async def lookup(i: int) -> None:
        a = address(i)
        await state.suppressions.lookup((a, "@" + a.split("@")[1]), 1000.0)

    async def consent(i: int) -> None:
        await state.consent.current((address(i),), "marketing")

    def event(i: int) -> Event:
        return Event(time.time(), f"Q{i:08d}", EventType.ACCEPTED, f"r{i}@example.net",
                     f"<m{i}@example.com>", detail="from <app@example.com> via relay")

    async def one_event(i: int) -> None:
        state.events.record([event(i)])
        await flush(state)

    async def batch(i: int) -> None:
        state.events.record([event(i * 100 + k) for k in range(100)])
        await flush(state)

    keys = state.idempotency

    async def claim(i: int) -> None:
        assert (await keys.claim("ip:192.0.2.1", f"mid:a:{i}", f"A{i:08d}", 1000.0 + i,
                                 86400.0, 600.0)).won

    async def claim_and_store(i: int) -> None:
        await keys.claim("ip:192.0.2.1", f"mid:b:{i}", f"B{i:08d}", 1000.0 + i, 86400.0,
                         600.0)
        await keys.stored("ip:192.0.2.1", f"mid:b:{i}", f"B{i:08d}")

    async def resend(i: int) -> None:
        assert not (await keys.claim("ip:192.0.2.1", f"mid:b:{i}", f"C{i:08d}",
                                     1000.0 + n + i, 86400.0, 600.0)).won

    await timed(200, lookup)  # warm caches and connections
    out = {"suppression lookup": await timed(n, lookup),
           "consent lookup": await timed(n, consent),
           "event write, 1 + flush": await timed(n, one_event)}
    out["event write, batch of 100, per event"] = [
        t / 100 for t in await timed(max(1, n // 20), batch)]
    out["idempotency claim (new key)"] = await timed(n, claim)
    out["idempotency claim + stored (a new message)"] = await timed(n, claim_and_store)
    out["idempotency claim, key held (a resend)"] = await timed(n, resend)
    return out


async def main(rows: int, n: int, pg_admin: str) -> None:
    name = f"gwbench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_admin)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = pg_admin.rsplit("/", 1)[0] + "/" + name
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend, config in (("SQLite", StateConfig()),
                                    ("PostgreSQL", StateConfig(dsn=Secret(dsn)))):
                state = StateStore(Path(tmp) / "state.db", config)
                await state.migrate()
                await state.open()
                t0 = time.perf_counter()
                await fill(state, rows)
                print(f"{backend}: filled {rows} suppressions in {time.perf_counter() - t0:.1f}s")
                results[backend] = await measure(state, rows, n)
                await state.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    print("\n| operation | SQLite median | p95 | PostgreSQL median | p95 |\n|---|---|---|---|---|")
    for op in results["SQLite"]:
        s, p = results["SQLite"][op], results["PostgreSQL"][op]
        print(f"| {op} | {statistics.median(s):.0f} µs | {_p95(s):.0f} µs "
              f"| {statistics.median(p):.0f} µs | {_p95(p):.0f} µs |")


def _p95(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.95)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    asyncio.run(main(args.rows, args.n, args.pg))
