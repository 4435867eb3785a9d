"""Suppression, consent and rate-counter stores on a real state.db."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.model import ConsentRecord, Suppression, SuppressionReason
from gateway.state import StateStore


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = StateStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.close()


async def test_suppression_lookup_expiry_remove_and_audit(state: StateStore) -> None:
    sup = state.suppressions
    await sup.add([
        Suppression("guest@example.net", SuppressionReason.UNSUBSCRIBE, "marketing", 1.0, "t"),
        Suppression("@example.org", SuppressionReason.COMPLAINT, "all", 1.0, "t"),
        Suppression("soft@example.com", SuppressionReason.SOFT_BOUNCE, "all", 1.0, "t",
                    expires=100.0),
    ], "cli:test", 1.0)
    found = await sup.lookup(("guest@example.net", "@example.net"), 50.0)
    assert [(s.target, s.scope) for s in found] == [("guest@example.net", "marketing")]
    assert [s.target for s in await sup.lookup(("x@example.org", "@example.org"), 50.0)] == [
        "@example.org"]
    assert len(await sup.lookup(("soft@example.com", "@example.com"), 50.0)) == 1
    assert await sup.lookup(("soft@example.com", "@example.com"), 100.0) == []
    assert await sup.purge_expired(100.0) == 1
    assert await sup.remove("@example.org", None, "cli:test", 2.0) == 1
    assert await sup.count() == 1
    actions = [(e.actor, e.action) for e in await state.audit.entries()]
    assert actions[0] == ("cli:test", "suppress.remove")
    assert ("cli:test", "suppress.add") in actions


async def test_suppression_lookup_uses_the_primary_key(state: StateStore) -> None:
    plan = await state._policy_db.fetchall(
        "EXPLAIN QUERY PLAN SELECT * FROM suppressions WHERE target IN (?, ?)"
        " AND (expires IS NULL OR expires > ?)", ("a", "b", 0.0))
    assert any("USING PRIMARY KEY" in str(row[-1]) for row in plan), plan


async def test_consent_latest_record_wins(state: StateStore) -> None:
    c = state.consent
    await c.record([ConsentRecord("g@example.net", "marketing", True, 10.0, "explicit", "form"),
                    ConsentRecord("g@example.net", "marketing", False, 20.0, "explicit", "link"),
                    ConsentRecord("h@example.net", "marketing", True, 5.0, "imported")],
                   "cli:test", 30.0)
    current = await c.current(("g@example.net", "h@example.net", "x@example.net"), "marketing")
    assert not current["g@example.net"].granted
    assert current["h@example.net"].granted
    assert "x@example.net" not in current
    await c.record([ConsentRecord("g@example.net", "marketing", True, 40.0)], "cli:test", 40.0)
    assert (await c.current(("g@example.net",), "marketing"))["g@example.net"].granted
    assert [r.time for r in await c.history("g@example.net")] == [10.0, 20.0, 40.0]


async def test_rate_counter_gcra(state: StateStore) -> None:
    acquire = state.rate_counters.acquire
    # 1 token per 3 s, burst 2: two at once, the third refused until 3 s later.
    assert (await acquire("k", 3.0, 2, 1000.0))[0]
    assert (await acquire("k", 3.0, 2, 1000.0))[0]
    assert not (await acquire("k", 3.0, 2, 1000.0))[0]
    assert not (await acquire("k", 3.0, 2, 1002.9))[0]
    assert (await acquire("k", 3.0, 2, 1003.0))[0]
    assert not (await acquire("k", 3.0, 2, 1003.0))[0]
    assert (await acquire("other", 3.0, 2, 1003.0))[0]


async def test_rate_counters_survive_reopen(tmp_path: Path) -> None:
    for _ in range(2):
        store = StateStore(tmp_path / "state.db")
        await store.open()
        allowed, _ = await store.rate_counters.acquire("k", 60.0, 1, 1000.0)
        await store.close()
    assert not allowed  # the second process start did not get a fresh burst


async def test_rate_counter_reserve_spaces_requests(state: StateStore) -> None:
    reserve = state.rate_counters.reserve
    # 1 per 3 s, burst 2: two go now, then one every 3 s.
    assert [await reserve("k", 3.0, 2, 1000.0) for _ in range(4)] == [
        1000.0, 1000.0, 1003.0, 1006.0]
    assert await reserve("k", 3.0, 2, 1100.0) == 1100.0  # idle long enough: no wait


async def test_wal_stays_small_under_constant_rate_counter_writes(state: StateStore) -> None:
    for i in range(20000):
        await state.rate_counters.acquire(f"k{i % 10}", 0.001, 1000, 1000.0 + i)
        if i % 50 == 0:
            await asyncio.sleep(0)  # as a serving gateway does between sessions' commands
    await asyncio.sleep(0.05)
    wal = state.ratelimits_path.with_name("ratelimits.db-wal")
    # Without checkpoints: one 4 KiB frame per write, 82 MB. The quick connection
    # checkpoints every ~1000 pages, so the WAL starts over instead of growing.
    assert wal.stat().st_size < 10000 * 4120


async def test_a_held_write_lock_hands_quick_writes_to_the_thread(state: StateStore) -> None:
    await state.rate_counters.acquire("warm-up", 1.0, 1, 1000.0)  # opens ratelimits.db
    other = sqlite3.connect(state.ratelimits_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock ...
    pending = asyncio.ensure_future(state.rate_counters.acquire("k", 1.0, 1, 1000.0))
    await asyncio.sleep(0.05)
    assert not pending.done()  # ... so the RCPT waits on the thread, the loop does not
    other.execute("COMMIT")
    assert (await pending)[0]
    other.close()
    assert state._rate_db.handed_over == 1
