"""The state store: what the gateway remembers beyond the queue — events,
suppressions, consent, rate counters and the audit log of policy changes.

Stages talk to the narrow interfaces here (EventStore, SuppressionStore,
ConsentStore, RateCounters, AuditLog), never to SQL, so a PostgreSQL or Redis
backend can replace the embedded SQLite one without touching them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.state.address_hash import AddressHasher
from gateway.state.audit import AUDIT_SCHEMA, AuditLog, SqliteAuditLog
from gateway.state.consent import CONSENT_SCHEMA, ConsentStore, SqliteConsentStore
from gateway.state.db import StateDb
from gateway.state.events import EventStore, SqliteEventStore
from gateway.state.ratelimits import RATE_SCHEMA, RateCounters, SqliteRateCounters
from gateway.state.suppressions import (
    SUPPRESSION_SCHEMA,
    SqliteSuppressionStore,
    SuppressionStore,
)

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["AddressHasher", "AuditLog", "ConsentStore", "EventStore", "RateCounters",
           "SqliteEventStore", "StateStore", "SuppressionStore", "open_state"]

log = logging.getLogger(__name__)


class StateStore:
    """Everything the gateway remembers, opened and closed together, in three
    SQLite files of the data directory:

    - `state.db`: events, written in batches every few milliseconds (gateway.sqlite);
    - `policy.db`: suppressions, consent and the audit log — read for every
      recipient, written rarely (CLI, unsubscribes, bounces);
    - `ratelimits.db`: rate counters, written for every recipient.

    Apart because of how they are written. Policy state is read and written in
    small transactions on the event loop that must not wait (gateway.state.db):
    in one file with the events, each event batch would hold the write lock the
    rate counters need; and a reader of a file that other processes write all
    the time loses its page cache at every commit and meets their WAL
    checkpoints, which made each suppression lookup cost more than the counter
    updates (measured; BENCHMARKS.md).

    An erased address is kept as a keyed hash (`hasher`, gateway.state.address_hash;
    gateway.state.erasure rewrites the files), which suppression lookups ask for too.
    """

    def __init__(self, path: Path, *, erasure_key: Path | None = None) -> None:
        self.path = path
        self.policy_path = path.with_name("policy.db")
        self.ratelimits_path = path.with_name("ratelimits.db")
        self.events: EventStore = SqliteEventStore(path)
        self.hasher = AddressHasher(erasure_key or path.with_name("erasure.key"))
        self._policy_db = StateDb(self.policy_path,
                                  SUPPRESSION_SCHEMA + CONSENT_SCHEMA + AUDIT_SCHEMA)
        self._rate_db = StateDb(self.ratelimits_path, RATE_SCHEMA)
        self.suppressions: SuppressionStore = SqliteSuppressionStore(self._policy_db,
                                                                     self.hasher)
        self.consent: ConsentStore = SqliteConsentStore(self._policy_db)
        self.rate_counters: RateCounters = SqliteRateCounters(self._rate_db)
        self.audit: AuditLog = SqliteAuditLog(self._policy_db)

    async def open(self) -> None:
        # policy.db and ratelimits.db open on first use: without policy files,
        # nothing reads them, and a gateway that has none never creates them.
        await self.events.open()

    async def close(self) -> None:
        log.debug("policy state: %r %r", self._policy_db, self._rate_db)
        await self._rate_db.close()
        await self._policy_db.close()
        await self.events.close()


def open_state(config: Config) -> StateStore:
    """The state store that `config` describes (not opened yet)."""
    return StateStore(config.state_path, erasure_key=config.erasure_key_path)
