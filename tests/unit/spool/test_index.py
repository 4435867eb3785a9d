from __future__ import annotations

import sqlite3
from pathlib import Path

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
