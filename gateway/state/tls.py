"""What outbound TLS security remembers: recipient domains' MTA-STS policies (RFC 8461)
and the TLS outcome counts that daily TLS reports (RFC 8460) are built from.

- `sts_policies`: one row per policy domain — the policy text as served, its id
  (from the `_mta-sts` TXT record), when it was fetched and when it expires
  (fetched_at + max_age). gateway.delivery.mta_sts keeps a copy in memory; the row
  is what survives a restart and, on PostgreSQL, what the other nodes use without
  fetching it again.
- `tlsrpt_counts`: sessions counted per (day, policy domain, policy type, policy
  text, result, MX host, receiving IP); writers add to a row (upsert), so several
  processes and nodes can count into the same day.
- `tlsrpt_sent`: a (day, policy domain) report claimed by the node that sends it,
  so it goes out once, however many nodes run the daily job.

Two backends, like gateway.state.bounces: tls.db beside state.db (SQLite) and the
shared PostgreSQL database (migration 8).

Security: policy text and host names come from the network (DNS, HTTPS); they are
only ever bound parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import TLS
from gateway.state.postgres import Conn, PostgresPool

__all__ = ["OutcomeCount", "PostgresTlsStore", "SqliteTlsStore", "StoredPolicy", "TlsStore"]

SENDING = "sending"  # a claimed report's outcome until it is marked


@dataclass(frozen=True)
class StoredPolicy:
    domain: str
    policy_id: str
    text: str  # the policy as served (parsed again when loaded)
    fetched_at: float
    expires: float


@dataclass(frozen=True)
class OutcomeCount:
    day: str  # YYYY-MM-DD, UTC
    policy_domain: str
    policy_type: str  # "sts", "tlsa", "no-policy-found"
    policy_strings: str  # the policy's lines joined by "\n"
    result: str  # "success" or an RFC 8460 result-type
    mx_host: str
    receiving_ip: str
    count: int
    detail: str = ""  # the first failure's reason seen for the row

    @property
    def key(self) -> tuple[str, ...]:
        return (self.day, self.policy_domain, self.policy_type, self.policy_strings,
                self.result, self.mx_host, self.receiving_ip)


class TlsStore(Protocol):
    async def policy(self, domain: str) -> StoredPolicy | None: ...

    async def policies(self) -> list[StoredPolicy]:
        """Every stored policy (for the background refresh)."""

    async def save_policy(self, policy: StoredPolicy) -> None: ...

    async def forget_policy(self, domain: str) -> None: ...

    async def add_counts(self, rows: Iterable[OutcomeCount]) -> None:
        """Add each row's count to the stored one (a new row keeps its detail)."""

    async def counts(self, day: str) -> list[OutcomeCount]: ...

    async def days(self) -> list[str]:
        """Days that have counts, oldest first."""

    async def claim_report(self, day: str, domain: str, node: str, now: float) -> bool:
        """Take the (day, domain) report if nobody has: True for exactly one caller."""

    async def mark_report(self, day: str, domain: str, outcome: str) -> None: ...

    async def release_report(self, day: str, domain: str) -> None:
        """Give a claim back (the send failed): the next run tries again."""

    async def reports(self, day: str) -> dict[str, str]:
        """Policy domain → outcome of the day's claimed reports."""

    async def purge(self, before_day: str) -> int:
        """Drop counts and report claims of days before `before_day`."""

    async def close(self) -> None: ...


# The same statements on both backends but for the placeholders ($n, turned into ? for
# SQLite), as in gateway.state.bounces.
_POLICY_COLUMNS = "domain, policy_id, text, fetched_at, expires"
_POLICY_UPSERT = (f"INSERT INTO sts_policies ({_POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                  " ON CONFLICT (domain) DO UPDATE SET policy_id = EXCLUDED.policy_id,"
                  " text = EXCLUDED.text, fetched_at = EXCLUDED.fetched_at,"
                  " expires = EXCLUDED.expires")
_COUNT_COLUMNS = ("day, policy_domain, policy_type, policy_strings, result, mx_host,"
                  " receiving_ip, count, detail")
_COUNT_ADD = (f"INSERT INTO tlsrpt_counts AS t ({_COUNT_COLUMNS})"
              " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
              " ON CONFLICT (day, policy_domain, policy_type, policy_strings, result, mx_host,"
              " receiving_ip) DO UPDATE SET count = t.count + EXCLUDED.count")
_CLAIM = ("INSERT INTO tlsrpt_sent (day, policy_domain, node, time, outcome)"
          f" VALUES ($1, $2, $3, $4, '{SENDING}') ON CONFLICT DO NOTHING RETURNING day")


def _sqlite(sql: str) -> str:
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "?")
    return sql


def _policy(r: Any) -> StoredPolicy:
    return StoredPolicy(str(r[0]), str(r[1]), str(r[2]), float(r[3]), float(r[4]))


def _count(r: Any) -> OutcomeCount:
    day, domain, kind, strings, result, mx_host, ip = (str(v) for v in tuple(r)[:7])
    return OutcomeCount(day, domain, kind, strings, result, mx_host, ip, int(r[7]), str(r[8]))


def _count_row(c: OutcomeCount) -> tuple[object, ...]:
    return (*c.key, c.count, c.detail)


class SqliteTlsStore:
    """tls.db (the tables: migrations/sqlite.py TLS), opened on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = StateDb(path, TLS)

    async def close(self) -> None:
        await self._db.close()

    async def policy(self, domain: str) -> StoredPolicy | None:
        row = await self._db.fetchone(
            f"SELECT {_POLICY_COLUMNS} FROM sts_policies WHERE domain = ?", (domain,))
        return None if row is None else _policy(row)

    async def policies(self) -> list[StoredPolicy]:
        rows = await self._db.fetchall(f"SELECT {_POLICY_COLUMNS} FROM sts_policies")
        return [_policy(r) for r in rows]

    async def save_policy(self, policy: StoredPolicy) -> None:
        await self._db.execute(_sqlite(_POLICY_UPSERT), (
            policy.domain, policy.policy_id, policy.text, policy.fetched_at, policy.expires))

    async def forget_policy(self, domain: str) -> None:
        await self._db.execute("DELETE FROM sts_policies WHERE domain = ?", (domain,))

    async def add_counts(self, rows: Iterable[OutcomeCount]) -> None:
        await self._db.transaction([(_sqlite(_COUNT_ADD), [_count_row(c) for c in rows])])

    async def counts(self, day: str) -> list[OutcomeCount]:
        rows = await self._db.fetchall(
            f"SELECT {_COUNT_COLUMNS} FROM tlsrpt_counts WHERE day = ?", (day,))
        return [_count(r) for r in rows]

    async def days(self) -> list[str]:
        rows = await self._db.fetchall("SELECT DISTINCT day FROM tlsrpt_counts ORDER BY day")
        return [str(r[0]) for r in rows]

    async def claim_report(self, day: str, domain: str, node: str, now: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return bool(c.execute(_sqlite(_CLAIM), (day, domain, node, now)).fetchall())
        return await self._db.call(run, write=True)

    async def mark_report(self, day: str, domain: str, outcome: str) -> None:
        await self._db.execute("UPDATE tlsrpt_sent SET outcome = ? WHERE day = ?"
                               " AND policy_domain = ?", (outcome, day, domain))

    async def release_report(self, day: str, domain: str) -> None:
        await self._db.execute("DELETE FROM tlsrpt_sent WHERE day = ? AND policy_domain = ?",
                               (day, domain))

    async def reports(self, day: str) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT policy_domain, outcome FROM tlsrpt_sent WHERE day = ?", (day,))
        return {str(r[0]): str(r[1]) for r in rows}

    async def purge(self, before_day: str) -> int:
        def run(c: sqlite3.Connection) -> int:
            c.execute("DELETE FROM tlsrpt_sent WHERE day < ?", (before_day,))
            return c.execute("DELETE FROM tlsrpt_counts WHERE day < ?", (before_day,)).rowcount
        return await self._db.call(run, write=True)

    def __repr__(self) -> str:
        return f"<SqliteTlsStore {self.path}>"


class PostgresTlsStore:
    """sts_policies, tlsrpt_counts and tlsrpt_sent in the shared database."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def close(self) -> None:
        pass  # the pool is the StateStore's

    async def policy(self, domain: str) -> StoredPolicy | None:
        row = await self._pool.run(lambda c: c.fetchrow(
            f"SELECT {_POLICY_COLUMNS} FROM sts_policies WHERE domain = $1", domain))
        return None if row is None else _policy(row)

    async def policies(self) -> list[StoredPolicy]:
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT {_POLICY_COLUMNS} FROM sts_policies"))
        return [_policy(r) for r in rows]

    async def save_policy(self, policy: StoredPolicy) -> None:
        await self._pool.run(lambda c: c.execute(
            _POLICY_UPSERT, policy.domain, policy.policy_id, policy.text, policy.fetched_at,
            policy.expires))

    async def forget_policy(self, domain: str) -> None:
        await self._pool.run(lambda c: c.execute(
            "DELETE FROM sts_policies WHERE domain = $1", domain))

    async def add_counts(self, rows: Iterable[OutcomeCount]) -> None:
        # Sorted by key, so two nodes adding to the same rows lock them in the same order.
        values = sorted(_count_row(c) for c in rows)

        async def run(c: Conn) -> None:
            await c.executemany(_COUNT_ADD, values)
        await self._pool.run(run, transaction=True)

    async def counts(self, day: str) -> list[OutcomeCount]:
        rows = await self._pool.run(lambda c: c.fetch(
            f"SELECT {_COUNT_COLUMNS} FROM tlsrpt_counts WHERE day = $1", day))
        return [_count(r) for r in rows]

    async def days(self) -> list[str]:
        rows = await self._pool.run(lambda c: c.fetch(
            "SELECT DISTINCT day FROM tlsrpt_counts ORDER BY day"))
        return [str(r[0]) for r in rows]

    async def claim_report(self, day: str, domain: str, node: str, now: float) -> bool:
        won = await self._pool.run(lambda c: c.fetchval(_CLAIM, day, domain, node, now))
        return won is not None

    async def mark_report(self, day: str, domain: str, outcome: str) -> None:
        await self._pool.run(lambda c: c.execute(
            "UPDATE tlsrpt_sent SET outcome = $3 WHERE day = $1 AND policy_domain = $2",
            day, domain, outcome))

    async def release_report(self, day: str, domain: str) -> None:
        await self._pool.run(lambda c: c.execute(
            "DELETE FROM tlsrpt_sent WHERE day = $1 AND policy_domain = $2", day, domain))

    async def reports(self, day: str) -> dict[str, str]:
        rows = await self._pool.run(lambda c: c.fetch(
            "SELECT policy_domain, outcome FROM tlsrpt_sent WHERE day = $1", day))
        return {str(r[0]): str(r[1]) for r in rows}

    async def purge(self, before_day: str) -> int:
        async def run(c: Conn) -> int:
            await c.execute("DELETE FROM tlsrpt_sent WHERE day < $1", before_day)
            status = await c.execute("DELETE FROM tlsrpt_counts WHERE day < $1", before_day)
            return int(str(status).split()[-1])
        return await self._pool.run(run, transaction=True)

    def __repr__(self) -> str:
        return f"<PostgresTlsStore {self._pool.where}>"
