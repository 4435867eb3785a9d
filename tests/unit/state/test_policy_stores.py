"""Suppression, consent and rate-counter stores on real files (policy.db, ratelimits.table)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.model import ConsentRecord, Suppression, SuppressionReason
from gateway.state.db import StateDb
from gateway.state.migrations import Migration
from gateway.state.ratelimits import PROBE, SharedRateCounters
from gateway.state.store import StateStore


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


async def test_rate_counters_are_shared_by_processes(tmp_path: Path) -> None:
    # Another process maps the same table: its tokens count against ours.
    path = tmp_path / "ratelimits.table"
    mine = SharedRateCounters(path)
    assert (await mine.acquire("k", 60.0, 3, 1000.0))[0]
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from gateway.state.ratelimits import SharedRateCounters\n"
        "c = SharedRateCounters(Path(sys.argv[1]))\n"
        "print(sum(c.acquire_now([('k', 60.0, 3)], 1000.0)[0][0] for _ in range(5)))\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "2"  # the burst of 3 minus the one taken here
    assert not (await mine.acquire("k", 60.0, 3, 1000.0))[0]
    await mine.close()


async def test_rate_counters_a_full_neighbourhood_evicts_the_fullest_bucket(
        tmp_path: Path) -> None:
    table = SharedRateCounters(tmp_path / "ratelimits.table", slots=PROBE)
    # PROBE live keys fill the table; the next one takes the slot nearest to full.
    for i in range(PROBE):
        assert (await table.acquire(f"k{i}", 10.0 + i, 1, 1000.0))[0]
    assert table.evictions == 0
    assert (await table.acquire("new", 1.0, 1, 1000.0))[0]
    assert table.evictions == 1
    assert not (await table.acquire("new", 1.0, 1, 1000.0))[0]
    # An expired slot is free without eviction.
    assert (await table.acquire("later", 1.0, 1, 2000.0))[0]
    assert table.evictions == 1
    await table.close()


async def test_rate_table_laid_out_otherwise_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "ratelimits.table"
    path.write_bytes(b"not a table")
    table = SharedRateCounters(path, slots=1024)
    assert (await table.acquire("k", 60.0, 1, 1000.0))[0]
    await table.close()
    assert path.stat().st_size == 64 + 1024 * 16


async def test_wal_stays_small_under_constant_writes(tmp_path: Path) -> None:
    db = StateDb(tmp_path / "policy.db",
                 (Migration(1, "t", ("CREATE TABLE t (k TEXT PRIMARY KEY, v REAL)",)),))
    for i in range(20000):
        await db.fetchone("INSERT OR REPLACE INTO t VALUES (?, ?) RETURNING v",
                          (f"k{i % 10}", float(i)), write=True, quick=True)
        if i % 50 == 0:
            await asyncio.sleep(0)  # as a serving gateway does between sessions' commands
    await asyncio.sleep(0.05)
    wal = db.path.with_name("policy.db-wal")
    # Without checkpoints: one 4 KiB frame per write, 82 MB. The quick connection
    # checkpoints every ~1000 pages, so the WAL starts over instead of growing.
    assert wal.stat().st_size < 10000 * 4120
    await db.close()


async def test_a_held_write_lock_hands_quick_writes_to_the_thread(tmp_path: Path) -> None:
    db = StateDb(tmp_path / "policy.db",
                 (Migration(1, "t", ("CREATE TABLE t (k TEXT PRIMARY KEY)",)),))
    await db.open()
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock ...
    pending = asyncio.ensure_future(db.fetchone(
        "INSERT INTO t VALUES ('k') RETURNING k", write=True, quick=True))
    await asyncio.sleep(0.05)
    assert not pending.done()  # ... so the write waits on the thread, the loop does not
    other.execute("COMMIT")
    assert await pending == ("k",)
    other.close()
    assert db.handed_over == 1
    await db.close()
