"""The state store: what the gateway remembers beyond the queue — events,
suppressions, consent, rate counters and the audit log of policy changes.

Stages talk to the narrow interfaces here (EventStore, SuppressionStore,
ConsentStore, RateCounters, AuditLog), never to SQL, so a PostgreSQL or Redis
backend can replace the embedded SQLite one without touching them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.state.audit import AuditLog, SqliteAuditLog
from gateway.state.consent import ConsentStore, SqliteConsentStore
from gateway.state.db import StateDb
from gateway.state.events import EventStore, SqliteEventStore
from gateway.state.migrations import sqlite as sqlite_migrations
from gateway.state.ratelimits import RateCounters, SharedRateCounters
from gateway.state.suppressions import SqliteSuppressionStore, SuppressionStore

__all__ = ["AuditLog", "ConsentStore", "EventStore", "RateCounters", "SqliteEventStore",
           "StateStore", "SuppressionStore"]

log = logging.getLogger(__name__)


class StateStore:
    """Everything the gateway remembers, opened and closed together, in three
    files of the data directory:

    - `state.db`: events, written in batches every few milliseconds (gateway.sqlite);
    - `policy.db`: suppressions, consent and the audit log — read for every
      recipient, written rarely (CLI, unsubscribes, bounces);
    - `ratelimits.table`: rate counters, updated for every recipient, in a
      memory-mapped table shared by the node's processes (gateway.state.ratelimits).

    Apart because of how they are written. Policy state is read in small
    statements on the event loop that must not wait (gateway.state.db); a reader
    of a file that other processes write all the time loses its page cache at
    every commit and meets their WAL checkpoints (measured; BENCHMARKS.md).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.policy_path = path.with_name("policy.db")
        self.ratelimits_path = path.with_name("ratelimits.table")
        self.events: EventStore = SqliteEventStore(path)
        self._policy_db = StateDb(self.policy_path, sqlite_migrations.POLICY)
        self.suppressions: SuppressionStore = SqliteSuppressionStore(self._policy_db)
        self.consent: ConsentStore = SqliteConsentStore(self._policy_db)
        self.rate_counters: RateCounters = SharedRateCounters(self.ratelimits_path)
        self.audit: AuditLog = SqliteAuditLog(self._policy_db)

    async def open(self) -> None:
        # policy.db and ratelimits.table open on first use: without policy files,
        # nothing reads them, and a gateway that has none never creates them.
        await self.events.open()

    async def close(self) -> None:
        log.debug("policy state: %r %r", self._policy_db, self.rate_counters)
        await self.rate_counters.close()
        await self._policy_db.close()
        await self.events.close()
