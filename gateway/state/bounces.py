"""What bounce handling remembers: returned messages already processed (the ledger),
and soft bounces per address (for "N soft bounces within a window").

Both make processing idempotent, which is what lets every ingestion path be
crash-safe without a two-phase commit with the mailbox, and lets several
nodes poll one mailbox:

- the ledger: a message is *claimed* under its key (Maildir file name, IMAP
  UIDVALIDITY:UID, file digest) before it is processed, and *marked* with
  its outcome after. A key claimed or marked by anyone — this process,
  another, another node — is not processed again: `claim()` is one INSERT …
  ON CONFLICT, so of two nodes that fetched the same message at once exactly
  one wins, and the other leaves the message where it is (Ledger.BUSY) for
  the winner to move. A claim whose processing died with its process is
  taken over after `stale_after`; the message stayed in the mailbox
  meanwhile, so nothing is lost. A crash after the mark and before the move
  finds the key marked (Ledger.DONE) at the next poll: counted once, then
  moved.
- soft bounces are keyed by (address, queue id), so the same message's bounce
  counts once however often, and through whichever node, it is reported.

Two backends: bounces.db beside state.db (SQLite, one node), and the shared
PostgreSQL database (`state: postgresql://…`, migration 3), where what node A
ingested is known to node B. A backend that cannot answer raises
(StateUnavailable, sqlite3.Error): the ingester leaves the message in the
mailbox and tries again at its next poll.
"""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path
from typing import Protocol

from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import BOUNCES
from gateway.state.postgres import Conn, PostgresPool

__all__ = ["PROCESSING", "BounceStore", "Ledger", "PostgresBounceStore", "SqliteBounceStore"]

PROCESSING = "processing"  # the outcome of a claimed key until it is marked


class Ledger(enum.Enum):
    """What `claim()` found for a key."""

    CLAIMED = "claimed"  # ours: process the message, then mark() (or release())
    DONE = "done"  # processed before, here or on another node: skip it, move it on
    BUSY = "busy"  # being processed elsewhere right now: leave it in the mailbox


class BounceStore(Protocol):
    async def claim(self, key: str, source: str, now: float, stale_after: float) -> Ledger: ...

    async def mark(self, key: str, source: str, outcome: str, now: float) -> None:
        """Record the outcome (a claimed key, or one never claimed); a key marked before
        keeps its first outcome."""

    async def release(self, key: str) -> None:
        """Give up a claim that was not marked (processing failed): the next poll retries."""

    async def seen(self, key: str) -> bool:
        """True once the key is marked."""

    async def ingested(self) -> list[tuple[str, str, str]]:
        """(key, source, outcome) of every processed message, oldest first."""

    async def purge(self, before: float) -> int:
        """Forget keys older than `before` (they only guard against a retry)."""

    async def add_soft(self, address: str, queue_id: str, now: float, window: float
                       ) -> tuple[int, bool]:
        """Record a soft bounce (once per message); return the address's count in
        `window` and whether this one was new."""

    async def clear_soft(self, address: str) -> None:
        """After a suppression: the count starts again when it ends."""

    async def close(self) -> None: ...


# The same statements on both backends but for the placeholders (SQLite's ? and
# PostgreSQL's $n, written here as $n and turned into ? for SQLite).
_CLAIM = (f"INSERT INTO {{t}} AS i (key, time, source, outcome) VALUES ($1, $2, $3, "
          f"'{PROCESSING}') ON CONFLICT (key) DO UPDATE SET time = EXCLUDED.time,"
          f" source = EXCLUDED.source WHERE i.outcome = '{PROCESSING}' AND i.time <= $4"
          " RETURNING key")
_MARK = ("INSERT INTO {t} AS i (key, time, source, outcome) VALUES ($1, $2, $3, $4)"
         " ON CONFLICT (key) DO UPDATE SET time = EXCLUDED.time,"
         f" outcome = EXCLUDED.outcome WHERE i.outcome = '{PROCESSING}'")
_RELEASE = f"DELETE FROM {{t}} WHERE key = $1 AND outcome = '{PROCESSING}'"
_OUTCOME = "SELECT outcome FROM {t} WHERE key = $1"
_INGESTED = f"SELECT key, source, outcome FROM {{t}} WHERE outcome <> '{PROCESSING}' ORDER BY time"
_SOFT_ADD = ("INSERT INTO soft_bounces (address, queue_id, time) VALUES ($1, $2, $3)"
             " ON CONFLICT DO NOTHING")
_SOFT_WINDOW = "DELETE FROM soft_bounces WHERE address = $1 AND time <= $2"
_SOFT_COUNT = "SELECT count(*) FROM soft_bounces WHERE address = $1"


def _found(claimed: bool, outcome: str | None) -> Ledger:
    if claimed:
        return Ledger.CLAIMED
    # Gone between the two statements (its claimer released it): busy, tried next poll.
    return Ledger.BUSY if outcome in (PROCESSING, None) else Ledger.DONE


def _sqlite(sql: str) -> str:
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "?")
    return sql.format(t="ingested")


class SqliteBounceStore:
    """bounces.db (the tables: migrations/sqlite.py BOUNCES), opened on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = StateDb(path, BOUNCES)

    async def close(self) -> None:
        await self._db.close()

    async def claim(self, key: str, source: str, now: float, stale_after: float) -> Ledger:
        def run(c: sqlite3.Connection) -> Ledger:
            # fetchall: a RETURNING statement must run to its end before the commit.
            claimed = bool(c.execute(_sqlite(_CLAIM), (key, now, source, now - stale_after)
                                     ).fetchall())
            rows = [] if claimed else c.execute(_sqlite(_OUTCOME), (key,)).fetchall()
            return _found(claimed, str(rows[0][0]) if rows else None)
        return await self._db.call(run, write=True)

    async def mark(self, key: str, source: str, outcome: str, now: float) -> None:
        await self._db.execute(_sqlite(_MARK), (key, now, source, outcome))

    async def release(self, key: str) -> None:
        await self._db.execute(_sqlite(_RELEASE), (key,))

    async def seen(self, key: str) -> bool:
        row = await self._db.fetchone(_sqlite(_OUTCOME), (key,), quick=True)
        return row is not None and row[0] != PROCESSING

    async def ingested(self) -> list[tuple[str, str, str]]:
        rows = await self._db.fetchall(_sqlite(_INGESTED))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def purge(self, before: float) -> int:
        return await self._db.execute("DELETE FROM ingested WHERE time < ?", (before,))

    async def add_soft(self, address: str, queue_id: str, now: float, window: float
                       ) -> tuple[int, bool]:
        def run(c: sqlite3.Connection) -> tuple[int, bool]:
            new = c.execute(_sqlite(_SOFT_ADD), (address, queue_id, now)).rowcount == 1
            c.execute(_sqlite(_SOFT_WINDOW), (address, now - window))
            row = c.execute(_sqlite(_SOFT_COUNT), (address,)).fetchone()
            return int(row[0]), new
        return await self._db.call(run, write=True)

    async def clear_soft(self, address: str) -> None:
        await self._db.execute("DELETE FROM soft_bounces WHERE address = ?", (address,))

    def __repr__(self) -> str:
        return f"<SqliteBounceStore {self.path}>"


class PostgresBounceStore:
    """The ledger (bounces_ingested) and soft_bounces in the shared database."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def close(self) -> None:
        pass  # the pool is the StateStore's

    async def claim(self, key: str, source: str, now: float, stale_after: float) -> Ledger:
        async def run(c: Conn) -> Ledger:
            claimed = await c.fetchval(_pg(_CLAIM), key, now, source, now - stale_after)
            # A statement of its own: it sees a claim that another node committed while
            # ours waited on the row (one statement's snapshot would not).
            outcome = None if claimed else await c.fetchval(_pg(_OUTCOME), key)
            return _found(claimed is not None, outcome)
        return await self._pool.run(run)

    async def mark(self, key: str, source: str, outcome: str, now: float) -> None:
        await self._pool.run(lambda c: c.execute(_pg(_MARK), key, now, source, outcome))

    async def release(self, key: str) -> None:
        await self._pool.run(lambda c: c.execute(_pg(_RELEASE), key))

    async def seen(self, key: str) -> bool:
        outcome = await self._pool.run(lambda c: c.fetchval(_pg(_OUTCOME), key))
        return outcome is not None and outcome != PROCESSING

    async def ingested(self) -> list[tuple[str, str, str]]:
        rows = await self._pool.run(lambda c: c.fetch(_pg(_INGESTED)))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def purge(self, before: float) -> int:
        status = await self._pool.run(lambda c: c.execute(
            "DELETE FROM bounces_ingested WHERE time < $1", before))
        return int(str(status).split()[-1])

    async def add_soft(self, address: str, queue_id: str, now: float, window: float
                       ) -> tuple[int, bool]:
        async def run(c: Conn) -> tuple[int, bool]:
            new = str(await c.execute(_SOFT_ADD, address, queue_id, now)).endswith(" 1")
            await c.execute(_SOFT_WINDOW, address, now - window)
            return int(await c.fetchval(_SOFT_COUNT, address)), new
        return await self._pool.run(run, transaction=True)

    async def clear_soft(self, address: str) -> None:
        await self._pool.run(lambda c: c.execute(
            "DELETE FROM soft_bounces WHERE address = $1", address))

    def __repr__(self) -> str:
        return f"<PostgresBounceStore {self._pool.where}>"


def _pg(sql: str) -> str:
    return sql.format(t="bounces_ingested")
