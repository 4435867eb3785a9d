"""Retention (the periodic purge, on a ManualClock; on SQLite and on PostgreSQL at
127.0.0.1:5432) and erasure on real SQLite files (on PostgreSQL:
tests/unit/state/test_erasure_postgres.py)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.errors import ConfigError
from gateway.model import ConsentRecord, Event, EventType, Reply, Suppression, SuppressionReason
from gateway.state.address_hash import AddressHasher
from gateway.state.bounces import SqliteBounceStore
from gateway.state.db import StateDb
from gateway.state.erasure import AddressMatcher
from gateway.state.migrations.sqlite import EVENTS
from gateway.state.retention import (
    EventPurger,
    RetentionJob,
    erase_address,
    purge_older_than,
    purger_for,
)
from gateway.state.settings import RetentionConfig
from gateway.state.store import StateStore
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = StateStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def events_db(state: StateStore) -> AsyncIterator[StateDb]:
    db = StateDb(state.path, EVENTS)
    yield db
    await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    """The state store on either backend (the purge tests run on both)."""
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    state = StateStore(tmp_path / "state.db", sqlite_or_pg_state_config(request.param, dsn))
    await state.open()
    yield state
    await state.close()


@pytest.fixture
async def purger(store: StateStore) -> AsyncIterator[EventPurger]:
    """What the gateway purges with (gateway.supervisor): the backend's purger."""
    db = StateDb(store.path, EVENTS)
    yield purger_for(store, db)
    await db.close()


async def event_times(store: StateStore) -> list[float]:
    sql = "SELECT time FROM events ORDER BY time"
    if store.postgres is not None:
        rows = await store.postgres.run(lambda c: c.fetch(sql))
    else:
        db = StateDb(store.path, EVENTS)
        rows = await db.fetchall(sql)
        await db.close()
    return [float(r[0]) for r in rows]


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_the_purge_job_deletes_events_past_the_configured_age(
        store: StateStore, purger: EventPurger) -> None:
    clock = ManualClock(start=NOW)
    ages = (120, 91, 89.5, 30, 0)
    store.events.record(Event(NOW - a * DAY, f"Q{a}", EventType.DELIVERED, "g@example.net")
                        for a in ages)
    await store.events.flush()
    job = RetentionJob(purger, RetentionConfig(events=90 * DAY, purge_interval=3600), clock)
    job.start()
    try:
        await until(lambda: job.runs == 1)
        assert await event_times(store) == [NOW - a * DAY for a in ages[2:]]
        clock.advance(3599)
        await asyncio.sleep(0.05)
        assert job.runs == 1  # not before the interval
        clock.advance(12 * 3600)  # the job runs once per wake-up; 89.5 days + 12 h is past 90
        await until(lambda: job.runs == 2)
        assert await event_times(store) == [NOW - a * DAY for a in ages[3:]]
        assert job.purged == 3
    finally:
        await job.stop()


async def test_a_large_purge_goes_in_chunks_and_takes_the_orphaned_tags(
        store: StateStore, purger: EventPurger) -> None:
    store.events.record(Event(NOW - 100 * DAY + n, f"Q{n % 3}", EventType.DEFERRED,
                              "g@example.net") for n in range(12_345))
    store.events.record([Event(NOW, "Q0", EventType.DELIVERED, "g@example.net")])
    await store.events.flush()
    for n in range(3):
        await tag(store, f"Q{n}")
    assert await purge_older_than(purger, NOW - 90 * DAY, chunk=5000) == 12_345
    assert await event_times(store) == [NOW]
    # Q0 still has an event, so it keeps its tag; Q1 and Q2 have none left.
    assert set(await store.events.tags(["Q0", "Q1", "Q2"])) == {"Q0"}


async def test_nodes_purging_at_once_delete_each_event_once(pg_dsn: str, tmp_path: Path) -> None:
    nodes = [StateStore(tmp_path / f"{n}.db", sqlite_or_pg_state_config("postgresql", pg_dsn))
             for n in "ab"]
    for node in nodes:
        await node.open()
    try:
        nodes[0].events.record(Event(NOW - 100 * DAY + n, "Q", EventType.DEFERRED, "g@x.net")
                               for n in range(20_000))
        await nodes[0].events.flush()
        a, b = (purger_for(node, StateDb(node.path, EVENTS)) for node in nodes)
        counts = await asyncio.gather(*(purge_older_than(p, NOW - 90 * DAY, chunk=1000)
                                        for p in (a, b, a, b)))
        assert sum(counts) == 20_000  # every event deleted once, by whichever node ran
        assert await purge_older_than(b, NOW - 90 * DAY) == 0
    finally:
        for node in nodes:
            await node.close()


async def tag(store: StateStore, queue_id: str) -> None:
    sql = "INSERT INTO message_tags (queue_id, name, value) VALUES ({0}, ':category', 'x')"
    if store.postgres is not None:
        await store.postgres.run(lambda c: c.execute(sql.format("$1"), queue_id))
        return
    db = StateDb(store.path, EVENTS)
    await db.execute(sql.format("?"), (queue_id,))
    await db.close()


def test_the_erasure_key_is_made_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "erasure.key"
    first = AddressHasher(path)
    assert first.token_if_keyed("guest@example.net") is None  # no key, nothing erased yet
    token = first.token("guest@example.net")
    assert token.startswith("erased:") and len(token) == len("erased:") + 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = AddressHasher(path)
    assert again.token("guest@example.net") == token
    assert again.token("other@example.net") != token
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="readable by other users"):
        AddressHasher(path).ensure_key()


def test_the_matcher_finds_variants_and_nothing_else() -> None:
    m = AddressMatcher("guest@example.net", lambda a: f"<{a}>")
    text = ("from <Guest@Example.NET> to guest+booking@example.net, not myguest@example.net"
            " nor guest@example.network; 550 guest@example.net.")
    assert m.scrub(text) == (
        "from <<guest@example.net>> to <guest+booking@example.net>, not myguest@example.net"
        " nor guest@example.network; 550 <guest@example.net>.")


async def test_erasure_hashes_the_address_everywhere_and_keeps_its_suppression(
        tmp_path: Path, state: StateStore, events_db: StateDb) -> None:
    addr = "guest@example.net"
    await state.suppressions.add([Suppression(addr, SuppressionReason.COMPLAINT, "all", 1.0,
                                              "bounces", note=f"ARF about {addr}")], "cli", 1.0)
    await state.consent.record([ConsentRecord(addr, "marketing", True, 2.0, "explicit",
                                              f"form filled by {addr}")], addr, 2.0)
    bounces = SqliteBounceStore(tmp_path / "bounces.db")
    await bounces.add_soft(addr, "Q0", NOW, 86400)
    await bounces.add_soft("other@example.net", "Q0", NOW, 86400)
    await bounces.close()
    await state.rate_counters.acquire(f"per-guest\x1frecipient={addr}", 1.0, 5, NOW)
    await state.rate_counters.acquire("per-guest\x1frecipient=other@example.net", 1.0, 5, NOW)
    state.events.record([
        Event(NOW, "Q1", EventType.ACCEPTED, "Guest@Example.NET",
              detail=f"from <{addr}> via relay [127.0.0.1] size=10"),
        Event(NOW, "Q1", EventType.BOUNCED, "guest+booking@example.net",
              reply=Reply(550, "5.1.1", "<guest+booking@example.net>: unknown")),
        Event(NOW, "Q2", EventType.DELIVERED, "myguest@example.net"),
    ])
    report = await erase_address(state, "GUEST@example.net", "cli:alice", now=NOW)
    token = report.token
    counts = {k: v for k, v in report.changed.items() if k != "message_tags"}
    # rate_counters: only a leftover ratelimits.db of an earlier version holds keys in
    # clear; the shared table keeps 64-bit hashes of them (its bytes are checked below).
    assert counts == {"events": 2, "suppressions": 1, "consent": 1, "audit": 2,
                      "rate_counters": 0, "soft_bounces": 1}
    assert report.checkpointed
    found = await state.suppressions.lookup((addr, "@example.net"), NOW)
    assert [(s.target, s.reason) for s in found] == [(token, SuppressionReason.COMPLAINT)]
    assert found[0].note == f"ARF about {token}"
    assert await state.consent.current((addr,), "marketing") == {}  # no grant survives
    rows = await events_db.fetchall("SELECT recipient, detail, reply_text FROM events"
                                          " ORDER BY seq")
    plus = state.hasher.token("guest+booking@example.net")
    assert rows == [(token, f"from <{token}> via relay [127.0.0.1] size=10", None),
                    (plus, None, f"<{plus}>: unknown"),
                    ("myguest@example.net", None, None)]
    (last, *_) = await state.audit.entries()
    assert (last.actor, last.action) == ("cli:alice", "erase") and token in last.detail
    await state.close()
    await events_db.close()
    for path in tmp_path.iterdir():
        data = path.read_bytes().lower()
        assert b"guest@example.net" not in data.replace(b"myguest@example.net", b""), path.name
        assert b"guest+booking" not in data, path.name
    assert b"myguest@example.net" in (tmp_path / "state.db").read_bytes()  # the others stay
    await state.open()
    # The person may ask to hear from us again: removing the address lifts the entry.
    assert await state.suppressions.remove(addr, None, "cli:alice", NOW) == 1
    assert await state.suppressions.lookup((addr, "@example.net"), NOW) == []


async def test_erasing_something_that_is_not_an_address_is_refused(state: StateStore) -> None:
    for bad in ("", "guest", "@example.net", "guest@", "a b@example.net"):
        with pytest.raises(ValueError):
            await erase_address(state, bad, "cli")
