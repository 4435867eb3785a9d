"""Dynamic suppression entries (CLI, unsubscribes, later hard bounces and complaints).

The table's primary key is (target, scope), so a lookup — the recipient's
address and its "@domain" — is one indexed query whatever the table's size.
Targets are stored normalized (gateway.policy.addresses); callers normalize.
Expired entries are ignored by lookups and removed by `purge_expired()`.
An erased address's entries are kept under its keyed hash
(gateway.state.address_hash): a lookup asks for the hash of the address too,
in the same query.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol, TextIO

from gateway.core.sqlite import Row
from gateway.model import Suppression, SuppressionReason
from gateway.state.address_hash import AddressHasher
from gateway.state.audit import AUDIT_INSERT, audit_row
from gateway.state.db import StateDb

__all__ = ["SUPPRESSION_FIELDS", "SqliteSuppressionStore", "SuppressionStore", "with_tokens",
           "write_suppression_csv"]

# The CSV of `smtp-gateway suppress export|import` and the console's export.
SUPPRESSION_FIELDS = ("target", "scope", "reason", "created", "added_by", "expires", "note")

_COLUMNS = "target, scope, reason, created, added_by, expires, note"
_UPSERT = (f"INSERT OR REPLACE INTO suppressions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)")


class SuppressionStore(Protocol):
    async def lookup(self, targets: tuple[str, ...], now: float) -> list[Suppression]:
        """Unexpired entries for any of `targets` (an address and "@its-domain")."""
    async def add(self, entries: Iterable[Suppression], actor: str, now: float) -> int: ...
    async def remove(self, target: str, scope: str | None, actor: str, now: float) -> int: ...
    async def all(self) -> list[Suppression]: ...
    async def page(self, after: tuple[str, str], limit: int) -> list[Suppression]:
        """Entries ordered by (target, scope), those after `after`, at most `limit`."""
    async def count(self) -> int: ...
    async def purge_expired(self, now: float) -> int: ...


def with_tokens(hasher: AddressHasher | None, targets: tuple[str, ...]) -> tuple[str, ...]:
    """`targets` and the keyed hashes of its addresses (both backends look them up)."""
    if hasher is None:
        return targets
    tokens = [hasher.token_if_keyed(t) for t in targets if not t.startswith("@")]
    return targets + tuple(t for t in tokens if t is not None)


class SqliteSuppressionStore:
    def __init__(self, db: StateDb, hasher: AddressHasher | None = None) -> None:
        self._db = db
        self._hasher = hasher

    async def lookup(self, targets: tuple[str, ...], now: float) -> list[Suppression]:
        targets = with_tokens(self._hasher, targets)
        marks = ", ".join("?" * len(targets))
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM suppressions WHERE target IN ({marks})"
            " AND (expires IS NULL OR expires > ?)", (*targets, now), quick=True)
        return [_suppression(r) for r in rows]

    async def add(self, entries: Iterable[Suppression], actor: str, now: float) -> int:
        rows = [_row(s) for s in entries]
        audits = [audit_row(now, actor, "suppress.add", {"target": r[0], "scope": r[1],
                                                         "reason": r[2]}) for r in rows]
        if len(rows) > 100:  # an import: one audit row for the batch, not one per entry
            audits = [audit_row(now, actor, "suppress.import", {"count": len(rows)})]
        await self._db.transaction([(_UPSERT, rows), (AUDIT_INSERT, audits)])
        return len(rows)

    async def remove(self, target: str, scope: str | None, actor: str, now: float) -> int:
        # An erased address's entries (under its hash) go too: the person asked for mail.
        forms = with_tokens(self._hasher, (target,))
        marks = ", ".join("?" * len(forms))
        where, params = (f"target IN ({marks})", forms) if scope is None else (
            f"target IN ({marks}) AND scope = ?", (*forms, scope))
        def run(c: sqlite3.Connection) -> int:
            count = c.execute(f"DELETE FROM suppressions WHERE {where}", params).rowcount
            c.execute(AUDIT_INSERT, audit_row(now, actor, "suppress.remove", {
                "target": target, "scope": scope or "*", "removed": count}))
            return int(count)
        return await self._db.call(run, write=True)

    async def all(self) -> list[Suppression]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM suppressions ORDER BY target")
        return [_suppression(r) for r in rows]

    async def page(self, after: tuple[str, str], limit: int) -> list[Suppression]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM suppressions WHERE (target, scope) > (?, ?)"
            " ORDER BY target, scope LIMIT ?", (*after, limit))
        return [_suppression(r) for r in rows]

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT count(*) FROM suppressions")
        return int(row[0]) if row else 0

    async def purge_expired(self, now: float) -> int:
        return await self._db.execute(
            "DELETE FROM suppressions WHERE expires IS NOT NULL AND expires <= ?", (now,))


def _row(s: Suppression) -> Row:
    return (s.target, s.scope, s.reason.value, s.created, s.added_by, s.expires, s.note)


def _suppression(r: Row) -> Suppression:
    return Suppression(target=str(r[0]), scope=str(r[1]), reason=SuppressionReason(str(r[2])),
                       created=float(r[3]), added_by=str(r[4]),
                       expires=None if r[5] is None else float(r[5]), note=str(r[6] or ""))


def write_suppression_csv(entries: Iterable[Suppression], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUPPRESSION_FIELDS)
    for e in entries:
        writer.writerow([e.target, e.scope, e.reason.value, _iso(e.created), e.added_by,
                         _iso(e.expires), e.note])


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()
