"""The state store: what the gateway remembers beyond the queue — events,
suppressions, consent, rate counters and the audit log of policy changes.

Stages talk to the narrow interfaces here (EventStore, SuppressionStore,
ConsentStore, RateCounters, AuditLog), never to SQL, so a PostgreSQL or Redis
backend can replace the embedded SQLite one without touching them.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

from gateway.state.address_hash import AddressHasher
from gateway.state.audit import (
    AUDIT_INSERT,
    AUDIT_SCHEMA,
    AuditLog,
    SqliteAuditLog,
    audit_row,
)
from gateway.state.consent import CONSENT_SCHEMA, ConsentStore, SqliteConsentStore
from gateway.state.db import StateDb
from gateway.state.erasure import (
    AddressMatcher,
    checkpoint,
    purge_events,
    scrub_policy,
    scrub_rates,
    scrub_state,
)
from gateway.state.events import EventStore, SqliteEventStore
from gateway.state.ratelimits import RATE_SCHEMA, RateCounters, SqliteRateCounters
from gateway.state.suppressions import (
    SUPPRESSION_SCHEMA,
    SqliteSuppressionStore,
    SuppressionStore,
)

__all__ = ["AddressHasher", "AuditLog", "ConsentStore", "EventStore", "RateCounters",
           "SqliteEventStore", "StateStore", "SuppressionStore"]

log = logging.getLogger(__name__)


class StateStore:
    """Everything the gateway remembers, opened and closed together, in three
    SQLite files of the data directory:

    - `state.db`: events, written in batches every few milliseconds (gateway.sqlite),
      and the webhooks' cursors; read and pruned off the hot path through
      `events_db` (webhook outbox, retention, erasure);
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

    `erase()` replaces an address by its keyed hash in all three
    (gateway.state.erasure; the key: gateway.state.address_hash).
    """

    def __init__(self, path: Path, erasure_key: Path | None = None) -> None:
        self.path = path
        self.policy_path = path.with_name("policy.db")
        self.ratelimits_path = path.with_name("ratelimits.db")
        self.events: EventStore = SqliteEventStore(path)
        # state.db beside the batched event writer, for what is not on the hot path
        # (webhook outbox, retention, erasure); opened on first use.
        self.events_db = StateDb(path, ())
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

    async def erase(self, matcher: AddressMatcher, actor: str, now: float) -> dict[str, int]:
        """Replace an address by its keyed hash in every file (gateway.state.erasure);
        the number of rows changed per table. The audit row (under the hash) is written
        with the policy changes, in their transaction."""
        counts = await self.events_db.call(lambda c: scrub_state(c, matcher), write=True)
        counts["rate_counters"] = await self._rate_db.call(lambda c: scrub_rates(c, matcher),
                                                           write=True)
        token = matcher.tokenize(matcher.address)

        def policy(c: sqlite3.Connection) -> None:
            counts.update(scrub_policy(c, matcher))
            c.execute(AUDIT_INSERT, audit_row(now, actor, "erase", {"address": token,
                                                                    **counts}))
        await self._policy_db.call(policy, write=True)
        return counts

    async def checkpoint(self, tries: int = 20) -> bool:
        """Empty every file's WAL into the file (after an erasure, so the old page
        versions are overwritten); False if another process's reader kept one busy."""
        done = True
        for path in (self.path, self.policy_path, self.ratelimits_path):
            for _ in range(tries):
                if not path.exists() or await asyncio.to_thread(_checkpoint_file, path):
                    break
                await asyncio.sleep(0.05)  # a reader in another process; it ends soon
            else:
                done = False
        return done

    async def purge_events(self, before: float, chunk: int = 5000) -> int:
        """Delete events older than `before`, `chunk` per write transaction (the batched
        event writer waits at most one chunk)."""
        total = 0
        for _ in range(100_000):  # bounded: 500 million events per run
            count = await self.events_db.call(lambda c: purge_events(c, before, chunk),
                                              write=True)
            total += count
            if count < chunk:
                break
        return total

    async def close(self) -> None:
        log.debug("policy state: %r %r", self._policy_db, self._rate_db)
        await self._rate_db.close()
        await self._policy_db.close()
        await self.events_db.close()
        await self.events.close()


def _checkpoint_file(path: Path) -> bool:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        return checkpoint(conn)
    finally:
        conn.close()
