"""The state store interfaces on PostgreSQL (same contracts as the SQLite stores;
tests/unit/state/test_store_backends.py runs one suite over both).

Every call is one round trip on a pooled connection (gateway.state.postgres),
except event writes: `record()` queues, and a flusher sends the queue with
COPY every few milliseconds — as the SQLite event store batches. A flush that
fails because the server is away keeps its rows (up to MAX_PENDING_EVENTS,
then the oldest are dropped and counted: events are a record, not the truth
of delivery, which is the queue files) and is tried again after the backoff.

Security: addresses come from clients; they are only ever bound parameters.
Text from a message (a Message-ID, a header value, a remote reply) may hold a
NUL, which PostgreSQL text cannot: it is stored as U+FFFD, or one such event
would fail every batch it is in, and the node would write no event again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gateway.errors import StateUnavailable
from gateway.logs import log_events
from gateway.model import (
    ConsentRecord,
    Event,
    EventType,
    QueuedMessage,
    QueueId,
    Reply,
    Suppression,
)
from gateway.model import SuppressionReason as Reason
from gateway.state.address_hash import AddressHasher
from gateway.state.audit import AuditEntry
from gateway.state.events import (
    CATEGORY_TAG,
    Summary,
    accepted_events,
    message_tags,
    summary_of,
)
from gateway.state.postgres import Conn, PostgresPool
from gateway.state.suppressions import with_tokens

__all__ = ["PostgresAuditLog", "PostgresConsentStore", "PostgresEventStore",
           "PostgresSuppressionStore"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.02  # seconds events wait to be written together
MAX_PENDING_EVENTS = 100_000  # kept in memory while the server is away
RETRY_INTERVAL = 0.25  # seconds between flush tries then (the pool's backoff paces real tries)
_AUDIT = "INSERT INTO audit (time, actor, action, detail) VALUES ($1, $2, $3, $4)"
_TAG_UPSERT = ("INSERT INTO message_tags (queue_id, name, value) VALUES ($1, $2, $3)"
               " ON CONFLICT (queue_id, name) DO UPDATE SET value = EXCLUDED.value")


def _audit(now: float, actor: str, action: str, detail: dict[str, object]
           ) -> tuple[float, str, str, str]:
    return (now, actor, action, json.dumps(detail, sort_keys=True, ensure_ascii=False))


# -- suppressions -----------------------------------------------------------------------------

_SUP_COLUMNS = "target, scope, reason, created, added_by, expires, note"
_SUP_UPSERT = (
    f"INSERT INTO suppressions ({_SUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (target, scope) DO UPDATE SET reason = EXCLUDED.reason,"
    " created = EXCLUDED.created, added_by = EXCLUDED.added_by,"
    " expires = EXCLUDED.expires, note = EXCLUDED.note")


class PostgresSuppressionStore:
    def __init__(self, pool: PostgresPool, hasher: AddressHasher | None = None) -> None:
        self._pool = pool
        self._hasher = hasher  # an erased address's entries are under its keyed hash

    async def lookup(self, targets: tuple[str, ...], now: float) -> list[Suppression]:
        targets = with_tokens(self._hasher, targets)
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT {_SUP_COLUMNS} FROM suppressions WHERE target = ANY($1::text[])"
            " AND (expires IS NULL OR expires > $2)", list(targets), now))
        return [_suppression(r) for r in rows]

    async def add(self, entries: Iterable[Suppression], actor: str, now: float) -> int:
        rows = [(s.target, s.scope, s.reason.value, s.created, s.added_by, s.expires, s.note)
                for s in entries]
        audits = [_audit(now, actor, "suppress.add", {"target": r[0], "scope": r[1],
                                                      "reason": r[2]}) for r in rows]
        if len(rows) > 100:  # an import: one audit row for the batch, not one per entry
            audits = [_audit(now, actor, "suppress.import", {"count": len(rows)})]

        async def run(c: Conn) -> None:
            await c.executemany(_SUP_UPSERT, rows)
            await c.executemany(_AUDIT, audits)
        await self._pool.run(run, transaction=True)
        return len(rows)

    async def remove(self, target: str, scope: str | None, actor: str, now: float) -> int:
        # An erased address's entries (under its hash) go too: the person asked for mail.
        forms = list(with_tokens(self._hasher, (target,)))

        async def run(c: Conn) -> int:
            if scope is None:
                status = await c.execute(
                    "DELETE FROM suppressions WHERE target = ANY($1::text[])", forms)
            else:
                status = await c.execute("DELETE FROM suppressions WHERE target = ANY($1::text[])"
                                         " AND scope = $2", forms, scope)
            count = int(status.split()[-1])
            await c.execute(_AUDIT, *_audit(now, actor, "suppress.remove", {
                "target": target, "scope": scope or "*", "removed": count}))
            return count
        return await self._pool.run(run, transaction=True)

    async def all(self) -> list[Suppression]:
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT {_SUP_COLUMNS} FROM suppressions ORDER BY target"))
        return [_suppression(r) for r in rows]

    async def page(self, after: tuple[str, str], limit: int) -> list[Suppression]:
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT {_SUP_COLUMNS} FROM suppressions WHERE (target, scope) > ($1, $2)"
            " ORDER BY target, scope LIMIT $3", after[0], after[1], limit))
        return [_suppression(r) for r in rows]

    async def count(self) -> int:
        return int(await self._pool.run(lambda c: c.fetchval(
            "SELECT count(*) FROM suppressions")))

    async def purge_expired(self, now: float) -> int:
        status = await self._pool.run(lambda c: c.execute(
            "DELETE FROM suppressions WHERE expires IS NOT NULL AND expires <= $1", now))
        return int(str(status).split()[-1])


def _suppression(r: Any) -> Suppression:
    return Suppression(target=r[0], scope=r[1], reason=Reason(r[2]), created=float(r[3]),
                       added_by=r[4], expires=None if r[5] is None else float(r[5]),
                       note=r[6] or "")


# -- consent ----------------------------------------------------------------------------------

_CONSENT_COLUMNS = "address, category, granted, time, method, source, purposes"


class PostgresConsentStore:
    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool
        self.generation = 0  # gateway.state.consent

    async def current(self, addresses: tuple[str, ...], category: str
                      ) -> dict[str, ConsentRecord]:
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT DISTINCT ON (address) {_CONSENT_COLUMNS} FROM consent"
            " WHERE address = ANY($1::text[]) AND category = $2"
            " ORDER BY address, time DESC, seq DESC", list(dict.fromkeys(addresses)), category))
        return {r[0]: _consent(r) for r in rows}

    async def record(self, records: Iterable[ConsentRecord], actor: str, now: float) -> int:
        rows = [(r.address, r.category, r.granted, r.time, r.method, r.source,
                 " ".join(r.purposes)) for r in records]
        audits = [_audit(now, actor, "consent.grant" if r[2] else "consent.withdraw",
                         {"address": r[0], "category": r[1], "method": r[4]}) for r in rows]
        if len(rows) > 100:
            audits = [_audit(now, actor, "consent.import", {"count": len(rows)})]

        async def run(c: Conn) -> None:
            await c.executemany(f"INSERT INTO consent ({_CONSENT_COLUMNS})"
                                " VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
            await c.executemany(_AUDIT, audits)
        self.generation += 1
        await self._pool.run(run, transaction=True)
        self.generation += 1
        return len(rows)

    async def history(self, address: str) -> list[ConsentRecord]:
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT {_CONSENT_COLUMNS} FROM consent WHERE address = $1 ORDER BY time, seq",
            address))
        return [_consent(r) for r in rows]

    async def page(self, after: int, limit: int) -> list[tuple[int, ConsentRecord]]:
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT seq, {_CONSENT_COLUMNS} FROM consent WHERE seq > $1 ORDER BY seq LIMIT $2",
            after, limit))
        return [(int(r[0]), _consent(tuple(r)[1:])) for r in rows]


def _consent(r: Any) -> ConsentRecord:
    return ConsentRecord(address=r[0], category=r[1], granted=bool(r[2]), time=float(r[3]),
                         method=r[4], source=r[5] or "", purposes=tuple((r[6] or "").split()))


# -- audit ------------------------------------------------------------------------------------


class PostgresAuditLog:
    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def entries(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self._pool.run(lambda c: c.fetch(
            "SELECT time, actor, action, detail FROM audit ORDER BY seq DESC LIMIT $1", limit))
        return [AuditEntry(float(r[0]), r[1], r[2], r[3]) for r in rows]

    async def record(self, actor: str, action: str, detail: dict[str, object],
                     now: float) -> None:
        await self._pool.run(lambda c: c.execute(_AUDIT, *_audit(now, actor, action, detail)))


# -- events -----------------------------------------------------------------------------------

_EVENT_COLUMNS = ("time", "queue_id", "type", "recipient", "message_id", "route", "host",
                  "reply_code", "reply_enhanced", "reply_text", "detail")
_EVENT_SELECT = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM events"
EventRow = tuple[Any, ...]


class PostgresEventStore:
    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool
        self._pending: list[EventRow] = []
        self._pending_tags: list[tuple[str, str, str]] = []  # message_tags rows
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0  # events dropped because the server stayed away too long

    async def open(self) -> None:
        pass  # the pool is opened by the StateStore

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(StateUnavailable):
            await self.flush()
        if self._pending:
            log.error("%d events could not be written to %s", len(self._pending),
                      self._pool.where)

    def record_accepted(self, qm: QueuedMessage, now: float) -> None:
        # Before the events: a flush writes the tags first.
        self._pending_tags.extend((qm.id, n, v.replace("\0", "\ufffd"))
                                  for n, v in message_tags(qm))
        self.record(accepted_events(qm, now))

    def record(self, events: Iterable[Event]) -> None:
        events = list(events)
        log_events(events)  # the log line of each (gateway.logs)
        self._pending.extend(_event_row(e) for e in events)
        if len(self._pending) > MAX_PENDING_EVENTS:
            extra = len(self._pending) - MAX_PENDING_EVENTS
            del self._pending[:extra]
            self.dropped += extra
        if self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._start)

    def _start(self) -> None:
        self._timer = None
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except StateUnavailable:
            if self._timer is None:  # kept; tried again after the pool's backoff
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(RETRY_INTERVAL, self._start)

    async def flush(self) -> None:
        async with self._lock:
            while self._pending_tags:
                tags, self._pending_tags = self._pending_tags, []

                async def upsert(c: Conn, rows: list[tuple[str, str, str]] = tags) -> None:
                    await c.executemany(_TAG_UPSERT, rows)
                try:
                    await self._pool.run(upsert)
                except BaseException:
                    self._pending_tags[:0] = tags
                    raise
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._pool.run(_copier(batch))
                except BaseException:
                    self._pending[:0] = batch  # in order, before newer events
                    raise

    def unwritten(self) -> int:
        return len(self._pending) + len(self._pending_tags)

    async def by_queue_id(self, queue_id: QueueId) -> list[Event]:
        await self.flush()
        rows = await self._pool.run(lambda c: c.fetch(
            _EVENT_SELECT + " WHERE queue_id = $1 ORDER BY seq", queue_id))
        return [_event(r) for r in rows]

    async def by_message_id(self, message_id: str) -> list[Event]:
        await self.flush()
        rows = await self._pool.run(lambda c: c.fetch(
            _EVENT_SELECT + " WHERE queue_id IN (SELECT DISTINCT queue_id FROM events"
            " WHERE message_id = $1) ORDER BY time, seq", message_id))
        return [_event(r) for r in rows]

    async def by_tag(self, name: str, value: str, limit: int = 1000) -> list[Event]:
        await self.flush()
        rows = await self._pool.run(lambda c: c.fetch(
            _EVENT_SELECT + " WHERE queue_id IN (SELECT queue_id FROM message_tags"
            " WHERE name = $1 AND value = $2 LIMIT $3) ORDER BY seq", name, value, limit))
        return [_event(r) for r in rows]

    async def by_recipient(self, address: str, limit: int = 50) -> list[Event]:
        await self.flush()
        rows = await self._pool.run(lambda c: c.fetch(
            _EVENT_SELECT + " WHERE queue_id IN (SELECT queue_id FROM events"
            " WHERE lower(recipient) = lower($1) GROUP BY queue_id ORDER BY MAX(seq) DESC"
            " LIMIT $2) ORDER BY time, seq", address.strip(), limit))
        return [_event(r) for r in rows]

    async def tags(self, queue_ids: Iterable[QueueId]) -> dict[QueueId, dict[str, str]]:
        await self.flush()
        ids = sorted(set(queue_ids))
        rows = await self._pool.run(lambda c: c.fetch(
            "SELECT queue_id, name, value FROM message_tags WHERE queue_id = ANY($1::text[])",
            ids))
        out: dict[QueueId, dict[str, str]] = {}
        for r in rows:
            out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    async def summary(self, since: float) -> Summary:
        await self.flush()
        rows = await self._pool.run(lambda c: c.fetch(
            "SELECT e.type, COALESCE(t.value, ''), COALESCE(e.route, ''), COUNT(*)"
            " FROM events e LEFT JOIN message_tags t"
            " ON t.queue_id = e.queue_id AND t.name = $1"
            " WHERE e.time >= $2 GROUP BY 1, 2, 3", CATEGORY_TAG, since))
        return summary_of(since, [tuple(r) for r in rows])


def _copier(rows: list[EventRow]) -> Callable[[Conn], Awaitable[object]]:
    return lambda c: c.copy_records_to_table("events", records=rows, columns=_EVENT_COLUMNS)


def _event_row(e: Event) -> EventRow:
    reply = e.reply
    return (e.time, e.queue_id, e.type.value, _text(e.recipient), _text(e.message_id),
            e.route, _text(e.host), reply.code if reply else None,
            _text(reply.enhanced) if reply else None, _text(reply.text) if reply else None,
            _text(e.detail))


def _text(value: str | None) -> str | None:
    return value.replace("\0", "\ufffd") if value and "\0" in value else value


def _event(r: Any) -> Event:
    reply = None if r[7] is None else Reply(int(r[7]), r[8] or "", r[9] or "")
    return Event(time=float(r[0]), queue_id=r[1], type=EventType(r[2]), recipient=r[3],
                 message_id=r[4], route=r[5], host=r[6], reply=reply, detail=r[10])
