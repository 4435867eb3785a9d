"""The webhook outbox: the events table itself, read from a cursor per webhook.

Every process already writes each event once into state.db (gateway.state.events);
that table is the outbox. Each webhook keeps a cursor — the last event `seq`
it has dealt with — in `webhook_cursors` in the same file (a migration of
state.db), moved on only
after its receiver answered 2xx. So intake and delivery write nothing more
for webhooks, a restart (even after kill -9) resumes at the cursor, and the
price of a crash is a batch sent twice, never an event lost.

Why a cursor is enough: SQLite runs one write transaction at a time and
`seq` is AUTOINCREMENT, so rows become visible in `seq` order; reading the
highest `seq` first and then the rows up to it never skips a row that commits
later. A webhook seen for the first time starts at the newest event (it is
not sent the history).

The category of an event: `dropped` and `delayed` events name it in their
detail (`category=…`); the others take it from the message's `:category` tag
(message_tags, written at intake when policies classify mail), when there is one.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, replace

from gateway.sqlite import Row
from gateway.state.db import StateDb

__all__ = ["Outbox", "OutboxEvent", "ReadResult"]

_COLUMNS = ("seq, time, type, queue_id, recipient, message_id, route, host, reply_code,"
            " reply_enhanced, reply_text, detail")
_CATEGORY_IN_DETAIL = re.compile(r"(?:^|\s)category=(\S+)")
CATEGORY_TAG = ":category"


@dataclass(frozen=True)
class OutboxEvent:
    """One events row as webhooks send it (the type stays a string: a newer process
    may have written a type this one does not know)."""

    seq: int
    time: float
    type: str
    queue_id: str
    recipient: str | None
    message_id: str | None
    route: str | None
    host: str | None
    reply_code: int | None
    reply_enhanced: str | None
    reply_text: str | None
    detail: str | None
    category: str | None = None


@dataclass(frozen=True)
class ReadResult:
    events: list[OutboxEvent]
    scanned_to: int  # every event up to this seq was looked at (a new cursor when done)


class Outbox:
    def __init__(self, db: StateDb) -> None:
        self._db = db

    async def open(self) -> None:
        await self._db.open()  # migrates state.db (webhook_cursors: gateway.state.migrations)

    async def cursor(self, name: str, now: float) -> int:
        """The webhook's cursor; a new webhook's is set to the newest event, and kept."""
        def run(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT seq FROM webhook_cursors WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return int(row[0])
            head = _head(c)
            c.execute("INSERT INTO webhook_cursors (name, seq, updated) VALUES (?, ?, ?)",
                      (name, head, now))
            return head
        return await self._db.call(run, write=True)

    async def advance(self, name: str, seq: int, now: float) -> None:
        await self._db.execute(
            "UPDATE webhook_cursors SET seq = max(seq, ?), updated = ? WHERE name = ?",
            (seq, now, name))

    async def head(self) -> int:
        return await self._db.call(_head)

    async def read(self, after: int, types: tuple[str, ...], limit: int) -> ReadResult:
        """Up to `limit` events of `types` after `after`, with their categories."""
        def run(c: sqlite3.Connection) -> ReadResult:
            head = _head(c)  # first: whatever commits later has a higher seq
            marks = ", ".join("?" * len(types))
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND seq <= ?"
                f" AND type IN ({marks}) ORDER BY seq LIMIT ?",
                (after, head, *types, limit)).fetchall()
            events = _with_categories(c, [_event(r) for r in rows])
            scanned = events[-1].seq if len(events) >= limit else head
            return ReadResult(events, max(scanned, after))
        return await self._db.call(run)


def _head(c: sqlite3.Connection) -> int:
    row = c.execute("SELECT max(seq) FROM events").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _event(r: Row) -> OutboxEvent:
    return OutboxEvent(
        seq=int(r[0]), time=float(r[1]), type=str(r[2]), queue_id=str(r[3]),
        recipient=_opt(r[4]), message_id=_opt(r[5]), route=_opt(r[6]), host=_opt(r[7]),
        reply_code=None if r[8] is None else int(r[8]),
        reply_enhanced=_opt(r[9]), reply_text=_opt(r[10]), detail=_opt(r[11]),
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _with_categories(c: sqlite3.Connection, events: list[OutboxEvent]) -> list[OutboxEvent]:
    found: dict[str, str] = {}
    wanted = sorted({e.queue_id for e in events if e.queue_id})
    if wanted and _has_tags(c):
        for start in range(0, len(wanted), 500):  # SQLite's bound on host parameters
            chunk = wanted[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            for queue_id, value in c.execute(
                    f"SELECT queue_id, value FROM message_tags WHERE name = ?"
                    f" AND queue_id IN ({marks})", (CATEGORY_TAG, *chunk)):
                found[str(queue_id)] = str(value)
    return [_categorized(e, found.get(e.queue_id)) for e in events]


def _categorized(e: OutboxEvent, category: str | None) -> OutboxEvent:
    m = _CATEGORY_IN_DETAIL.search(e.detail or "")
    value = m.group(1) if m else category
    if value is None:
        return e
    return replace(e, category=value)


def _has_tags(c: sqlite3.Connection) -> bool:
    return c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                     " AND name = 'message_tags'").fetchone() is not None
