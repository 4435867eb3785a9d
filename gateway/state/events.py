"""Events: each recipient's life, step by step (KumoMTA's log records, Postfix's
maillog lines — but queryable). Audit, metrics and webhooks build on these.

Writes are batched (gateway.sqlite); a query flushes first, so a caller always
sees the events it recorded.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from gateway.model import Event, EventType, QueuedMessage, QueueId, Reply
from gateway.sqlite import BatchedDb, Row
from gateway.state.migrations import migrate_sqlite
from gateway.state.migrations.sqlite import EVENTS

__all__ = ["EventStore", "SqliteEventStore", "accepted_events"]

_INSERT = (
    "INSERT INTO events (time, queue_id, type, recipient, message_id, route, host,"
    " reply_code, reply_enhanced, reply_text, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = (
    "SELECT time, queue_id, type, recipient, message_id, route, host, reply_code,"
    " reply_enhanced, reply_text, detail FROM events"
)


def accepted_events(qm: QueuedMessage, now: float) -> list[Event]:
    """One `accepted` event per recipient of a message intake just stored."""
    env = qm.envelope
    detail = (f"from <{env.mail_from}> via {env.client.listener} [{env.client.address}]"
              f" size={qm.size}")
    return [Event(time=now, queue_id=qm.id, type=EventType.ACCEPTED, recipient=rcpt,
                  message_id=env.message_id, detail=detail) for rcpt in env.recipients]


class EventStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def record(self, events: Iterable[Event]) -> None:
        """Queue events for storage; never blocks the caller."""
    async def flush(self) -> None:
        """Wait until the events recorded so far are stored."""
    async def by_queue_id(self, queue_id: QueueId) -> list[Event]: ...
    async def by_message_id(self, message_id: str) -> list[Event]: ...


class SqliteEventStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = BatchedDb(path, ())

    async def open(self) -> None:
        await asyncio.to_thread(_migrate, self.path)
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    def record(self, events: Iterable[Event]) -> None:
        self._db.write_many(_INSERT, (_row(e) for e in events))

    async def flush(self) -> None:
        await self._db.flush()

    async def by_queue_id(self, queue_id: QueueId) -> list[Event]:
        rows = await self._db.fetchall(_SELECT + " WHERE queue_id = ? ORDER BY seq", (queue_id,))
        return [_event(r) for r in rows]

    async def by_message_id(self, message_id: str) -> list[Event]:
        rows = await self._db.fetchall(
            _SELECT + " WHERE queue_id IN (SELECT DISTINCT queue_id FROM events"
            " WHERE message_id = ?) ORDER BY seq",
            (message_id,),
        )
        return [_event(r) for r in rows]


def _row(e: Event) -> tuple[object, ...]:
    reply = e.reply
    return (
        e.time, e.queue_id, e.type.value, e.recipient, e.message_id, e.route, e.host,
        reply.code if reply else None, reply.enhanced if reply else None,
        reply.text if reply else None, e.detail,
    )


def _event(row: Row) -> Event:
    code = row[7]
    reply = None
    if code is not None:
        reply = Reply(int(code), str(row[8] or ""), str(row[9] or ""))
    return Event(
        time=float(row[0]),
        queue_id=str(row[1]),
        type=EventType(str(row[2])),
        recipient=_opt(row[3]), message_id=_opt(row[4]), route=_opt(row[5]), host=_opt(row[6]),
        reply=reply, detail=_opt(row[10]),
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _migrate(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        migrate_sqlite(conn, str(path), EVENTS)
    finally:
        conn.close()
