"""`StateStore` and `open_state()`: the stores of one backend, built from the
configuration (the package docstring, gateway/state/__init__.py, says what each holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

from gateway.config import Config
from gateway.errors import StateUnavailable
from gateway.model import Secret
from gateway.state.address_hash import AddressHasher
from gateway.state.audit import AuditLog, SqliteAuditLog
from gateway.state.backoff import BackendHealth
from gateway.state.bounces import BounceStore, PostgresBounceStore, SqliteBounceStore
from gateway.state.breakers import BreakerStore, PostgresBreakerStore
from gateway.state.consent import ConsentStore, SqliteConsentStore
from gateway.state.db import StateDb
from gateway.state.events import EventStore, SqliteEventStore
from gateway.state.idempotency import (
    IdempotencyStore,
    PostgresIdempotencyStore,
    SqliteIdempotencyStore,
)
from gateway.state.idempotency_table import ClaimTable
from gateway.state.migrations import Migration, migrate_sqlite, sqlite_version
from gateway.state.migrations import sqlite as sqlite_migrations
from gateway.state.postgres import PostgresPool
from gateway.state.postgres_stores import (
    PostgresAuditLog,
    PostgresConsentStore,
    PostgresEventStore,
    PostgresSuppressionStore,
)
from gateway.state.ratelimits import RateCounters, SharedRateCounters
from gateway.state.redis_limits import RedisRateCounters
from gateway.state.settings import StateConfig
from gateway.state.suppressions import SqliteSuppressionStore, SuppressionStore
from gateway.state.tls import PostgresTlsStore, SqliteTlsStore, TlsStore

__all__ = ["STATE_ERRORS", "AddressHasher", "AuditLog", "BounceStore", "ConsentStore",
           "EventStore", "IdempotencyStore", "RateCounters", "SqliteEventStore", "StateStore",
           "SuppressionStore", "TlsStore", "open_state"]

log = logging.getLogger(__name__)

# What a store raises when it cannot answer now — a SQLite file locked by another
# process past the busy timeout, unreadable or not a database; a shared backend
# away: callers answer with a temporary failure.
STATE_ERRORS: tuple[type[Exception], ...] = (StateUnavailable, sqlite3.Error, OSError)
OPEN_ATTEMPTS = 30  # state.db at start-up: about 6 minutes with SQLite's 10 s busy timeout
OPEN_RETRY = 2.0  # seconds between attempts (real time: start-up, not scheduling)


class StateStore:
    """Everything the gateway remembers, opened and closed together, in three
    files of the data directory:

    - `state.db`: events, written in batches every few milliseconds (gateway.core.sqlite);
    - `policy.db`: suppressions, consent and the audit log — read for every
      recipient, written rarely (CLI, unsubscribes, bounces);
    - `ratelimits.table`: rate counters, updated for every recipient, in a
      memory-mapped table shared by the node's processes (gateway.state.ratelimits);
    - `idempotency.table` and `idempotency.db`: idempotency keys — recent claims in a
      memory-mapped table shared by the node's processes, every stored key in the
      database, written behind in batches (gateway.state.idempotency_table);
    - `bounces.db`: the bounce ledger and soft-bounce counts (gateway.state.bounces);
    - `tls.db`: MTA-STS policies and TLS report counts (gateway.state.tls), written by
      delivery, opened on first use.

    Apart because of how they are written. Policy state is read in small
    statements on the event loop that must not wait (gateway.state.db); a reader
    of a file that other processes write all the time loses its page cache at
    every commit and meets their WAL checkpoints (measured; BENCHMARKS.md).

    An erased address is kept as a keyed hash (`hasher`, gateway.state.address_hash;
    gateway.state.erasure rewrites the SQLite files, gateway.state.erasure_postgres
    the shared database), which suppression lookups on either backend ask for too.
    """

    def __init__(self, path: Path, config: StateConfig | None = None, *,
                 erasure_key: Path | None = None) -> None:
        config = config or StateConfig()
        self.path = path
        self.policy_path = path.with_name("policy.db")
        self.ratelimits_path = path.with_name("ratelimits.table")
        self.events: EventStore = SqliteEventStore(path)
        self.hasher = AddressHasher(erasure_key or path.with_name("erasure.key"))
        self._policy_db = StateDb(self.policy_path, sqlite_migrations.POLICY)
        self.suppressions: SuppressionStore = SqliteSuppressionStore(self._policy_db,
                                                                     self.hasher)
        self.consent: ConsentStore = SqliteConsentStore(self._policy_db)
        self.rate_counters: RateCounters = SharedRateCounters(self.ratelimits_path)
        self.audit: AuditLog = SqliteAuditLog(self._policy_db)
        # Opens on first use, like policy.db: idempotency off, never created.
        self.idempotency_path = path.with_name("idempotency.db")
        self._idempotency_db = StateDb(self.idempotency_path, sqlite_migrations.IDEMPOTENCY)
        self.idempotency: IdempotencyStore = SqliteIdempotencyStore(
            self._idempotency_db, ClaimTable(path.with_name("idempotency.table")))
        self.bounces: BounceStore = SqliteBounceStore(path.with_name("bounces.db"))
        self.tls: TlsStore = SqliteTlsStore(path.with_name("tls.db"))
        # Circuit-breaker state shared by the nodes; None (SQLite): each breaker stays in
        # the one delivery process's memory (gateway.state.breakers says why).
        self.breakers: BreakerStore | None = None
        self.postgres: PostgresPool | None = None
        if config.dsn is not None:
            self._use_postgres(config.dsn)
        if config.rate_limits_url is not None:
            self.rate_counters = RedisRateCounters(
                config.rate_limits_url, prefix=config.rate_limits_prefix,
                fail_open=config.rate_limits_fail_open)

    def _use_postgres(self, dsn: Secret) -> None:
        pool = self.postgres = PostgresPool(dsn)
        self.events = PostgresEventStore(pool)
        self.suppressions = PostgresSuppressionStore(pool, self.hasher)
        self.consent = PostgresConsentStore(pool)
        self.audit = PostgresAuditLog(pool)
        self.idempotency = PostgresIdempotencyStore(pool)
        self.bounces = PostgresBounceStore(pool)
        self.breakers = PostgresBreakerStore(pool)
        self.tls = PostgresTlsStore(pool)

    def health(self) -> dict[str, bool]:
        """Shared backends and whether they answered last time (False while backing
        off after a failure). Empty for the embedded ones."""
        return {name: report.up for name, report in self.backends().items()}

    def backends(self) -> dict[str, BackendHealth]:
        """Each shared backend's last known health (postgresql, redis)."""
        out = {}
        if self.postgres is not None:
            out["postgresql"] = self.postgres.health()
        if isinstance(self.rate_counters, RedisRateCounters):
            out["redis"] = self.rate_counters.health()
        return out

    async def probe(self) -> dict[str, BackendHealth]:
        """Ask each shared backend now (for /readyz; paced by their backoffs), then
        report as `backends()`."""
        shared = [b for b in (self.postgres, self.rate_counters)
                  if isinstance(b, PostgresPool | RedisRateCounters)]
        for backend in shared:
            with contextlib.suppress(StateUnavailable):
                await backend.ping()
        return self.backends()

    @property
    def backend(self) -> str:
        return "postgresql" if self.postgres is not None else "sqlite"

    async def open(self) -> None:
        """Open, and check the schema versions: SchemaError (refuse to start) if a
        database has a newer one, or (PostgreSQL) an older one."""
        try:
            if self.postgres is not None:
                await self.postgres.open()
                await self.postgres.check_schema_now()
                return
            # policy.db and ratelimits.table open on first use: without policy files,
            # nothing reads them, and a gateway that has none never creates them. An
            # existing policy.db is opened now, so a wrong schema stops the start.
            await self._open_events()
            if self.policy_path.exists():
                await self._policy_db.open()
        except BaseException:
            await self.close()  # no connection thread may keep the refused process alive
            raise

    async def _open_events(self) -> None:
        """state.db locked by another process: say so and try again (bounded) rather
        than exit into a service manager's restart loop."""
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            try:
                await self.events.open()
                return
            except (sqlite3.Error, OSError) as exc:
                # Only a lock held elsewhere passes; a file that is not a database (or
                # a directory) stays so: the start fails now, and the process exits.
                if attempt == OPEN_ATTEMPTS or not _locked(exc):
                    raise
                log.error("state store %s unavailable (%s); trying again in %.0fs"
                          " (%d/%d)", self.path, exc, OPEN_RETRY, attempt, OPEN_ATTEMPTS)
                await asyncio.sleep(OPEN_RETRY)

    async def migrate(self) -> list[tuple[str, int, list[Migration]]]:
        """Bring every database to this gateway's schema: (where, version before, applied)."""
        if self.postgres is not None:
            found, applied = await self.postgres.migrate()
            return [(self.postgres.where, found, applied)]
        out = []
        for path, migrations in self.sqlite_files():
            out.append((str(path), *await asyncio.to_thread(_migrate_file, path, migrations)))
        return out

    def sqlite_files(self) -> tuple[tuple[Path, tuple[Migration, ...]], ...]:
        """The embedded databases and their migration lists (bounces.db,
        idempotency.db and tls.db are opened, and migrated, on first use)."""
        return ((self.path, sqlite_migrations.EVENTS),
                (self.policy_path, sqlite_migrations.POLICY),
                (self.path.with_name("bounces.db"), sqlite_migrations.BOUNCES),
                (self.idempotency_path, sqlite_migrations.IDEMPOTENCY),
                (self.path.with_name("tls.db"), sqlite_migrations.TLS))

    async def close(self) -> None:
        log.debug("policy state: %r %r %r", self._policy_db, self.postgres, self.rate_counters)
        await self.rate_counters.close()
        await self.idempotency.close()
        await self._idempotency_db.close()
        await self.bounces.close()
        await self.tls.close()
        await self._policy_db.close()
        await self.events.close()
        if self.postgres is not None:
            await self.postgres.close()


def _locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def open_state(config: Config) -> StateStore:
    """The state store that `config` selects (not opened yet)."""
    return StateStore(config.state_path, config.state, erasure_key=config.erasure_key_path)


def _migrate_file(path: Path, migrations: tuple[Migration, ...]) -> tuple[int, list[Migration]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        found = sqlite_version(conn)
        return found, migrate_sqlite(conn, str(path), migrations)
    finally:
        conn.close()
