"""Retention (the periodic purge, on a ManualClock) and erasure on real SQLite files."""

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
from gateway.retention import RetentionJob, erase_address, purge_older_than
from gateway.retention_config import RetentionConfig
from gateway.state import StateStore
from gateway.state.address_hash import AddressHasher
from gateway.state.bounces import SqliteBounceStore
from gateway.state.db import StateDb
from gateway.state.erasure import AddressMatcher
from gateway.state.migrations.sqlite import EVENTS

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


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def times(events_db: StateDb) -> list[float]:
    rows = await events_db.fetchall("SELECT time FROM events ORDER BY time")
    return [float(r[0]) for r in rows]


async def test_the_purge_job_deletes_events_past_the_configured_age(
        state: StateStore, events_db: StateDb) -> None:
    clock = ManualClock(start=NOW)
    ages = (120, 91, 89.5, 30, 0)
    state.events.record(Event(NOW - a * DAY, f"Q{a}", EventType.DELIVERED, "g@example.net")
                        for a in ages)
    await state.events.flush()  # type: ignore[attr-defined]
    job = RetentionJob(events_db, RetentionConfig(events=90 * DAY, purge_interval=3600), clock)
    job.start()
    try:
        await until(lambda: job.runs == 1)
        assert await times(events_db) == [NOW - a * DAY for a in ages[2:]]
        clock.advance(3599)
        await asyncio.sleep(0.05)
        assert job.runs == 1  # not before the interval
        clock.advance(12 * 3600)  # the job runs once per wake-up; 89.5 days + 12 h is past 90
        await until(lambda: job.runs == 2)
        assert await times(events_db) == [NOW - a * DAY for a in ages[3:]]
        assert job.purged == 3
    finally:
        await job.stop()


async def test_a_large_purge_goes_in_chunks(state: StateStore, events_db: StateDb) -> None:
    state.events.record(Event(NOW - 100 * DAY + n, "Q", EventType.DEFERRED, "g@example.net")
                        for n in range(12_345))
    state.events.record([Event(NOW, "Q", EventType.DELIVERED, "g@example.net")])
    await state.events.flush()  # type: ignore[attr-defined]
    assert await purge_older_than(events_db, NOW - 90 * DAY, chunk=5000) == 12_345
    assert await times(events_db) == [NOW]


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
