from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.model import Priority
from gateway.spool.index import QueueIndex


async def test_due_query_uses_the_index_not_a_scan(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "queue.db")
    await index.open()
    await index.close()
    con = sqlite3.connect(tmp_path / "queue.db")
    plan = " ".join(str(r[-1]) for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE state = 'deferred'"
        " AND next_attempt_at <= 0 ORDER BY next_attempt_at LIMIT 10"))
    con.close()
    assert "USING INDEX messages_due" in plan or "USING COVERING INDEX messages_due" in plan
    assert "TEMP B-TREE" not in plan  # no sort of the whole table either


async def test_due_by_priority_uses_the_priority_index(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "queue.db")
    await index.open()
    await index.close()
    con = sqlite3.connect(tmp_path / "queue.db")
    plan = " ".join(str(r[-1]) for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE state = 'deferred' AND priority = 0"
        " AND next_attempt_at <= 0 ORDER BY next_attempt_at LIMIT 10"))
    con.close()
    assert "messages_due_priority" in plan and "TEMP B-TREE" not in plan


async def test_an_index_from_before_priorities_is_migrated(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "queue.db")
    con.execute("CREATE TABLE messages (id TEXT PRIMARY KEY, state TEXT NOT NULL,"
                " created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,"
                " attempts INTEGER NOT NULL DEFAULT 0, sender TEXT NOT NULL, message_id TEXT,"
                " size INTEGER NOT NULL, recipient_count INTEGER NOT NULL) WITHOUT ROWID")
    con.execute("INSERT INTO messages VALUES ('A', 'deferred', 1, 1, 1, 's@x', NULL, 10, 1)")
    con.commit()
    con.close()
    index = QueueIndex(tmp_path / "queue.db")
    await index.open()
    try:
        assert await index.due_by_priority(5, {Priority.NORMAL: 10, Priority.LOW: 10}) == [
            ("A", Priority.NORMAL)]
    finally:
        await index.close()
