"""The state store: what the gateway remembers beyond the queue — events,
suppressions, consent, rate counters, idempotency keys and the audit log of
policy changes.

Stages talk to the narrow interfaces here (EventStore, SuppressionStore,
ConsentStore, RateCounters, IdempotencyStore, AuditLog), never to SQL, so a PostgreSQL or Redis
backend can replace the embedded SQLite one without touching them.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

from gateway.state.audit import AUDIT_SCHEMA, AuditLog, SqliteAuditLog
from gateway.state.consent import CONSENT_SCHEMA, ConsentStore, SqliteConsentStore
from gateway.state.db import StateDb
from gateway.state.events import EventStore, SqliteEventStore
from gateway.state.idempotency import (
    IDEMPOTENCY_SCHEMA,
    IdempotencyStore,
    SqliteIdempotencyStore,
)
from gateway.state.ratelimits import RATE_SCHEMA, RateCounters, SqliteRateCounters
from gateway.state.suppressions import (
    SUPPRESSION_SCHEMA,
    SqliteSuppressionStore,
    SuppressionStore,
)

__all__ = ["STATE_ERRORS", "AuditLog", "ConsentStore", "EventStore", "IdempotencyStore",
           "RateCounters", "SqliteEventStore", "StateStore", "SuppressionStore"]

log = logging.getLogger(__name__)

# What a store raises when its file is locked by another process past the busy
# timeout, unreadable or not a database: callers answer with a temporary failure.
STATE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
OPEN_ATTEMPTS = 30  # at start-up: about 6 minutes with SQLite's 10 s busy timeout
OPEN_RETRY = 2.0  # seconds between attempts (real time: start-up, not scheduling)


class StateStore:
    """Everything the gateway remembers, opened and closed together, in three
    SQLite files of the data directory:

    - `state.db`: events, written in batches every few milliseconds (gateway.sqlite);
    - `policy.db`: suppressions, consent and the audit log — read for every
      recipient, written rarely (CLI, unsubscribes, bounces);
    - `ratelimits.db`: rate counters, written for every recipient;
    - `idempotency.db`: idempotency keys, written twice for every message.

    Apart because of how they are written. Policy state is read and written in
    small transactions on the event loop that must not wait (gateway.state.db):
    in one file with the events, each event batch would hold the write lock the
    rate counters need; and a reader of a file that other processes write all
    the time loses its page cache at every commit and meets their WAL
    checkpoints, which made each suppression lookup cost more than the counter
    updates (measured; BENCHMARKS.md).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.policy_path = path.with_name("policy.db")
        self.ratelimits_path = path.with_name("ratelimits.db")
        self.idempotency_path = path.with_name("idempotency.db")
        self.events: EventStore = SqliteEventStore(path)
        self._policy_db = StateDb(self.policy_path,
                                  SUPPRESSION_SCHEMA + CONSENT_SCHEMA + AUDIT_SCHEMA)
        self._rate_db = StateDb(self.ratelimits_path, RATE_SCHEMA)
        self.suppressions: SuppressionStore = SqliteSuppressionStore(self._policy_db)
        self.consent: ConsentStore = SqliteConsentStore(self._policy_db)
        self.rate_counters: RateCounters = SqliteRateCounters(self._rate_db)
        self.audit: AuditLog = SqliteAuditLog(self._policy_db)
        # Opens on first use, like the policy files: idempotency off, never created.
        self._idempotency_db = StateDb(self.idempotency_path, IDEMPOTENCY_SCHEMA)
        self.idempotency: IdempotencyStore = SqliteIdempotencyStore(self._idempotency_db)

    async def open(self) -> None:
        """Open state.db, waiting (bounded) while another process holds it locked or
        it is unreadable: a clear error every try, rather than an exit that a service
        manager turns into a restart loop."""
        # policy.db and ratelimits.db open on first use: without policy files,
        # nothing reads them, and a gateway that has none never creates them.
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            try:
                await self.events.open()
                return
            except STATE_ERRORS as exc:
                if attempt == OPEN_ATTEMPTS:
                    raise
                log.error("state store %s unavailable (%s); trying again in %.0fs"
                          " (%d/%d)", self.path, exc, OPEN_RETRY, attempt, OPEN_ATTEMPTS)
                await asyncio.sleep(OPEN_RETRY)

    async def close(self) -> None:
        log.debug("policy state: %r %r", self._policy_db, self._rate_db)
        await self._idempotency_db.close()
        await self._rate_db.close()
        await self._policy_db.close()
        await self.events.close()
