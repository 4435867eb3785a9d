"""What bounce handling remembers (bounces.db): returned messages already processed, and
soft bounces per address (for "N soft bounces within a window").

Both tables make processing idempotent, which is what lets every ingestion
path be crash-safe without a two-phase commit with the mailbox: a message
processed twice (a crash after processing, before the move to cur/ or to the
processed folder) finds its key in `ingested` and is not counted again; a soft
bounce is keyed by (address, queue id), so the same message's bounce counts
once however often it is reported.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import BOUNCES

__all__ = ["BounceStore"]



class BounceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = StateDb(path, BOUNCES)

    async def close(self) -> None:
        await self._db.close()

    async def seen(self, key: str) -> bool:
        row = await self._db.fetchone("SELECT 1 FROM ingested WHERE key = ?", (key,),
                                      quick=True)
        return row is not None

    async def mark(self, key: str, source: str, outcome: str, now: float) -> None:
        await self._db.execute("INSERT OR IGNORE INTO ingested (key, time, source, outcome)"
                               " VALUES (?, ?, ?, ?)", (key, now, source, outcome))

    async def ingested(self) -> list[tuple[str, str, str]]:
        """(key, source, outcome) of every processed message, oldest first."""
        rows = await self._db.fetchall("SELECT key, source, outcome FROM ingested ORDER BY time")
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def purge(self, before: float) -> int:
        """Forget processed keys older than `before` (they only guard against a retry)."""
        return await self._db.execute("DELETE FROM ingested WHERE time < ?", (before,))

    async def add_soft(self, address: str, queue_id: str, now: float, window: float
                       ) -> tuple[int, bool]:
        """Record a soft bounce (once per message); return the address's count in
        `window` and whether this one was new."""
        def run(c: sqlite3.Connection) -> tuple[int, bool]:
            new = c.execute("INSERT OR IGNORE INTO soft_bounces (address, queue_id, time)"
                            " VALUES (?, ?, ?)", (address, queue_id, now)).rowcount == 1
            c.execute("DELETE FROM soft_bounces WHERE address = ? AND time <= ?",
                      (address, now - window))
            row = c.execute("SELECT count(*) FROM soft_bounces WHERE address = ?",
                            (address,)).fetchone()
            return int(row[0]), new
        return await self._db.call(run, write=True)

    async def clear_soft(self, address: str) -> None:
        """After a suppression: the count starts again when it ends."""
        await self._db.execute("DELETE FROM soft_bounces WHERE address = ?", (address,))

    def __repr__(self) -> str:
        return f"<BounceStore {self.path}>"
