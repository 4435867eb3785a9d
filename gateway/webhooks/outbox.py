"""The webhook outbox: the events table itself, read from a cursor per webhook.

Every process already writes each event once into the state store
(gateway.state.events); that table is the outbox. Each webhook keeps a
cursor — the Position of the last event it has dealt with — beside the
events, moved on only after its receiver answered 2xx. So intake and
delivery write nothing more for webhooks, a restart (even after kill -9)
resumes at the cursor, and the price of a crash is a batch sent twice, never
an event lost. A webhook seen for the first time starts at the newest event
(it is not sent the history).

Two backends behind one Protocol (`Outbox` hands each sender an `OutboxLease`);
the dispatcher (gateway.webhooks.dispatcher) is the same for both:

- SQLite (`SqliteOutbox`, one node): the cursor is in `webhook_cursors` in
  state.db. A cursor over `seq` is enough here: SQLite runs one write
  transaction at a time and `seq` is AUTOINCREMENT, so rows become visible in
  `seq` order; reading the highest `seq` first and then the rows up to it
  never skips a row that commits later. Only the master process sends, so the
  lease is always granted.
- PostgreSQL (gateway.webhooks.outbox_postgres, N nodes): `seq` alone is not
  enough there, and one node at a time sends each webhook; that module says
  how and why.

The category of an event: `dropped` and `delayed` events name it in their
detail (`category=…`); the others take it from the message's `:category` tag
(message_tags, written at intake when policies classify mail), when there is one.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.state.db import StateDb

__all__ = ["CATEGORY_TAG", "Outbox", "OutboxEvent", "OutboxLease", "Position", "ReadResult",
           "SqliteOutbox", "categorized", "outbox_event"]

_COLUMNS = ("seq, time, type, queue_id, recipient, message_id, route, host, reply_code,"
            " reply_enhanced, reply_text, detail")
_CATEGORY_IN_DETAIL = re.compile(r"(?:^|\s)category=(\S+)")
CATEGORY_TAG = ":category"


@dataclass(frozen=True, order=True)
class Position:
    """A place in the outbox: every event up to it has been dealt with. Ordered as the
    outbox is read: by the writing transaction's id (`xid`, PostgreSQL; always 0 on
    SQLite, where `seq` alone orders), then by `seq`."""

    xid: int
    seq: int

    def __str__(self) -> str:
        return str(self.seq) if not self.xid else f"{self.xid}:{self.seq}"


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
    xid: int = 0  # the writing transaction (PostgreSQL); with seq, its Position

    @property
    def position(self) -> Position:
        return Position(self.xid, self.seq)


@dataclass(frozen=True)
class ReadResult:
    events: list[OutboxEvent]
    scanned_to: Position  # every event up to here was looked at (a new cursor when done)


class OutboxLease(Protocol):
    """One webhook's right to send, and its cursor. A sender asks for it until it gets
    it; while it holds it no other node sends that webhook."""

    name: str

    async def acquire(self, now: float) -> Position | None:
        """Take the lease and return the cursor (a new webhook's: the outbox's head);
        None while another node holds it."""

    async def read(self, after: Position, types: tuple[str, ...], limit: int) -> ReadResult:
        """Up to `limit` events of `types` after `after`, with their categories."""

    async def advance(self, to: Position, now: float) -> None:
        """Store the cursor; raises if the lease was lost meanwhile (nothing stored)."""

    async def pending(self, after: Position) -> int:
        """About how many events are after `after` (for the lag metric)."""

    async def release(self) -> None:
        """Let another node take the webhook (also after a failure: acquire again)."""


class Outbox(Protocol):
    async def open(self) -> None: ...
    def lease(self, name: str) -> OutboxLease:
        """The lease object of webhook `name`, not acquired yet."""


class SqliteOutbox:
    """state.db's events and webhook_cursors (one node: the lease is always granted)."""

    def __init__(self, db: StateDb) -> None:
        self._db = db

    async def open(self) -> None:
        await self._db.open()  # migrates state.db (webhook_cursors: gateway.state.migrations)

    def lease(self, name: str) -> OutboxLease:
        return _SqliteLease(self._db, name)

    def __repr__(self) -> str:
        return f"<SqliteOutbox {self._db.path}>"


class _SqliteLease:
    def __init__(self, db: StateDb, name: str) -> None:
        self._db = db
        self.name = name

    async def acquire(self, now: float) -> Position | None:
        """The webhook's cursor; a new webhook's is set to the newest event, and kept."""
        def run(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT seq FROM webhook_cursors WHERE name = ?",
                            (self.name,)).fetchone()
            if row is not None:
                return int(row[0])
            head = _head(c)
            c.execute("INSERT INTO webhook_cursors (name, seq, updated) VALUES (?, ?, ?)",
                      (self.name, head, now))
            return head
        return Position(0, await self._db.call(run, write=True))

    async def advance(self, to: Position, now: float) -> None:
        await self._db.execute(
            "UPDATE webhook_cursors SET seq = max(seq, ?), updated = ? WHERE name = ?",
            (to.seq, now, self.name))

    async def pending(self, after: Position) -> int:
        return max(0, await self._db.call(_head) - after.seq)

    async def release(self) -> None:
        pass  # nothing held: one node

    async def read(self, after: Position, types: tuple[str, ...], limit: int) -> ReadResult:
        def run(c: sqlite3.Connection) -> ReadResult:
            head = _head(c)  # first: whatever commits later has a higher seq
            marks = ", ".join("?" * len(types))
            rows = c.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND seq <= ?"
                f" AND type IN ({marks}) ORDER BY seq LIMIT ?",
                (after.seq, head, *types, limit)).fetchall()
            events = _with_categories(c, [outbox_event(r) for r in rows])
            scanned = events[-1].seq if len(events) >= limit else head
            return ReadResult(events, Position(0, max(scanned, after.seq)))
        return await self._db.call(run)


def _head(c: sqlite3.Connection) -> int:
    row = c.execute("SELECT max(seq) FROM events").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def outbox_event(r: Sequence[object], xid: int = 0) -> OutboxEvent:
    """An OutboxEvent from a row of _COLUMNS (both backends select them in this order)."""
    return OutboxEvent(
        seq=int(str(r[0])), time=float(str(r[1])), type=str(r[2]), queue_id=str(r[3]),
        recipient=_opt(r[4]), message_id=_opt(r[5]), route=_opt(r[6]), host=_opt(r[7]),
        reply_code=None if r[8] is None else int(str(r[8])),
        reply_enhanced=_opt(r[9]), reply_text=_opt(r[10]), detail=_opt(r[11]), xid=xid,
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
    return [categorized(e, found.get(e.queue_id)) for e in events]


def categorized(e: OutboxEvent, category: str | None) -> OutboxEvent:
    """`e` with its category: the one its detail names, else its message's tag."""
    m = _CATEGORY_IN_DETAIL.search(e.detail or "")
    value = m.group(1) if m else category
    if value is None:
        return e
    return replace(e, category=value)


def _has_tags(c: sqlite3.Connection) -> bool:
    return c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                     " AND name = 'message_tags'").fetchone() is not None
