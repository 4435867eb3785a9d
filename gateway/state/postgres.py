"""The shared state backend on PostgreSQL: one connection pool per process, with
reconnection backoff and the schema check (stores: gateway.state.postgres_stores).

Selected by `state: postgresql://…` in config.yaml; every node of a cluster
points at the same database, so a suppression added through one node is read
by the next RCPT on any other (no cache in between).

Driver: asyncpg (binary protocol, prepared statements cached per connection):
an indexed lookup is one round trip, which is what every RCPT costs.

Failure semantics (issue 8): any error that says "the server cannot answer
now" — refused or dropped connection, timeout, server shutting down, too many
connections — becomes StateUnavailable, and the policy stage answers 451 4.3.0
(fail closed: never mail a possibly suppressed address). After a failure the
pool is not asked again until a backoff has passed (gateway.state.backoff),
so a dead server costs an RCPT nothing but the 451, and the first request
after the backoff reconnects. Already queued mail does not depend on it.

Security: the DSN may carry a password; it is kept in a Secret and only its
redacted form (`redact_dsn`) ever reaches a log or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.errors import StateUnavailable
from gateway.model import Secret
from gateway.state.backoff import BackendHealth, Backoff
from gateway.state.migrations import MIGRATIONS_TABLE, Migration, check_version, latest
from gateway.state.migrations.postgresql import POSTGRESQL

__all__ = ["HORIZON", "PostgresPool", "redact_dsn"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = Any  # asyncpg.Connection / pool proxy (asyncpg ships no type hints)

CONNECT_TIMEOUT = 2.0  # an RCPT should not wait long for a server that is gone
COMMAND_TIMEOUT = 5.0
# SQLSTATE classes that say "the server cannot answer now", not "the query is wrong":
# 08 connection exception, 57 operator intervention (shutdown), 53 insufficient
# resources (too many connections), 3D the database does not exist (yet).
_UNAVAILABLE_CLASSES = ("08", "57", "53", "3D")
# A lock number of our own for migrations (pg_advisory_xact_lock): "smtpgw" in ASCII.
_MIGRATION_LOCK = 0x736D7470_6777
# The horizon (gateway.webhooks.outbox_postgres explains it; the event counts' roll-up,
# gateway.state.counts_postgres, reads below it too): the snapshot's oldest running
# transaction that is not known to be another database's, else its xmax. pg_stat_activity
# is read after the statement's snapshot was taken, so a transaction it no longer shows
# counts (it may have committed after it).
HORIZON = (
    "SELECT coalesce((SELECT min(x) FROM pg_snapshot_xip(s.snap) AS x WHERE NOT EXISTS"
    "  (SELECT 1 FROM pg_stat_activity a WHERE a.backend_xid = x::xid"
    "   AND a.datname <> current_database())), pg_snapshot_xmax(s.snap)) AS horizon"
    " FROM (SELECT pg_current_snapshot() AS snap) s")
# A dedicated connection's session (an advisory lock lives as long as it): the server
# probes an idle client, so a node cut off by the network loses its locks in ~25 s, not
# after the kernel's two hours.
_KEEPALIVE = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
              "tcp_keepalives_count": "3"}


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (and without query parameters, which may hold one)."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit((parts.scheme, user + host, parts.path, "", ""))
    except ValueError:
        return "postgresql://(unparsable DSN)"


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _UNAVAILABLE_CLASSES
    return False


class PostgresPool:
    """The process's pool, opened lazily; `run()` maps unavailability and backs off."""

    def __init__(self, dsn: Secret, *, max_size: int = 4,
                 migrations: tuple[Migration, ...] = POSTGRESQL) -> None:
        self._dsn = dsn
        self.where = redact_dsn(dsn.value)
        self._max_size = max_size
        self._migrations = migrations
        self._pool: Any = None
        self._schema_ok = False
        self._backoff = Backoff()
        self._schema_problem: str | None = None

    @property
    def available(self) -> bool:
        """False while backing off after a failure (for readiness)."""
        return self._backoff.failures == 0 and self._schema_problem is None

    def health(self) -> BackendHealth:
        report = self._backoff.health()
        if self._schema_problem is not None:
            return replace(report, up=False, last_error="SchemaError")
        return report

    async def ping(self) -> None:
        """For readiness: StateUnavailable unless the server answers now (paced by the
        backoff like any request, so a probe every second costs a dead server nothing)."""
        await self.run(lambda c: c.fetchval("SELECT 1"))

    async def open(self) -> None:
        """Create the pool and check the schema if the server answers. A server that is
        down does not stop the start (queued mail must still go out); the check then
        runs at the first request that reaches it. A wrong schema stops the start."""
        self._pool = await asyncpg.create_pool(
            self._dsn.value, min_size=0, max_size=self._max_size,
            timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT)
        try:
            await self.run(lambda c: c.fetchval("SELECT 1"))
        except StateUnavailable as exc:
            log.error("state database %s: %s; policy checks answer 451 until it is back",
                      self.where, exc)

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5.0)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                self._pool.terminate()
            self._pool = None

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool = False) -> T:
        """`fn(connection)` on a pooled connection; StateUnavailable if the server is not
        there (now, or within the backoff after a failure)."""
        if self._pool is None:
            raise StateUnavailable(f"state database {self.where} is not open")
        wait = self._backoff.wait()
        if wait > 0:
            raise StateUnavailable(f"state database {self.where} unavailable "
                                   f"(next try in {wait:.1f}s)")
        try:
            async with self._pool.acquire() as conn:
                if not self._schema_ok:
                    await self._check_schema(conn)
                if transaction:
                    async with conn.transaction():
                        result = await fn(conn)
                else:
                    result = await fn(conn)
        except Exception as exc:
            raise self._unavailable(exc) from None
        ended = self._backoff.succeeded()
        if ended:
            log.warning("state database %s is back after %d failed tries", self.where, ended)
        return result

    def _unavailable(self, exc: Exception) -> Exception:
        """What to raise for `exc`: itself if the server answered (a bad statement is a
        bug, not an outage), else StateUnavailable, the failure counted for the backoff."""
        if not is_unavailable(exc):
            return exc
        self._failed(exc)
        return StateUnavailable(f"state database {self.where} unavailable: "
                                f"{type(exc).__name__}")

    async def connect(self, settings: dict[str, str] | None = None) -> Conn:
        """A connection of its own, outside the pool, for a session that must last (a
        webhook's advisory lock: gateway.webhooks.outbox_postgres), with these session
        `settings`; the caller closes it. StateUnavailable if the server is not there
        (now, or within the pool's backoff after a failure); the schema is checked first."""
        wait = self._backoff.wait()
        if wait > 0:
            raise StateUnavailable(f"state database {self.where} unavailable "
                                   f"(next try in {wait:.1f}s)")
        try:
            conn = await asyncpg.connect(self._dsn.value, timeout=CONNECT_TIMEOUT,
                                         command_timeout=COMMAND_TIMEOUT,
                                         server_settings={**_KEEPALIVE, **(settings or {})})
        except Exception as exc:
            raise self._unavailable(exc) from None
        try:
            if not self._schema_ok:
                await self._check_schema(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _failed(self, exc: BaseException) -> None:
        pause = self._backoff.failed(exc)
        tries = self._backoff.failures
        if tries == 1 or tries % 10 == 0:
            log.error("state database %s unavailable (%s: %s); try %d, next in %.2fs",
                      self.where, type(exc).__name__, exc, tries, pause)

    async def _check_schema(self, conn: Conn) -> None:
        found = await schema_version(conn)
        try:
            check_version(self.where, found, self._migrations, older_ok=False)
        except Exception as exc:
            if self._schema_problem is None:
                log.error("%s", exc)
            self._schema_problem = str(exc)
            raise StateUnavailable(self._schema_problem) from None
        self._schema_problem = None
        self._schema_ok = True

    async def check_schema_now(self) -> None:
        """At start: raise SchemaError if the server answers with a schema we cannot use."""
        if self._pool is None:
            return
        try:
            async with self._pool.acquire() as conn:
                found = await schema_version(conn)
        except Exception as exc:
            if is_unavailable(exc):
                return  # checked when it is back
            raise
        check_version(self.where, found, self._migrations, older_ok=False)
        self._schema_ok = True

    async def migrate(self) -> tuple[int, list[Migration]]:
        """Apply what the database lacks (one transaction, under an advisory lock so
        that two nodes cannot migrate at once); return (version before, applied)."""
        conn = await asyncpg.connect(self._dsn.value, timeout=CONNECT_TIMEOUT)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied double precision NOT NULL)")
                found = await schema_version(conn)
                check_version(self.where, found, self._migrations, older_ok=True)
                applied = [m for m in self._migrations if m.version > found]
                for m in applied:
                    for statement in m.statements:
                        await conn.execute(statement)
                    await conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES ($1, $2, $3)",
                                       m.version, m.name, time.time())
        finally:
            await conn.close()
        self._schema_ok = False  # checked again at the next request
        return found, applied

    async def version(self) -> tuple[int, int]:
        """(the database's schema version, the newest this gateway knows)."""
        conn = await asyncpg.connect(self._dsn.value, timeout=CONNECT_TIMEOUT)
        try:
            return await schema_version(conn), latest(self._migrations)
        finally:
            await conn.close()

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        if self._backoff.failures:
            state += f" unavailable {self._backoff!r}"
        return f"<PostgresPool {self.where} {state}>"


async def schema_version(conn: Conn) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", MIGRATIONS_TABLE)
    if not exists:
        return 0
    return int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}"))
