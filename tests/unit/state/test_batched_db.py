"""gateway.core.sqlite.BatchedDb: what one flush sends to SQLite, and in what order."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.core.sqlite import BatchedDb

SCHEMA = ("CREATE TABLE IF NOT EXISTS a (seq INTEGER PRIMARY KEY, v TEXT)",
          "CREATE TABLE IF NOT EXISTS b (k TEXT PRIMARY KEY, v TEXT)")
INSERT_A = "INSERT INTO a (v) VALUES (?)"
UPSERT_B = "INSERT OR REPLACE INTO b (k, v) VALUES (?, ?)"
DELETE_B = "DELETE FROM b WHERE k = ?"


class CountingDb(BatchedDb):
    """Counts executemany calls: each is a hop to aiosqlite's thread."""

    hops = 0

    async def _commit(self, batch: list[tuple[str, tuple[object, ...]]]) -> bool:
        real = self.db.executemany
        calls = 0

        async def counted(sql: str, rows: list[tuple[object, ...]]) -> object:
            nonlocal calls
            calls += 1
            return await real(sql, rows)

        self.db.executemany = counted  # type: ignore[method-assign]
        try:
            return await super()._commit(batch)
        finally:
            self.db.executemany = real  # type: ignore[method-assign]
            self.hops += calls


async def _interleaved(db: BatchedDb, n: int) -> None:
    for i in range(n):
        db.write(INSERT_A, (f"event {i}",))
        db.write(UPSERT_B, (f"k{i}", f"tag {i}"))
    await db.flush()


async def test_commuting_statements_cost_one_hop_each_and_keep_their_rows_order(
        tmp_path: Path) -> None:
    db = CountingDb(tmp_path / "t.db", SCHEMA, statements_commute=True)
    await db.open()
    try:
        await _interleaved(db, 50)
        assert db.hops == 2  # not 100: events and tags alternate
        rows = await db.fetchall("SELECT v FROM a ORDER BY seq")
        assert [r[0] for r in rows] == [f"event {i}" for i in range(50)]
        assert len(await db.fetchall("SELECT k FROM b")) == 50
    finally:
        await db.close()


@pytest.mark.parametrize("commute", [False, True])
async def test_same_statement_keeps_its_order(tmp_path: Path, commute: bool) -> None:
    db = BatchedDb(tmp_path / "t.db", SCHEMA, statements_commute=commute)
    await db.open()
    try:
        for v in ("first", "second", "third"):
            db.write(UPSERT_B, ("k", v))
        await db.flush()
        assert await db.fetchall("SELECT v FROM b") == [("third",)]
    finally:
        await db.close()


async def test_statements_that_do_not_commute_run_in_the_order_written(tmp_path: Path) -> None:
    db = CountingDb(tmp_path / "t.db", SCHEMA)
    await db.open()
    try:
        db.write(UPSERT_B, ("k", "old"))
        db.write(DELETE_B, ("k",))
        db.write(UPSERT_B, ("k", "new"))  # grouped with the first upsert, "k" would be gone
        await db.flush()
        assert await db.fetchall("SELECT v FROM b") == [("new",)]
        assert db.hops == 3
    finally:
        await db.close()


async def test_a_flush_its_caller_gives_up_on_still_commits_and_loses_nothing(
        tmp_path: Path) -> None:
    """The scheduler waits a bounded time for events (qmgr.EVENT_FLUSH_TIMEOUT). A
    caller's timeout must not cut the commit in half: that dropped the batch and left
    the connection inside its transaction, holding the write lock for good."""
    path = tmp_path / "t.db"
    db = BatchedDb(path, SCHEMA)
    await db.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        for i in range(10):
            db.write(INSERT_A, (f"event {i}",))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(db.flush(), 0.2)
        other.execute("COMMIT")
        for i in range(10, 20):
            db.write(INSERT_A, (f"event {i}",))
        await asyncio.wait_for(db.flush(), 15)
        rows = await db.fetchall("SELECT v FROM a ORDER BY seq")
        assert [r[0] for r in rows] == [f"event {i}" for i in range(20)]
        assert db.failed_flushes == 0
        other.execute("BEGIN IMMEDIATE")  # the gateway's connection let the lock go
        other.execute("ROLLBACK")
    finally:
        other.close()
        await db.close()
