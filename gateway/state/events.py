"""Events: each recipient's life, step by step (KumoMTA's log records, Postfix's
maillog lines — but queryable). Audit, metrics and webhooks build on these.

Beside them, `message_tags` keeps what intake learned about a message that
later events do not repeat: its category and the values of the configured
correlation headers (e.g. X-Booking-Id), so an operator can trace a message
by them and the summary can count by category (the admin API). Its rows are
keyed by queue id, which sorts by arrival time: retention can drop them with
`queue_id < new_queue_id(cutoff)`.

Writes are batched (gateway.core.sqlite); a query flushes first, so a caller always
sees the events it recorded.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.core.sqlite import BatchedDb, Row
from gateway.logs import log_events
from gateway.model import Event, EventType, QueuedMessage, QueueId, Reply
from gateway.state.migrations import migrate_sqlite
from gateway.state.migrations.sqlite import EVENTS

__all__ = ["CATEGORY_TAG", "EventStore", "SqliteEventStore", "Summary", "accepted_events",
           "message_tags", "summary_of"]

CATEGORY_TAG = ":category"  # a tag name no header field can have

_INSERT_TAG = "INSERT OR REPLACE INTO message_tags (queue_id, name, value) VALUES (?, ?, ?)"

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
    if env.client.auth_user:  # the actor: an SMTP AUTH user, or an HTTP API key's name
        detail += f" user={env.client.auth_user}"
    return [Event(time=now, queue_id=qm.id, type=EventType.ACCEPTED, recipient=rcpt,
                  message_id=env.message_id, detail=detail) for rcpt in env.recipients]


@dataclass(frozen=True)
class Summary:
    """Event counts since a time, by type, and by (category or route, type)."""

    since: float
    totals: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    by_route: dict[str, dict[str, int]] = field(default_factory=dict)


class EventStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def record(self, events: Iterable[Event]) -> None:
        """Queue events for storage; never blocks the caller."""
    def record_accepted(self, qm: QueuedMessage, now: float) -> None:
        """The `accepted` events of a message intake stored, and its tags."""
    async def flush(self) -> None:
        """Wait until the events recorded so far are stored."""
    def unwritten(self) -> int:
        """Rows recorded but not stored yet (after a flush: those the store refused)."""
    async def by_queue_id(self, queue_id: QueueId) -> list[Event]: ...
    async def by_message_id(self, message_id: str) -> list[Event]: ...
    async def by_tag(self, name: str, value: str, limit: int = 1000) -> list[Event]:
        """Every event of the messages tagged name=value (e.g. x-booking-id=B-123)."""
    async def by_recipient(self, address: str, limit: int = 50) -> list[Event]:
        """Every event of the `limit` newest messages with an event for `address`
        (compared lower-cased)."""
    async def tags(self, queue_ids: Iterable[QueueId]) -> dict[QueueId, dict[str, str]]: ...
    async def summary(self, since: float) -> Summary: ...


class SqliteEventStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        # Events append and tags upsert by key: a batch's two statements commute.
        self._db = BatchedDb(path, (), statements_commute=True)

    async def open(self) -> None:
        await asyncio.to_thread(_migrate, self.path)
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    def record(self, events: Iterable[Event]) -> None:
        events = list(events)
        self._db.write_many(_INSERT, (_row(e) for e in events))
        log_events(events)  # the log line of each (gateway.logs)

    def record_accepted(self, qm: QueuedMessage, now: float) -> None:
        self.record(accepted_events(qm, now))
        tags = message_tags(qm)
        if tags:
            self._db.write_many(_INSERT_TAG, ((qm.id, n, v) for n, v in tags))

    async def flush(self) -> None:
        await self._db.flush()

    def unwritten(self) -> int:
        return self._db.unwritten

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

    async def by_tag(self, name: str, value: str, limit: int = 1000) -> list[Event]:
        rows = await self._db.fetchall(
            _SELECT + " WHERE queue_id IN (SELECT queue_id FROM message_tags"
            " WHERE name = ? AND value = ? LIMIT ?) ORDER BY seq", (name, value, limit))
        return [_event(r) for r in rows]

    async def by_recipient(self, address: str, limit: int = 50) -> list[Event]:
        await self.flush()
        rows = await self._db.fetchall(
            _SELECT + " WHERE queue_id IN (SELECT queue_id FROM events"
            " WHERE lower(recipient) = lower(?) GROUP BY queue_id ORDER BY MAX(seq) DESC"
            " LIMIT ?) ORDER BY seq", (address.strip(), limit))
        return [_event(r) for r in rows]

    async def tags(self, queue_ids: Iterable[QueueId]) -> dict[QueueId, dict[str, str]]:
        ids = sorted(set(queue_ids))
        out: dict[QueueId, dict[str, str]] = {}
        for start in range(0, len(ids), 500):  # SQLite's bound on host parameters
            chunk = ids[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            for r in await self._db.fetchall(
                    f"SELECT queue_id, name, value FROM message_tags WHERE queue_id IN ({marks})",
                    tuple(chunk)):
                out.setdefault(str(r[0]), {})[str(r[1])] = str(r[2])
        return out

    async def summary(self, since: float) -> Summary:
        rows = await self._db.fetchall(
            "SELECT e.type, COALESCE(t.value, ''), COALESCE(e.route, ''), COUNT(*)"
            " FROM events e LEFT JOIN message_tags t"
            " ON t.queue_id = e.queue_id AND t.name = ?"
            " WHERE e.time >= ? GROUP BY 1, 2, 3", (CATEGORY_TAG, since))
        return summary_of(since, rows)


def message_tags(qm: QueuedMessage) -> tuple[tuple[str, str], ...]:
    """What to keep in message_tags: the category (when policies gave one) and the
    correlation header values intake found."""
    env = qm.envelope
    return ((CATEGORY_TAG, env.category), *env.tags) if env.category else env.tags


def summary_of(since: float, rows: Iterable[Row]) -> Summary:
    """A Summary from (type, category or '', route or '', count) rows (both backends)."""
    out = Summary(since)
    for kind, category, route, count in rows:
        n = int(count)
        out.totals[kind] = out.totals.get(kind, 0) + n
        by_cat = out.by_category.setdefault(category or "none", {})
        by_cat[kind] = by_cat.get(kind, 0) + n
        if route:
            by_route = out.by_route.setdefault(route, {})
            by_route[kind] = by_route.get(kind, 0) + n
    return out


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
