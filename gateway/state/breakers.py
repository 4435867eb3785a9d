"""Circuit-breaker state shared by the nodes of a cluster (PostgreSQL only).

One row per (route, smarthost): the last transition any node made — state,
until when (`retry_at`: OPEN, when a probe may go; HALF_OPEN, when the probe
is presumed lost), which node — and a generation that every write bumps, so a
node applies only what is newer than what it has seen or written itself. The
breaker logic stays in gateway.delivery.smarthosts; the layer that publishes
and reads transitions is gateway.delivery.breaker_sharing.

The embedded (SQLite) backend has no breaker store: one node has one delivery
process, so there is nothing to share, and a restart forgets at most the
`failures` attempts it takes to open a breaker again.

The half-open probe is claimed with a conditional upsert: of two nodes that
ask at once, the row lock makes the second see the first one's HALF_OPEN and
its new deadline, and its WHERE fails — one probe for the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # delivery imports this module; asyncpg only where PostgreSQL is used
    from gateway.state.postgres import PostgresPool

__all__ = ["BreakerRow", "BreakerStore", "Claim", "PostgresBreakerStore"]


@dataclass(frozen=True)
class BreakerRow:
    route: str
    smarthost: str
    state: str  # a gateway.delivery.smarthosts.BreakerState value
    retry_at: float
    generation: int
    node: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.route, self.smarthost)


@dataclass(frozen=True)
class Claim:
    """A probe claim's answer: taken, or the row as the node that has it left it."""

    taken: bool
    row: BreakerRow


class BreakerStore(Protocol):
    async def all(self) -> list[BreakerRow]:
        """Every smarthost's last transition."""

    async def publish(self, route: str, smarthost: str, state: str, retry_at: float,
                      node: str, now: float) -> int:
        """Record `node`'s transition; return the row's new generation."""

    async def claim_probe(self, route: str, smarthost: str, node: str, now: float,
                          until: float) -> Claim:
        """Take the half-open probe if no other node has it (the breaker is not CLOSED
        and its `retry_at` has passed); `until`: when it is presumed lost."""


_COLUMNS = "route, smarthost, state, retry_at, generation, node"
_UPSERT = (
    "INSERT INTO breakers (route, smarthost, state, retry_at, generation, node, changed)"
    " VALUES ($1, $2, $3, $4, 1, $5, $6)"
    " ON CONFLICT (route, smarthost) DO UPDATE SET state = EXCLUDED.state,"
    " retry_at = EXCLUDED.retry_at, generation = breakers.generation + 1,"
    " node = EXCLUDED.node, changed = EXCLUDED.changed")
_PUBLISH = _UPSERT + " RETURNING generation"
# No row yet (this node's OPEN was never published): the claim inserts it.
_CLAIM = (_UPSERT + " WHERE breakers.state <> 'CLOSED' AND breakers.retry_at <= $6"
          f" RETURNING {_COLUMNS}")
_ONE = f"SELECT {_COLUMNS} FROM breakers WHERE route = $1 AND smarthost = $2"


class PostgresBreakerStore:
    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def all(self) -> list[BreakerRow]:
        rows = await self._pool.run(lambda c: c.fetch(f"SELECT {_COLUMNS} FROM breakers"))
        return [_row(r) for r in rows]

    async def publish(self, route: str, smarthost: str, state: str, retry_at: float,
                      node: str, now: float) -> int:
        return int(await self._pool.run(lambda c: c.fetchval(
            _PUBLISH, route, smarthost, state, retry_at, node, now)))

    async def claim_probe(self, route: str, smarthost: str, node: str, now: float,
                          until: float) -> Claim:
        taken = await self._pool.run(lambda c: c.fetchrow(
            _CLAIM, route, smarthost, "HALF_OPEN", until, node, now))
        if taken is not None:
            return Claim(True, _row(taken))
        # A statement of its own, so it sees the winner's committed row (READ COMMITTED).
        current = await self._pool.run(lambda c: c.fetchrow(_ONE, route, smarthost))
        if current is None:  # deleted in between (an operator reset): nobody has it
            return Claim(True, BreakerRow(route, smarthost, "HALF_OPEN", until, 0, node))
        return Claim(False, _row(current))


def _row(r: Any) -> BreakerRow:
    return BreakerRow(r["route"], r["smarthost"], r["state"], float(r["retry_at"]),
                      int(r["generation"]), r["node"])
