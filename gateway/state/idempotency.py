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
The table: gateway/state/migrations/sqlite.py (IDEMPOTENCY).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Protocol

from gateway.model import QueueId
from gateway.state.db import StateDb

__all__ = ["Claim", "IdempotencyStore", "SqliteIdempotencyStore"]

PURGE_EVERY = 3600.0  # seconds between purges of expired keys

@dataclass(frozen=True)
class Claim:
    won: bool  # True: this submission is the first; store it under `queue_id`
    queue_id: QueueId  # ours when won, else the original's
    stored: bool  # (lost) the original is in the spool; False: still being stored


class IdempotencyStore(Protocol):
    async def claim(self, scope: str, key: str, queue_id: QueueId, now: float,
                    window: float, stale_after: float) -> Claim: ...

    async def stored(self, scope: str, key: str, queue_id: QueueId) -> None: ...

    async def release(self, scope: str, key: str, queue_id: QueueId) -> None: ...

    async def lookup(self, scope: str, key: str, now: float) -> Claim | None:
        """The current holder of the key (won=False), or None."""

    async def purge(self, now: float) -> int: ...


class SqliteIdempotencyStore:
    def __init__(self, db: StateDb) -> None:
        self._db = db
        self._purged_at: float | None = None

    async def claim(self, scope: str, key: str, queue_id: QueueId, now: float,
                    window: float, stale_after: float) -> Claim:
        if self._purge_due(now):
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

    async def purge(self, now: float) -> int:
        self._purged_at = now
        return await self._db.execute("DELETE FROM idempotency_keys WHERE expires <= ?", (now,))

    def _purge_due(self, now: float) -> bool:
        # A clock stepped back (now < last purge) counts as due: purge and start again.
        last = self._purged_at
        return last is None or now - last >= PURGE_EVERY or now < last
