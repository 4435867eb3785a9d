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

import sqlite3
from dataclasses import dataclass
from typing import Protocol

from gateway.model import QueueId
from gateway.state.db import StateDb
from gateway.state.postgres import PostgresPool

__all__ = ["Claim", "IdempotencyStore", "PostgresIdempotencyStore", "SqliteIdempotencyStore"]

PURGE_EVERY = 3600.0  # seconds between purges of expired keys


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

    async def pending(self, now: float) -> list[tuple[str, str, QueueId]]:
        """(scope, key, queue id) of every live claim not marked stored yet."""

    async def purge(self, now: float) -> int: ...


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
    def __init__(self, db: StateDb) -> None:
        self._db = db
        self._purges = PurgeSchedule()

    async def claim(self, scope: str, key: str, queue_id: QueueId, now: float,
                    window: float, stale_after: float) -> Claim:
        if self._purges.due(now):
            await self.purge(now)

        def run(c: sqlite3.Connection) -> Claim:
            row = c.execute("SELECT queue_id, stored, created, expires FROM idempotency_keys"
                            " WHERE scope = ? AND key = ?", (scope, key)).fetchone()
            if row is not None and float(row[3]) > now:
                abandoned = not row[1] and now - float(row[2]) > stale_after
                if not abandoned:
                    return Claim(False, str(row[0]), bool(row[1]))
            c.execute("INSERT OR REPLACE INTO idempotency_keys"
                      " (scope, key, queue_id, stored, created, expires)"
                      " VALUES (?, ?, ?, 0, ?, ?)", (scope, key, queue_id, now, now + window))
            return Claim(True, queue_id, False)
        return await self._db.call(run, write=True, quick=True)

    async def stored(self, scope: str, key: str, queue_id: QueueId) -> None:
        await self._db.call(lambda c: c.execute(
            "UPDATE idempotency_keys SET stored = 1 WHERE scope = ? AND key = ? AND queue_id = ?",
            (scope, key, queue_id)), write=True, quick=True)

    async def release(self, scope: str, key: str, queue_id: QueueId) -> None:
        await self._db.call(lambda c: c.execute(
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND queue_id = ?"
            " AND stored = 0", (scope, key, queue_id)), write=True, quick=True)

    async def lookup(self, scope: str, key: str, now: float) -> Claim | None:
        row = await self._db.fetchone(
            "SELECT queue_id, stored FROM idempotency_keys WHERE scope = ? AND key = ?"
            " AND expires > ?", (scope, key, now), quick=True)
        return None if row is None else Claim(False, str(row[0]), bool(row[1]))

    async def pending(self, now: float) -> list[tuple[str, str, QueueId]]:
        rows = await self._db.fetchall(
            "SELECT scope, key, queue_id FROM idempotency_keys WHERE stored = 0"
            " AND expires > ?", (now,))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def purge(self, now: float) -> int:
        self._purges.done(now)
        return await self._db.execute("DELETE FROM idempotency_keys WHERE expires <= ?", (now,))

    @property
    def where(self) -> str:
        return str(self._db.path)

    def __repr__(self) -> str:
        return f"<SqliteIdempotencyStore {self.where}>"


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

    async def pending(self, now: float) -> list[tuple[str, str, QueueId]]:
        rows = await self._pool.run(lambda c: c.fetch(
            "SELECT scope, key, queue_id FROM idempotency_keys WHERE NOT stored"
            " AND expires > $1", now))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def purge(self, now: float) -> int:
        self._purges.done(now)
        status = await self._pool.run(lambda c: c.execute(
            "DELETE FROM idempotency_keys WHERE expires <= $1", now))
        return int(str(status).split()[-1])

    @property
    def where(self) -> str:
        return self._pool.where

    def __repr__(self) -> str:
        return f"<PostgresIdempotencyStore {self.where}>"
