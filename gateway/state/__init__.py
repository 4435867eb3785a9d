"""The state store: what the gateway remembers beyond the queue (events today;
suppression, consent and rate counters as later stages arrive).

Stages talk to the narrow interfaces here, never to SQL, so a PostgreSQL
backend can replace the embedded SQLite one without touching them.
"""

from __future__ import annotations

from pathlib import Path

from gateway.state.events import EventStore, SqliteEventStore

__all__ = ["EventStore", "SqliteEventStore", "StateStore"]


class StateStore:
    """Everything stored in state.db, opened and closed together."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: EventStore = SqliteEventStore(path)

    async def open(self) -> None:
        await self.events.open()

    async def close(self) -> None:
        await self.events.close()
