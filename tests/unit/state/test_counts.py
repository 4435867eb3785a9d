"""Event counts rolled up from real rows of the state database, on both backends (SQLite's
state.db, and PostgreSQL at 127.0.0.1:5432): what each event is counted under,
incremental roll-ups that never count an event twice, the overview's sums, the same
figures from both backends for the same events, and (PostgreSQL) an event committed
after a later one is still counted, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.model import Client, Envelope, Event, EventType, QueuedMessage, Reply
from gateway.state.counts import BUCKET, Counts, EventCounts, Overview, reason_of
from gateway.state.counts_postgres import PostgresEventCounts
from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import EVENTS
from gateway.state.store import StateStore
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config

__all__ = ["pg_database", "pg_dsn"]

T0 = 1_700_000_000.0 // BUCKET * BUCKET


def accepted(queue_id: str, rcpt: str, category: str, at: float) -> QueuedMessage:
    env = Envelope("app@example.com", (rcpt,), Client("relay", "127.0.0.1"), at,
                   category=category)
    return QueuedMessage(queue_id, env, 100)


def test_reasons() -> None:
    assert reason_of("bounced", "source=smtp-reply kind=hard status=5.1.1 reason=user_unknown",
                     550, "5.1.1") == "user_unknown"
    assert reason_of("bounced", None, 550, "5.7.1") == "5.7.1"
    assert reason_of("bounced", None, 550, "") == "550"
    assert reason_of("opened", "machine=yes why=head ip=-", None, None) == "machine"
    assert reason_of("clicked", "machine=no ip=-", None, None) == "human"
    assert reason_of("delivered", None, 250, "2.0.0") == ""


async def open_backend(backend: str, directory: Path, dsn: str | None
                       ) -> tuple[StateStore, Counts]:
    state = StateStore(directory / "state.db", sqlite_or_pg_state_config(backend, dsn))
    await state.open()
    if state.postgres is not None:
        return state, PostgresEventCounts(state.postgres)
    return state, EventCounts(StateDb(state.path, EVENTS))


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> AsyncIterator[tuple[StateStore, Counts]]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    state, counts = await open_backend(request.param, tmp_path, dsn)
    yield state, counts
    await counts.close()
    await state.close()


def write_day(state: StateStore) -> None:
    """Five marketing messages to gmail.com, two delivered, one bounced, one opened."""
    events = state.events
    for i in range(5):
        events.record_accepted(accepted(f"Q{i}", f"u{i}@Gmail.com", "marketing", T0 + i),
                               T0 + i)
    events.record([Event(T0 + 40, "Q0", EventType.DELIVERED, "u0@Gmail.com", route="mx",
                         host="relay-a"),
                   Event(T0 + 400, "Q1", EventType.DELIVERED, "u1@Gmail.com", route="mx",
                         host="relay-b"),
                   Event(T0 + 50, "Q2", EventType.BOUNCED, "u2@Gmail.com", route="mx",
                         host="relay-a", reply=Reply(550, "5.1.1", "no such user"))])


async def test_rollup_counts_each_event_once_by_category_route_domain_reason(
        backend: tuple[StateStore, Counts]) -> None:
    state, counts = backend
    write_day(state)
    await state.events.flush()
    assert await counts.rollup(limit=3) == 8  # in batches of 3: 3 + 3 + 2
    assert await counts.rollup() == 0  # nothing new: nothing counted twice
    state.events.record([Event(T0 + 60, "Q3", EventType.OPENED, "u3@gmail.com",
                               detail="machine=yes why=proxy:google ip=1.2.3.0/24")])
    await state.events.flush()
    assert await counts.rollup() == 1

    day = await counts.overview(T0 - 3600)
    assert day.total("accepted") == 5
    assert day.by("delivered", "route") == {"mx": 2}
    assert day.by("accepted", "category") == {"marketing": 5}
    assert day.total("bounced", reason="5.1.1") == 1
    assert day.total("opened", reason="machine") == 1
    assert day.domains["gmail.com"] == {"accepted": 5, "delivered": 2, "bounced": 1,
                                        "opened": 1}
    assert day.latency == {60.0: 1, 900.0: 1}  # 40 s and 399 s
    assert day.percentile(0.5) == 60.0 and day.percentile(0.99) == 900.0
    assert sum(day.series["accepted"].values()) == 5
    assert day.hosts == {("mx", "relay-a"): {"delivered": 1, "bounced": 1},
                         ("mx", "relay-b"): {"delivered": 1}}
    later = await counts.overview(T0 + BUCKET)  # the first bucket is left out
    assert later.total("accepted") == 0 and later.total("delivered") == 1


def figures(o: Overview) -> tuple[object, ...]:
    return (sorted(o.rows, key=repr), o.domains, o.latency, o.series, o.hosts)


async def test_both_backends_give_the_same_overview_for_the_same_events(
        tmp_path: Path, pg_dsn: str) -> None:
    seen = []
    for backend in ("sqlite", "postgresql"):
        state, counts = await open_backend(backend, tmp_path / backend, pg_dsn)
        try:
            write_day(state)
            state.events.record([
                Event(T0 + 700, "Q4", EventType.DEFERRED, "u4@gmail.com", route="mx",
                      reply=Reply(451, "4.7.1", "later"), detail="attempt 1"),
                Event(T0 + 900, "Q3", EventType.CLICKED, "u3@gmail.com",
                      detail="machine=no ip=1.2.3.0/24 url=https://example.com/")])
            await state.events.flush()
            assert await counts.rollup(limit=4) == 10
            seen.append(figures(await counts.overview(T0 - 3600)))
        finally:
            await counts.close()
            await state.close()
    assert seen[0] == seen[1]
    assert seen[0][0]  # not two empty overviews


async def test_postgres_counts_an_event_committed_after_a_later_one_once(
        pg_dsn: str, tmp_path: Path) -> None:
    state, counts = await open_backend("postgresql", tmp_path, pg_dsn)
    late = await asyncpg.connect(pg_dsn)
    try:
        # A writer whose transaction began first (smaller xid, smaller seq) commits last.
        slow = late.transaction()
        await slow.start()
        await late.execute("INSERT INTO events (time, queue_id, type, recipient, route)"
                           " VALUES ($1, 'QL', 'delivered', 'l@late.example', 'mx')", T0)
        write_day(state)
        await state.events.flush()
        assert await counts.rollup() == 0  # held behind the open transaction
        await slow.commit()
        assert await counts.rollup() == 9
        assert await counts.rollup() == 0
        day = await counts.overview(T0 - 3600)
        assert day.total("delivered") == 3 and day.domains["late.example"] == {"delivered": 1}
    finally:
        await late.close()
        await counts.close()
        await state.close()
