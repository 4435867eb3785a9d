"""The queue index: SQLite rows that say when each message is due and how each
recipient fared. Postfix keeps this in qmgr's memory and the queue files; we
keep it in `spool/queue.db` so that a million deferred messages cost no RAM and
"what is due now?" is one indexed query, never a scan of the queue.

The queue files stay the truth of *what* is queued: at start-up `reconcile()`
compares the index with the directories and repairs it (a file without a row is
re-indexed from its header with every recipient pending; a row without a file is
dropped). What the index alone holds — attempts so far and recipients already
delivered — can be lost only with a power failure, and then costs a duplicate
delivery, never a lost message.

A write the database refuses (the disk is full) is kept and tried again
(gateway.core.sqlite): a message deferred while the disk was full still gets its row
once space returns, instead of sitting in deferred/ unscheduled.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.core.sqlite import BatchedDb, Row
from gateway.model import Priority, QueuedMessage, QueueId, QueueState, RecipientState, Reply

__all__ = ["IndexedMessage", "IndexedRecipient", "QueueIndex"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        sender TEXT NOT NULL,
        message_id TEXT,
        size INTEGER NOT NULL,
        recipient_count INTEGER NOT NULL,
        priority INTEGER NOT NULL DEFAULT 2,
        category TEXT
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS messages_due ON messages(state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS messages_message_id ON messages(message_id)",
    # After the priority migration (_migrate): "what is due now?" is asked per priority.
    "CREATE INDEX IF NOT EXISTS messages_due_priority"
    " ON messages(state, priority, next_attempt_at)",
    # The oldest message per category is a few seeks on this, not a scan (metrics).
    "CREATE INDEX IF NOT EXISTS messages_age ON messages(state, category, created_at)",
    """CREATE TABLE IF NOT EXISTS recipients (
        queue_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        address TEXT NOT NULL,
        state TEXT NOT NULL,
        route TEXT,
        updated_at REAL NOT NULL,
        last_reply TEXT,
        PRIMARY KEY (queue_id, idx)
    ) WITHOUT ROWID""",
)

_INSERT_MESSAGE = (
    "INSERT OR REPLACE INTO messages (id, state, created_at, next_attempt_at, attempts, sender,"
    " message_id, size, recipient_count, priority, category)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_RECIPIENT = (
    "INSERT OR REPLACE INTO recipients (queue_id, idx, address, state, route, updated_at,"
    " last_reply) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SET_RECIPIENT = (
    "UPDATE recipients SET state = ?, route = ?, updated_at = ?, last_reply = ?"
    " WHERE queue_id = ? AND idx = ?"
)


@dataclass(frozen=True)
class IndexedRecipient:
    idx: int
    address: str
    state: RecipientState
    route: str | None
    updated_at: float
    last_reply: str | None


@dataclass(frozen=True)
class IndexedMessage:
    id: QueueId
    state: QueueState
    created_at: float
    next_attempt_at: float
    attempts: int
    sender: str
    message_id: str | None
    size: int
    recipient_count: int
    priority: Priority = Priority.NORMAL


class QueueIndex:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db = BatchedDb(path, _SCHEMA)

    async def open(self) -> None:
        await asyncio.to_thread(_migrate, self._path)
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def flush(self) -> None:
        await self._db.flush()

    # -- writes (batched) ------------------------------------------------------------------
    def add(self, qm: QueuedMessage, state: QueueState) -> None:
        self.add_many([(qm, state)])

    def add_many(self, items: Iterable[tuple[QueuedMessage, QueueState]]) -> None:
        """Index messages with every recipient pending; message rows first, then
        recipient rows, so a big batch (start-up) runs as two executemany calls."""
        items = list(items)
        self._db.write_many(_INSERT_MESSAGE, (
            (qm.id, state.value, qm.envelope.received_at, qm.envelope.received_at, 0,
             qm.envelope.mail_from, qm.envelope.message_id, qm.size, len(qm.envelope.recipients),
             int(qm.envelope.priority), qm.envelope.category)
            for qm, state in items
        ))
        self._db.write_many(_INSERT_RECIPIENT, (
            (qm.id, i, rcpt, RecipientState.QUEUED.value, None, qm.envelope.received_at, None)
            for qm, _ in items for i, rcpt in enumerate(qm.envelope.recipients)
        ))

    def set_state(self, queue_id: QueueId, state: QueueState, *,
                  next_attempt_at: float | None = None, attempts: int | None = None) -> None:
        self._db.write(
            "UPDATE messages SET state = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
            " attempts = COALESCE(?, attempts) WHERE id = ?",
            (state.value, next_attempt_at, attempts, queue_id),
        )

    def set_recipients(self, queue_id: QueueId,
                       updates: Iterable[tuple[int, RecipientState, str | None, Reply | None]],
                       now: float) -> None:
        self._db.write_many(_SET_RECIPIENT, (
            (state.value, route, now, str(reply) if reply else None, queue_id, idx)
            for idx, state, route, reply in updates
        ))

    def remove(self, queue_id: QueueId) -> None:
        self._db.write("DELETE FROM messages WHERE id = ?", (queue_id,))
        self._db.write("DELETE FROM recipients WHERE queue_id = ?", (queue_id,))

    # -- reads -----------------------------------------------------------------------------
    async def due(self, now: float, limit: int) -> list[QueueId]:
        rows = await self._db.fetchall(
            "SELECT id FROM messages WHERE state = ? AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?",
            (QueueState.DEFERRED.value, now, limit),
        )
        return [str(r[0]) for r in rows]

    async def due_by_priority(self, now: float, limits: dict[Priority, int],
                              state: QueueState = QueueState.DEFERRED
                              ) -> list[tuple[QueueId, Priority]]:
        """What is due now, highest priority first, at most limits[p] of priority p.

        One range query per priority on (state, priority, next_attempt_at): a
        million deferred messages of one priority never slow the look at another.
        (`state` incoming: mail the scheduler parked, gateway.scheduler.incoming.)
        """
        out: list[tuple[QueueId, Priority]] = []
        for priority in sorted(limits):
            if limits[priority] <= 0:
                continue
            rows = await self._db.fetchall(
                "SELECT id FROM messages WHERE state = ? AND priority = ?"
                " AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (state.value, int(priority), now, limits[priority]),
            )
            out.extend((str(r[0]), priority) for r in rows)
        return out

    async def ids_in_state(self, state: QueueState) -> set[QueueId]:
        rows = await self._db.fetchall("SELECT id FROM messages WHERE state = ?", (state.value,))
        return {str(r[0]) for r in rows}

    async def next_due_time(self) -> float | None:
        rows = await self._db.fetchall(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state = ?",
            (QueueState.DEFERRED.value,),
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def message(self, queue_id: QueueId) -> IndexedMessage | None:
        rows = await self._db.fetchall(_SELECT_MESSAGE + " WHERE id = ?", (queue_id,))
        return _message(rows[0]) if rows else None

    async def recipients(self, queue_id: QueueId) -> list[IndexedRecipient]:
        rows = await self._db.fetchall(
            "SELECT idx, address, state, route, updated_at, last_reply FROM recipients"
            " WHERE queue_id = ? ORDER BY idx",
            (queue_id,),
        )
        return [_recipient(r) for r in rows]

    async def states(self) -> dict[QueueId, QueueState]:
        rows = await self._db.fetchall("SELECT id, state FROM messages")
        return {str(r[0]): QueueState(r[1]) for r in rows}

    async def page(self, *, state: QueueState | None = None, limit: int = 100,
                   after: QueueId = "") -> list[IndexedMessage]:
        sql = _SELECT_MESSAGE + " WHERE id > ?"
        params: tuple[object, ...] = (after,)
        if state is not None:
            sql += " AND state = ?"
            params += (state.value,)
        return [_message(r) for r in await self._db.fetchall(sql + " ORDER BY id LIMIT ?",
                                                              (*params, limit))]

    async def counts(self) -> dict[QueueState, int]:
        rows = await self._db.fetchall("SELECT state, COUNT(*) FROM messages GROUP BY state")
        return {QueueState(r[0]): int(r[1]) for r in rows}

    async def depth(self) -> list[tuple[QueueState, str | None, int]]:
        """Deferred and held messages by the route of their first pending recipient
        (metrics; the other states are counted from their directories).

        A count is a scan: it goes through the table in id order, DEPTH_CHUNK rows per
        query, so that the scheduler's own queries on this connection wait for one
        chunk (tens of milliseconds), never for the whole count.
        """
        counts: dict[tuple[str, str | None], int] = {}
        after = ""
        for _ in range(_MAX_DEPTH_CHUNKS):
            rows = await self._db.fetchall(_DEPTH_CHUNK_SQL, (
                *(s.value for s in RecipientState if s.is_final),
                after, QueueState.DEFERRED.value, QueueState.HOLD.value, DEPTH_CHUNK))
            if not rows:
                break
            for state, route, count, last in rows:
                after = max(after, str(last))
                if state is not None:
                    key = (str(state), None if route is None else str(route))
                    counts[key] = counts.get(key, 0) + int(count)
            if sum(int(r[2]) for r in rows) < DEPTH_CHUNK:
                break
        return [(QueueState(state), route, n) for (state, route), n in counts.items()]

    async def oldest_by_category(self) -> list[tuple[str | None, float]]:
        """Arrival of the oldest message waiting for delivery, by category (metrics); held
        messages wait for an operator, not for us, so they are left out.

        Index seeks on messages_age, never a scan: per state, the categories are walked
        one MIN(category) > previous at a time, and each one's oldest is its first entry.
        """
        oldest: dict[str | None, float] = {}
        for state in (QueueState.DEFERRED, QueueState.ACTIVE, QueueState.INCOMING):
            for category in [None, *await self._categories(state)]:
                rows = await self._db.fetchall(
                    "SELECT MIN(created_at) FROM messages WHERE state = ? AND category IS ?",
                    (state.value, category))
                if rows and rows[0][0] is not None:
                    at = float(rows[0][0])
                    oldest[category] = min(at, oldest.get(category, at))
        return list(oldest.items())

    async def _categories(self, state: QueueState) -> list[str]:
        out: list[str] = []
        for _ in range(_MAX_CATEGORIES):  # categories come from consent.yaml: a handful
            rows = await self._db.fetchall(
                "SELECT MIN(category) FROM messages WHERE state = ? AND category > ?",
                (state.value, out[-1] if out else ""))
            if not rows or rows[0][0] is None:
                break
            out.append(str(rows[0][0]))
        return out

    async def by_message_id(self, message_id: str) -> list[QueueId]:
        rows = await self._db.fetchall("SELECT id FROM messages WHERE message_id = ?",
                                       (message_id,))
        return [str(r[0]) for r in rows]


_MAX_CATEGORIES = 1000
DEPTH_CHUNK = 10_000  # messages per query when counting the queue (metrics)
_MAX_DEPTH_CHUNKS = 100_000  # a billion messages: the loop is bounded, the queue is not that big
# One chunk of messages in id order: (state, route, count, last id) per group, where
# state and route are NULL for the messages not deferred or held, which are only counted
# so that the chunk's last id is known.
_DEPTH_CHUNK_SQL = (
    "SELECT CASE WHEN state IN (?5, ?6) THEN state END AS s,"
    " CASE WHEN state IN (?5, ?6) THEN (SELECT r.route FROM recipients r"
    " WHERE r.queue_id = c.id AND r.state NOT IN (?1, ?2, ?3) LIMIT 1) END AS route,"
    " COUNT(*), MAX(id) FROM (SELECT id, state FROM messages WHERE id > ?4 ORDER BY id"
    " LIMIT ?7) AS c GROUP BY s, route"
)

_SELECT_MESSAGE = (
    "SELECT id, state, created_at, next_attempt_at, attempts, sender, message_id, size,"
    " recipient_count, priority FROM messages"
)


def _migrate(path: Path) -> None:
    """Indexes made before priorities or categories lack those columns: add them (every
    row normal, without category)."""
    if not path.exists():
        return
    conn = sqlite3.connect(path, timeout=10.0)
    try:
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(messages)")}
        if columns and "priority" not in columns:
            conn.execute("ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 2")
            conn.commit()
        if columns and "category" not in columns:  # before metrics by category
            conn.execute("ALTER TABLE messages ADD COLUMN category TEXT")
            conn.commit()
    finally:
        conn.close()


def _message(row: Row) -> IndexedMessage:
    return IndexedMessage(
        id=str(row[0]), state=QueueState(str(row[1])), created_at=float(row[2]),
        next_attempt_at=float(row[3]), attempts=int(row[4]), sender=str(row[5]),
        message_id=None if row[6] is None else str(row[6]), size=int(row[7]),
        recipient_count=int(row[8]), priority=Priority(int(row[9])),
    )


def _recipient(row: Row) -> IndexedRecipient:
    return IndexedRecipient(
        idx=int(row[0]), address=str(row[1]), state=RecipientState(str(row[2])),
        route=None if row[3] is None else str(row[3]), updated_at=float(row[4]),
        last_reply=None if row[5] is None else str(row[5]),
    )
