"""Consent records: grants and withdrawals per (address, category); the latest wins.

Records are kept, never overwritten (the history is the proof of consent);
`current()` reads the newest one per address through the (address, category,
time) index.

Each store counts the changes made through it (`generation`: record() here, erasure
in gateway.state.retention), so that a cache of answers in this process — the
tracking listener's, gateway.tracking.consent_cache — can drop them at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gateway.core.sqlite import Row
from gateway.model import ConsentRecord
from gateway.state.audit import AUDIT_INSERT, audit_row
from gateway.state.db import StateDb

__all__ = ["ConsentStore", "SqliteConsentStore"]

_COLUMNS = "address, category, granted, time, method, source, purposes"
_INSERT = f"INSERT INTO consent ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


class ConsentStore(Protocol):
    generation: int  # changes made through this store in this process (module docstring)

    async def current(self, addresses: tuple[str, ...], category: str
                      ) -> dict[str, ConsentRecord]:
        """The latest record per address (addresses without any are absent)."""
    async def record(self, records: Iterable[ConsentRecord], actor: str, now: float) -> int: ...
    async def history(self, address: str) -> list[ConsentRecord]: ...
    async def page(self, after: int, limit: int) -> list[tuple[int, ConsentRecord]]:
        """(sequence number, record) in the order they were written, after `after`."""


class SqliteConsentStore:
    def __init__(self, db: StateDb) -> None:
        self._db = db
        self.generation = 0

    async def current(self, addresses: tuple[str, ...], category: str
                      ) -> dict[str, ConsentRecord]:
        out: dict[str, ConsentRecord] = {}
        for address in dict.fromkeys(addresses):
            row = await self._db.fetchone(
                f"SELECT {_COLUMNS} FROM consent WHERE address = ? AND category = ?"
                " ORDER BY time DESC, seq DESC LIMIT 1", (address, category), quick=True)
            if row is not None:
                out[address] = _record(row)
        return out

    async def record(self, records: Iterable[ConsentRecord], actor: str, now: float) -> int:
        rows = [(r.address, r.category, int(r.granted), r.time, r.method, r.source,
                 " ".join(r.purposes)) for r in records]
        audits = [audit_row(now, actor, "consent.grant" if r[2] else "consent.withdraw",
                            {"address": r[0], "category": r[1], "method": r[4]}) for r in rows]
        if len(rows) > 100:
            audits = [audit_row(now, actor, "consent.import", {"count": len(rows)})]
        self.generation += 1  # before: a cached answer must not outlive a failed write either
        await self._db.transaction([(_INSERT, rows), (AUDIT_INSERT, audits)])
        self.generation += 1
        return len(rows)

    async def history(self, address: str) -> list[ConsentRecord]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM consent WHERE address = ? ORDER BY time, seq", (address,))
        return [_record(r) for r in rows]

    async def page(self, after: int, limit: int) -> list[tuple[int, ConsentRecord]]:
        rows = await self._db.fetchall(
            f"SELECT seq, {_COLUMNS} FROM consent WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit))
        return [(int(r[0]), _record(r[1:])) for r in rows]


def _record(r: Row) -> ConsentRecord:
    return ConsentRecord(address=str(r[0]), category=str(r[1]), granted=bool(r[2]),
                         time=float(r[3]), method=str(r[4]), source=str(r[5] or ""),
                         purposes=tuple(str(r[6] or "").split()))
