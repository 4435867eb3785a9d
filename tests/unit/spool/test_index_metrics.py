"""QueueIndex queries for the queue gauges, and the category column migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.model import Client, Envelope, QueuedMessage, QueueState, RecipientState, Reply
from gateway.spool import index as index_module
from gateway.spool.index import QueueIndex


def message(queue_id: str, at: float, category: str | None, *rcpts: str) -> QueuedMessage:
    env = Envelope("app@example.com", rcpts, Client("relay", "127.0.0.1"), at,
                   category=category)
    return QueuedMessage(queue_id, env, 100)


async def test_depth_by_route_and_oldest_by_category(tmp_path: Path) -> None:
    index = QueueIndex(tmp_path / "queue.db")
    await index.open()
    try:
        index.add_many([
            (message("A", 100.0, "transactional", "a@x.example", "b@y.example"),
             QueueState.DEFERRED),
            (message("B", 50.0, "marketing", "c@x.example"), QueueState.DEFERRED),
            (message("C", 10.0, "transactional", "d@x.example"), QueueState.HOLD),
            (message("D", 20.0, None, "e@x.example"), QueueState.DEFERRED),
        ])
        later = Reply(451, "4.2.0", "later")
        # A: one recipient delivered on route mx, one deferred on route providers.
        index.set_recipients("A", [(0, RecipientState.DELIVERED, "mx", Reply(250, "", "ok")),
                                   (1, RecipientState.DEFERRED, "providers", later)], 101.0)
        index.set_recipients("B", [(0, RecipientState.DEFERRED, "providers", later)], 51.0)
        depth = sorted(await index.depth(), key=lambda r: (r[0].value, str(r[1])))
        assert depth == [(QueueState.DEFERRED, None, 1),  # D: never attempted
                         (QueueState.DEFERRED, "providers", 2),
                         (QueueState.HOLD, None, 1)]
        oldest = dict(await index.oldest_by_category())
        # C is held: it waits for an operator, so the oldest transactional one is A.
        assert oldest == {"transactional": 100.0, "marketing": 50.0, None: 20.0}
    finally:
        await index.close()


async def test_an_index_from_before_categories_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE messages (id TEXT PRIMARY KEY, state TEXT NOT NULL,"
                " created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,"
                " attempts INTEGER NOT NULL DEFAULT 0, sender TEXT NOT NULL, message_id TEXT,"
                " size INTEGER NOT NULL, recipient_count INTEGER NOT NULL) WITHOUT ROWID")
    con.execute("INSERT INTO messages VALUES ('OLD', 'deferred', 5.0, 5.0, 1, 's', NULL, 1, 1)")
    con.commit()
    con.close()
    index = QueueIndex(path)
    await index.open()
    try:
        index.add(message("NEW", 7.0, "marketing", "a@x.example"), QueueState.DEFERRED)
        assert dict(await index.oldest_by_category()) == {None: 5.0, "marketing": 7.0}
    finally:
        await index.close()


async def test_depth_counts_across_chunks(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "DEPTH_CHUNK", 2)  # 9 messages: 5 queries
    index = QueueIndex(tmp_path / "queue.db")
    await index.open()
    try:
        states = [QueueState.DEFERRED, QueueState.HOLD, QueueState.INCOMING]
        index.add_many((message(f"Q{i}", float(i), None, "a@x.example"), states[i % 3])
                       for i in range(9))
        for i in range(9):
            index.set_recipients(f"Q{i}", [(0, RecipientState.DEFERRED, f"r{i % 2}", None)], 1.0)
        depth = {(state, route): n for state, route, n in await index.depth()}
        assert depth == {(QueueState.DEFERRED, "r0"): 2, (QueueState.DEFERRED, "r1"): 1,
                         (QueueState.HOLD, "r1"): 2, (QueueState.HOLD, "r0"): 1}
    finally:
        await index.close()
