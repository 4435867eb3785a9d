"""The audit log: who changed policy state, when, and what (suppressions, consent).

Each change and its audit row are written in one transaction (see the stores),
so there is never a change without its record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from gateway.core.sqlite import Row
from gateway.state.db import StateDb

__all__ = ["AUDIT_INSERT", "AuditEntry", "AuditLog", "SqliteAuditLog",
           "audit_row"]

AUDIT_INSERT = "INSERT INTO audit (time, actor, action, detail) VALUES (?, ?, ?, ?)"


@dataclass(frozen=True)
class AuditEntry:
    time: float
    actor: str  # "cli:alice", "unsubscribe", "bounces", ...
    action: str  # "suppress.add", "consent.grant", ...
    detail: str  # JSON of what changed


def audit_row(time: float, actor: str, action: str, detail: dict[str, object]) -> Row:
    return (time, actor, action, json.dumps(detail, sort_keys=True, ensure_ascii=False))


class AuditLog(Protocol):
    async def entries(self, limit: int = 100) -> list[AuditEntry]: ...
    async def record(self, actor: str, action: str, detail: dict[str, object],
                     now: float) -> None:
        """An audit row for a change made elsewhere (the queue: admin API)."""


class SqliteAuditLog:
    def __init__(self, db: StateDb) -> None:
        self._db = db

    async def entries(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self._db.fetchall(
            "SELECT time, actor, action, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,))
        return [AuditEntry(float(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def record(self, actor: str, action: str, detail: dict[str, object],
                     now: float) -> None:
        await self._db.transaction([(AUDIT_INSERT, [audit_row(now, actor, action, detail)])])
