#!/usr/bin/env python3
"""The console's overview on a day of 1,000,000 events: rendered from rolled-up counts.

    python3 bench/console_overview.py [--messages 500000] [--runs 5] [--backend postgres]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Fills a fresh state.db through SqliteEventStore (the gateway's own write path) — or,
with `--backend postgres`, a fresh database made on the `--pg` server (dropped at the
end) through PostgresEventStore — with
`--messages` one-recipient messages over the last 24 hours, two events each
(`accepted`, then `delivered`, `deferred` or `bounced` with a reason), to 200
recipient domains, three categories and three routes; one message in ten also
gets an `opened` event (a third of them by machines). Then:

- rolls the whole day up at once (gateway.state.counts / counts_postgres; in production this work
  is spread over the day, a few events every ROLLUP_INTERVAL) and times it;
- serves the real admin app (gateway.admin.server.build_app, with the console)
  over loopback HTTP, logs in, and times GET /console/overview for the last
  hour, day and week (median of `--runs`, each including its roll-up of what is
  new, i.e. nothing) — the figure the issue bounds at 1 s;
- times the admin API's /v1/summary for the day, which scans the events, for
  comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import secrets
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from admin_queries import timed  # noqa: E402

from gateway.admin.context import AdminContext  # noqa: E402
from gateway.admin.ratelimit import IpRateLimiter  # noqa: E402
from gateway.admin.server import build_app  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.model import (  # noqa: E402
    Client,
    Envelope,
    Event,
    EventType,
    QueuedMessage,
    Reply,
    Secret,
)
from gateway.spool.queue_id import new_queue_id  # noqa: E402
from gateway.state.counts import Counts, EventCounts  # noqa: E402
from gateway.state.counts_postgres import PostgresEventCounts  # noqa: E402
from gateway.state.db import StateDb  # noqa: E402
from gateway.state.migrations.sqlite import EVENTS  # noqa: E402
from gateway.state.settings import StateConfig  # noqa: E402
from gateway.state.store import StateStore  # noqa: E402
from gateway.supervisor import Gateway  # noqa: E402

TOKEN = "bench-console-token-0123456789"
CATEGORIES = ("transactional", "marketing", "reminders")
REASONS = ("user_unknown", "mailbox_full", "policy_block", "spam_content")


def outcome(i: int, qid: str, rcpt: str, t: float) -> Event:
    route = f"route{i % 3}"
    if i % 40 == 0:
        return Event(t, qid, EventType.BOUNCED, rcpt, route=route, host=f"mx{i % 50}.test",
                     reply=Reply(550, "5.1.1", "no"),
                     detail=f"source=smtp-reply kind=hard reason={REASONS[i % 4]}")
    if i % 13 == 0:
        return Event(t, qid, EventType.DEFERRED, rcpt, route=route, host=f"mx{i % 50}.test",
                     reply=Reply(451, "4.2.0", "later"), detail="attempt 1")
    return Event(t, qid, EventType.DELIVERED, rcpt, route=route, host=f"mx{i % 50}.test",
                 reply=Reply(250, "2.0.0", "ok"))


async def fill(state: StateStore, messages: int, now: float) -> int:
    store = state.events
    client, count = Client("relay", "127.0.0.1"), 0
    try:
        for i in range(messages):
            t = now - 86400 + 86400 * i / messages
            qid, rcpt = new_queue_id(t), f"g{i}@d{i % 200}.example"
            env = Envelope("app@example.com", (rcpt,), client, t,
                           message_id=f"<m{i}@example.com>", category=CATEGORIES[i % 3])
            store.record_accepted(QueuedMessage(qid, env, 1000), t)
            extra = [outcome(i, qid, rcpt, t + 2 + i % 30)]
            if i % 10 == 0:
                machine = "yes why=proxy:google" if i % 30 == 0 else "no"
                extra.append(Event(t + 600, qid, EventType.OPENED, rcpt,
                                   detail=f"machine={machine} ip=203.0.113.0/24"))
            store.record(extra)
            count += 1 + len(extra)
            if i % 10_000 == 0:
                await store.flush()
        await store.flush()
    finally:
        await store.flush()
    return count


def config_for(directory: Path, dsn: str | None) -> Path:
    token = directory / "admin.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    path = directory / "config.yaml"
    path.write_text(textwrap.dedent("""\
        hostname: bench.test
        data_dir: ./var
        listeners:
          - {name: relay, kind: relay, address: 127.0.0.1, port: 0, networks: [127.0.0.0/8]}
        routes:
          - {name: mx, type: mx}
        admin: {address: 127.0.0.1, port: 0, token_file: admin.token}
        """) + (f"state: {dsn}\n" if dsn else ""))
    return path


async def measure(directory: Path, runs: int, dsn: str | None) -> None:
    gw = Gateway(load_config(config_for(directory, dsn)))
    await gw.state.open()
    assert gw.config.admin is not None
    app = build_app(AdminContext(gw, IpRateLimiter(6.0, 10, gw.clock)), gw.config.admin)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.post(server.make_url("/console/login"), data={"token": TOKEN}) as r:
                assert r.status == 200, r.status

            sent: dict[str, str] = {}

            async def page(window: str) -> None:
                async with http.get(server.make_url(f"/console/overview?window={window}")) as r:
                    text = await r.text()
                    assert r.status == 200
                    m = re.search(r'id="card-sent"><small>sent</small><b>(\d+)', text)
                    sent[window] = m.group(1) if m else "?"

            for window in ("hour", "day", "week"):
                ms = await timed(runs, lambda w=window: page(w))
                print(f"GET /console/overview?window={window}: {ms:.0f} ms "
                      f"(sent={sent[window]})")

            async def summary() -> None:
                async with http.get(server.make_url("/v1/summary"),
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    assert r.status == 200
            print(f"GET /v1/summary (scans the events; for comparison): "
                  f"{await timed(min(runs, 3), summary):.0f} ms")
    finally:
        await server.close()
        await gw.state.close()


async def admin_sql(server: str, sql: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def count_rows(state: StateStore, counts: Counts) -> tuple[int, int]:
    sql = ("SELECT (SELECT COUNT(*) FROM event_counts),"
           " (SELECT COUNT(*) FROM domain_counts)")
    if state.postgres is not None:
        row = await state.postgres.run(lambda c: c.fetchrow(sql))
    else:
        assert isinstance(counts, EventCounts)
        row = (await counts.db.fetchall(sql))[0]
    return int(row[0]), int(row[1])


async def run(directory: Path, args: argparse.Namespace, dsn: str | None) -> None:
    config = StateConfig(dsn=Secret(dsn)) if dsn else StateConfig()
    state = StateStore(directory / "var" / "state.db", config)
    if dsn:
        await state.migrate()
    await state.open()
    counts: Counts = (PostgresEventCounts(state.postgres) if state.postgres is not None
                      else EventCounts(StateDb(state.path, EVENTS)))
    try:
        start = time.perf_counter()
        events = await fill(state, args.messages, time.time())
        print(f"filled {events:,} events in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        added = await counts.rollup()
        took = time.perf_counter() - start
        print(f"rolled up {added:,} events at once in {took:.1f} s "
              f"({took / max(added, 1) * 1e6:.1f} µs per event)")
        rows, domains = await count_rows(state, counts)
        print(f"count rows: event_counts {rows:,}, domain_counts {domains:,}")
        empty = await timed(args.runs, counts.rollup)
        day = await timed(args.runs, lambda: counts.overview(time.time() - 86400))
        print(f"in process: a roll-up with nothing new {empty:.0f} ms, "
              f"the day's overview query {day:.0f} ms")
    finally:
        await counts.close()
        await state.close()
    await measure(directory, args.runs, dsn)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server's DSN (a database is made and dropped)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}, "
          f"backend {args.backend}")
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        directory = Path(tmp)
        if args.backend == "sqlite":
            await run(directory, args, None)
            return
        name = f"console_bench_{os.getpid()}_{secrets.token_hex(3)}"
        await admin_sql(args.pg, f"CREATE DATABASE {name}")
        try:
            await run(directory, args, args.pg.rsplit("/", 1)[0] + "/" + name)
        finally:
            await admin_sql(args.pg, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    asyncio.run(main())
