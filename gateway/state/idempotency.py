"""Idempotency keys: which queue id a resubmitted message already has.

One row per (scope, key): the client (authenticated user, or IP address), the
key (the message's Idempotency-Key or Message-ID), the queue id reserved for
it, whether that message is stored yet, and when the row expires. `claim()`
reads and writes in one write transaction, so two intake processes racing
with the same message cannot both win: the loser sees the winner's row.

A row is `pending` from the claim until the message is in the spool
(`stored()`), or is removed if storing failed (`release()`). A pending row
older than `stale_after` belongs to a process that died between the two and
may be taken over; that message was never answered 250, so nothing is lost.

Expired rows are purged by `claim()` itself, at most once per PURGE_EVERY.
The table: gateway/state/migrations/sqlite.py (IDEMPOTENCY), and the same one
in PostgreSQL (migrations/postgresql.py, version 3).

Two backends: SQLite (idempotency.db, shared by one node's processes) and
PostgreSQL (shared by every node, `state: postgresql://…`), so that a resend
through node B of a message node A accepted gets A's queue id. There a claim
is one INSERT … ON CONFLICT DO UPDATE: the row lock decides between two nodes
claiming the same key at once, in one round trip, and the statement returns
the row as it stands afterwards — ours if we won, the holder's if not. No
read-then-write, so there is no window between the two.

A backend that cannot answer raises (StateUnavailable, sqlite3.Error); the
intake guard answers 451 4.3.0 then (gateway.intake.idempotency says why).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from typing import Protocol

from gateway.model import QueueId
from gateway.state.db import StateDb
from gateway.state.idempotency_table import ClaimTable, SlotState, key_digest
from gateway.state.postgres import PostgresPool

__all__ = ["Claim", "IdempotencyStore", "PostgresIdempotencyStore", "SqliteIdempotencyStore"]

PURGE_EVERY = 3600.0  # seconds between purges of expired keys
SAVE_DELAY = 0.05  # seconds stored keys gather before they are written to idempotency.db
SAVE_RETRY = 1.0  # seconds before a refused write is tried again
STORE_ERRORS = (sqlite3.Error, OSError)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    won: bool  # True: this submission is the first; store it under `queue_id`
    queue_id: QueueId  # ours when won, else the original's
    stored: bool  # (lost) the original is in the spool; False: still being stored


class IdempotencyStore(Protocol):
    @property
    def where(self) -> str:
        """The file or the database (without password), for log lines."""

    async def claim(self, scope: str, key: str, queue_id: QueueId, now: float,
                    window: float, stale_after: float) -> Claim: ...

    async def stored(self, scope: str, key: str, queue_id: QueueId) -> None: ...

    async def release(self, scope: str, key: str, queue_id: QueueId) -> None: ...

    async def lookup(self, scope: str, key: str, now: float) -> Claim | None:
        """The current holder of the key (won=False), or None."""

    async def settle(self, in_spool: set[QueueId], now: float, *, release_others: bool
                     ) -> tuple[int, int]:
        """Claims left pending by killed processes: stored if their message is in the
        spool, released if not and `release_others`. Returns (stored, released)."""

    async def purge(self, now: float) -> int: ...

    async def flush(self) -> None:
        """Write now what is written behind."""

    async def close(self) -> None:
        """Write what is pending; release files."""


class PurgeSchedule:
    """When `claim()` purges expired keys: at the first claim, then once per PURGE_EVERY.
    A clock stepped back (now < last purge) counts as due: purge and start again."""

    def __init__(self) -> None:
        self._purged_at: float | None = None

    def due(self, now: float) -> bool:
        last = self._purged_at
        return last is None or now - last >= PURGE_EVERY or now < last

    def done(self, now: float) -> None:
        self._purged_at = now


class SqliteIdempotencyStore:
    """One node's keys: recent claims in the shared memory-mapped table (claims and
    marks are microseconds, atomic across the node's processes: idempotency_table.py
    says why), every stored key for the whole window in idempotency.db, written
    behind in batches; a key the table does not know is looked up there."""

    def __init__(self, db: StateDb, table: ClaimTable) -> None:
        self._db = db
        self._table = table
        self._purges = PurgeSchedule()
        self._unsaved: list[tuple[str, str, QueueId, float, float]] = []
        self._saver: asyncio.Task[None] | None = None

    async def claim(self, scope: str, key: str, queue_id: QueueId, now: float,
                    window: float, stale_after: float) -> Claim:
        if self._purges.due(now):
            await self.purge(now)
        digest = key_digest(scope, key)
        held = self._table.claim(digest, queue_id, now, window, stale_after)
        if held is not None:
            return Claim(False, held.queue_id, held.stored)
        try:
            if not self._table.layout_known:
                await self._learn_what_db_holds()
            if not self._table.may_have_forgotten(now):
                # The table holds every live key: a miss is a new key (the common
                # case, and one round trip to idempotency.db fewer per message).
                return Claim(True, queue_id, False)
            # New to the table; idempotency.db may still know it (the table forgot it).
            row = await self._db.fetchone(
                "SELECT queue_id, created, expires FROM idempotency_keys WHERE scope = ?"
                " AND key = ? AND stored = 1 AND expires > ?", (scope, key, now), quick=True)
        except BaseException:
            self._table.mark(digest, queue_id, SlotState.FREE)  # the client retries
            raise
        if row is None:
            return Claim(True, queue_id, False)
        original = str(row[0])
        self._table.hold(digest, original, SlotState.PERSISTED, float(row[1]), float(row[2]),
                         replacing=queue_id)
        return Claim(False, original, True)

    async def _learn_what_db_holds(self) -> None:
        """A table laid out anew (first start, or its file lost) knows nothing of the
        keys idempotency.db holds: until the last of them expires, misses ask it."""
        row = await self._db.fetchone(
            "SELECT max(expires) FROM idempotency_keys WHERE stored = 1", quick=True)
        self._table.learn_forgotten(float(row[0]) if row and row[0] is not None else 0.0)

    async def stored(self, scope: str, key: str, queue_id: QueueId) -> None:
        held = self._table.mark(key_digest(scope, key), queue_id, SlotState.STORED)
        if held is None:
            return  # taken over meanwhile (this claim was stale): the new holder saves it
        self._unsaved.append((scope, key, queue_id, held.created, held.expires))
        if self._saver is None or self._saver.done():
            self._saver = asyncio.get_running_loop().create_task(self._save_behind())

    async def _save_behind(self) -> None:
        """Write stored keys to idempotency.db in batches (on its thread, waiting for
        the other processes' locks there, never on the event loop), then let the
        table reuse their slots."""
        await asyncio.sleep(SAVE_DELAY)  # gather a batch, as the event store does
        while self._unsaved:
            rows, self._unsaved = self._unsaved, []
            try:
                await self._write(rows)
            except STORE_ERRORS as exc:
                self._unsaved[:0] = rows  # kept in the table meanwhile: nothing forgotten
                log.error("cannot write %d idempotency keys to %s (%s); retrying in %.0fs",
                          len(rows), self.where, exc, SAVE_RETRY)
                await asyncio.sleep(SAVE_RETRY)
                continue
            self._table.mark_many(((key_digest(scope, key), queue_id)
                                   for scope, key, queue_id, _, _ in rows), SlotState.PERSISTED)

    async def release(self, scope: str, key: str, queue_id: QueueId) -> None:
        # Only a claim in progress: a stored key is never let go.
        self._table.mark(key_digest(scope, key), queue_id, SlotState.FREE,
                         only_from=SlotState.PENDING)

    async def flush(self) -> None:
        if self._saver is not None and not self._saver.done():
            self._saver.cancel()
            await asyncio.wait([self._saver])
        if self._unsaved:
            self._saver = asyncio.get_running_loop().create_task(self._save_now())
            await self._saver

    async def _save_now(self) -> None:
        rows, self._unsaved = self._unsaved, []
        try:
            await self._write(rows)
        except BaseException:
            self._unsaved[:0] = rows
            raise
        for scope, key, queue_id, _, _ in rows:
            self._table.mark(key_digest(scope, key), queue_id, SlotState.PERSISTED)

    async def lookup(self, scope: str, key: str, now: float) -> Claim | None:
        held = self._table.lookup(key_digest(scope, key), now)
        if held is not None:
            return Claim(False, held.queue_id, held.stored)
        row = await self._db.fetchone(
            "SELECT queue_id FROM idempotency_keys WHERE scope = ? AND key = ?"
            " AND stored = 1 AND expires > ?", (scope, key, now), quick=True)
        return None if row is None else Claim(False, str(row[0]), True)

    async def settle(self, in_spool: set[QueueId], now: float, *, release_others: bool
                     ) -> tuple[int, int]:
        # Claims are only ever pending in the table (idempotency.db holds stored keys).
        return self._table.settle(in_spool, now, release_others=release_others)

    async def purge(self, now: float) -> int:
        self._purges.done(now)
        return await self._db.execute("DELETE FROM idempotency_keys WHERE expires <= ?", (now,))

    async def close(self) -> None:
        """Write what is still unsaved (bounded by the database's own lock timeout)."""
        try:
            await self.flush()
        except STORE_ERRORS as exc:  # still in the table file, which the next start reads
            log.error("idempotency keys not written to %s at close: %s", self.where, exc)
        self._table.close()

    async def _write(self, rows: list[tuple[str, str, QueueId, float, float]]) -> None:
        await self._db.call(lambda c: c.executemany(
            "INSERT OR REPLACE INTO idempotency_keys (scope, key, queue_id, stored, created,"
            " expires) VALUES (?, ?, ?, 1, ?, ?)", rows), write=True)

    @property
    def where(self) -> str:
        return str(self._db.path)

    def __repr__(self) -> str:
        return f"<SqliteIdempotencyStore {self.where} {self._table!r} unsaved={len(self._unsaved)}>"


# The row may be taken over when it has expired, or was never stored and is older than
# stale_after (its process died between claim and store): the same rule as SQLite's.
_TAKE_OVER = "k.expires <= $4 OR (NOT k.stored AND $4 - k.created > $6)"
# Taken over: our values; held: the holder's unchanged (an update to the same values,
# which locks the row against a racing claim until this statement ends).
_PG_CLAIM = (
    "INSERT INTO idempotency_keys AS k (scope, key, queue_id, stored, created, expires)"
    " VALUES ($1, $2, $3, false, $4, $5) ON CONFLICT (scope, key) DO UPDATE SET"
    + ",".join(f" {col} = CASE WHEN {_TAKE_OVER} THEN {new} ELSE k.{col} END"
               for col, new in (("queue_id", "EXCLUDED.queue_id"), ("stored", "false"),
                                ("created", "EXCLUDED.created"),
                                ("expires", "EXCLUDED.expires")))
    + " RETURNING queue_id, stored")


class PostgresIdempotencyStore:
    """The keys in the shared database: one round trip per call (gateway.state.postgres
    maps a server that is away to StateUnavailable)."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool
        self._purges = PurgeSchedule()

    async def claim(self, scope: str, key: str, queue_id: QueueId, now: float,
                    window: float, stale_after: float) -> Claim:
        if self._purges.due(now):
            await self.purge(now)
        row = await self._pool.run(lambda c: c.fetchrow(
            _PG_CLAIM, scope, key, queue_id, now, now + window, stale_after))
        if row[0] == queue_id:  # queue ids are unique: the row is ours
            return Claim(True, queue_id, False)
        return Claim(False, str(row[0]), bool(row[1]))

    async def stored(self, scope: str, key: str, queue_id: QueueId) -> None:
        await self._pool.run(lambda c: c.execute(
            "UPDATE idempotency_keys SET stored = true"
            " WHERE scope = $1 AND key = $2 AND queue_id = $3", scope, key, queue_id))

    async def release(self, scope: str, key: str, queue_id: QueueId) -> None:
        await self._pool.run(lambda c: c.execute(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND queue_id = $3"
            " AND NOT stored", scope, key, queue_id))

    async def lookup(self, scope: str, key: str, now: float) -> Claim | None:
        row = await self._pool.run(lambda c: c.fetchrow(
            "SELECT queue_id, stored FROM idempotency_keys WHERE scope = $1 AND key = $2"
            " AND expires > $3", scope, key, now))
        return None if row is None else Claim(False, str(row[0]), bool(row[1]))

    async def settle(self, in_spool: set[QueueId], now: float, *, release_others: bool
                     ) -> tuple[int, int]:
        rows = await self._pool.run(lambda c: c.fetch(
            "SELECT scope, key, queue_id FROM idempotency_keys WHERE NOT stored"
            " AND expires > $1", now))
        stored = released = 0
        for scope, key, queue_id in ((str(r[0]), str(r[1]), str(r[2])) for r in rows):
            if queue_id in in_spool:
                await self.stored(scope, key, queue_id)
                stored += 1
            elif release_others:
                await self.release(scope, key, queue_id)
                released += 1
        return stored, released

    async def purge(self, now: float) -> int:
        self._purges.done(now)
        status = await self._pool.run(lambda c: c.execute(
            "DELETE FROM idempotency_keys WHERE expires <= $1", now))
        return int(str(status).split()[-1])

    async def flush(self) -> None:
        pass  # nothing is written behind

    async def close(self) -> None:
        pass  # the pool is the StateStore's

    @property
    def where(self) -> str:
        return self._pool.where

    def __repr__(self) -> str:
        return f"<PostgresIdempotencyStore {self.where}>"
