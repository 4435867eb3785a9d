"""Circuit breakers shared by the nodes of a cluster: a thin layer over the pure
breakers of gateway.delivery.smarthosts that publishes this node's transitions
and applies the other nodes' (store: gateway.state.breakers, on PostgreSQL).

- A transition this node's breaker makes (CLOSED → OPEN, a probe's result,
  a late success that closes it) is written at once, with this node's name.
- The other nodes' transitions are read at this node's next attempt once
  `refresh` seconds of the injected clock have passed since the last read
  (one query for every breaker, and none while nothing is delivered): when
  node A opens a smarthost's breaker, node B stops sending there within
  `refresh` seconds.
- The half-open probe: when the recovery time has passed, the node whose
  breaker lets a probe through claims it with a conditional upsert. The
  others adopt its HALF_OPEN and skip the host until the probe's result (or
  its deadline: a probe presumed lost), so one node probes for the cluster.
- PostgreSQL away: each node decides with its own breakers — delivery never
  stops for the database; the pool's backoff makes each call fail at once
  after the first — logged once per outage. Transitions made meanwhile are
  not replayed; the next one is published.
- Without a store (the embedded backend): the node's own breakers, no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from gateway.delivery.smarthosts import Breakers, BreakerState, CircuitBreaker
from gateway.errors import StateUnavailable
from gateway.model import Route, Smarthost

if TYPE_CHECKING:
    from gateway.state.breakers import BreakerRow, BreakerStore

__all__ = ["REFRESH", "SharedBreakers"]

log = logging.getLogger(__name__)

REFRESH = 1.0  # seconds between reads of the other nodes' transitions
T = TypeVar("T")
Key = tuple[str, str]  # (route, smarthost)


class SharedBreakers:
    """This node's breakers (`local`), kept in step with the cluster's through `store`."""

    def __init__(self, store: BreakerStore | None = None, node: str = "", *,
                 refresh: float = REFRESH) -> None:
        self.local = Breakers()
        self.store = store
        self.node = node
        self.refresh = refresh
        self._read_at: float | None = None
        self._reading = False
        self._rows: dict[Key, BreakerRow] = {}  # the last read
        self._seen: dict[Key, int] = {}  # newest generation applied or written here
        self._away = False  # the store failed: node-local until it answers again

    def get(self, route: Route, smarthost: Smarthost) -> CircuitBreaker:
        return self.local.get(route, smarthost)

    def all(self) -> list[CircuitBreaker]:
        return self.local.all()

    async def allows(self, breaker: CircuitBreaker, now: float) -> bool:
        """May a delivery use the smarthost now? (claims the cluster's probe if so)"""
        if self.store is None:
            return breaker.allows(now)
        await self._read_if_due(self.store, now)
        self._apply(breaker)
        before = breaker.state
        if not breaker.allows(now):
            return False
        if before is BreakerState.CLOSED:
            return True
        return await self._claim(self.store, breaker, now)

    async def record(self, breaker: CircuitBreaker, success: bool, now: float) -> BreakerState:
        before = breaker.state
        state = breaker.record(success, now)
        if state is not before and self.store is not None:
            generation = await self._shared(self.store.publish(
                breaker.route, breaker.name, state.value, breaker.retry_at, self.node, now))
            if generation is not None:
                self._seen[(breaker.route, breaker.name)] = generation
        return state

    async def _read_if_due(self, store: BreakerStore, now: float) -> None:
        # Concurrent deliveries do not wait for a read under way: they go on with what
        # this node knows, at most `refresh` seconds old.
        if self._reading or (self._read_at is not None
                             and abs(now - self._read_at) < self.refresh):
            return
        self._reading, self._read_at = True, now
        try:
            rows = await self._shared(store.all())
        finally:
            self._reading = False
        if rows is not None:
            self._rows = {row.key: row for row in rows}
            for breaker in self.local.all():
                self._apply(breaker)

    async def _claim(self, store: BreakerStore, breaker: CircuitBreaker, now: float) -> bool:
        """The local breaker just let a probe through: is it this node's to make?"""
        claim = await self._shared(store.claim_probe(
            breaker.route, breaker.name, self.node, now, breaker.retry_at))
        if claim is None:
            return True  # node-local: this node's own probe
        row = claim.row
        if claim.taken:
            self._seen[row.key] = row.generation
            return True
        self._apply_row(breaker, row)
        # CLOSED: another node's probe closed it — or, if this node had seen that row
        # already, its own OPEN was never published and the probe is its own.
        # Otherwise another node is probing (or reopened it): skip the host.
        return row.state == BreakerState.CLOSED.value

    def _apply(self, breaker: CircuitBreaker) -> None:
        row = self._rows.get((breaker.route, breaker.name))
        if row is not None:
            self._apply_row(breaker, row)

    def _apply_row(self, breaker: CircuitBreaker, row: BreakerRow) -> None:
        """Adopt `row` if it is newer than anything this node applied or wrote."""
        if row.generation <= self._seen.get(row.key, 0):
            return
        self._seen[row.key] = row.generation
        state = BreakerState(row.state)
        if state is not breaker.state:
            log.warning("smarthost %s of route %s: breaker %s (from node %s)",
                        breaker.name, breaker.route, state, row.node)
        breaker.adopt(state, row.retry_at)

    async def _shared(self, call: Awaitable[T]) -> T | None:
        """`call`'s result, or None (node-local) if the store failed; logged once."""
        try:
            result = await call
        except Exception as exc:  # sharing is advice: nothing here may stop a delivery
            if not self._away:
                self._away = True
                detail = exc if isinstance(exc, StateUnavailable) else type(exc).__name__
                log.error("circuit breakers: the shared state cannot be used (%s); each "
                          "breaker is this node's own until it answers", detail,
                          exc_info=not isinstance(exc, StateUnavailable))
            return None
        if self._away:
            self._away = False
            log.warning("circuit breakers: shared with the other nodes again")
        return result

    def __repr__(self) -> str:
        where = "node-local" if self.store is None else (
            f"shared as {self.node!r}" + (", store away" if self._away else ""))
        return f"<SharedBreakers {len(self.local.all())} {where}>"
