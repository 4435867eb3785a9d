"""Rate counters (GCRA), shared by every intake process through state.db.

One row per limit key: its theoretical arrival time (TAT). `acquire()` is one
UPSERT … RETURNING statement, atomic in SQLite, so two intake processes
counting the same key never both take the last token. The counters persist,
so a restart does not hand out a fresh burst.
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

from gateway.state.db import StateDb

__all__ = ["RATE_SCHEMA", "RateCounters", "SqliteRateCounters"]

RATE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rate_counters (
        key TEXT PRIMARY KEY,
        tat REAL NOT NULL,
        allowed INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
# GCRA: a request at `now` is allowed if max(tat, now) + interval - now <= window
# (window = burst * interval); an allowed request moves tat on by one interval.
_ACQUIRE = """
INSERT INTO rate_counters (key, tat, allowed) VALUES (:key, :now + :interval, 1)
ON CONFLICT (key) DO UPDATE SET
    allowed = (max(tat, :now) + :interval - :now <= :window),
    tat = CASE WHEN max(tat, :now) + :interval - :now <= :window
               THEN max(tat, :now) + :interval ELSE tat END
RETURNING allowed, tat
"""
# Shaping (`delay`): always take the token; the request may go at tat - window.
_RESERVE = """
INSERT INTO rate_counters (key, tat, allowed) VALUES (:key, :now + :interval, 1)
ON CONFLICT (key) DO UPDATE SET tat = max(tat, :now) + :interval, allowed = 1
RETURNING tat
"""


class RateCounters(Protocol):
    async def acquire(self, key: str, interval: float, burst: int, now: float
                      ) -> tuple[bool, float]:
        """Take one token: (allowed, tat); when refused, a token is free at tat - window."""
    async def acquire_many(self, requests: list[tuple[str, float, int]], now: float
                           ) -> list[tuple[bool, float]]:
        """acquire() for several (key, interval, burst), in one round trip."""
    async def reserve(self, key: str, interval: float, burst: int, now: float) -> float:
        """Take one token whatever the wait; return when it may be used (≥ now)."""
    async def purge(self, before: float) -> int: ...


class SqliteRateCounters:
    def __init__(self, db: StateDb) -> None:
        self._db = db

    async def acquire(self, key: str, interval: float, burst: int, now: float
                      ) -> tuple[bool, float]:
        row = await self._db.fetchone(_ACQUIRE, {"key": key, "now": now, "interval": interval,
                                                 "window": interval * burst}, write=True,
                                      quick=True)
        assert row is not None
        return bool(row[0]), float(row[1])

    async def acquire_many(self, requests: list[tuple[str, float, int]], now: float
                           ) -> list[tuple[bool, float]]:
        def run(c: sqlite3.Connection) -> list[tuple[bool, float]]:
            out = []
            for key, interval, burst in requests:
                (allowed, tat), = c.execute(_ACQUIRE, {
                    "key": key, "now": now, "interval": interval,
                    "window": interval * burst}).fetchall()
                out.append((bool(allowed), float(tat)))
            return out
        return await self._db.call(run, write=True, quick=True) if requests else []

    async def reserve(self, key: str, interval: float, burst: int, now: float) -> float:
        row = await self._db.fetchone(_RESERVE, {"key": key, "now": now, "interval": interval},
                                      write=True, quick=True)
        assert row is not None
        return max(now, float(row[0]) - interval * burst)

    async def purge(self, before: float) -> int:
        """Forget keys idle since `before` (their bucket is full again anyway)."""
        return await self._db.execute("DELETE FROM rate_counters WHERE tat < ?", (before,))
