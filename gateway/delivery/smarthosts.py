"""Smarthosts in the order given, each guarded by a circuit breaker.

Postfix counterpart: `relayhost` with several hosts and the "dead host"
bookkeeping of qmgr (`qmgr_queue.c` throttling a destination after
failures); KumoMTA's ready-queue suspension. The breaker is pure and
synchronous: it is told the time and the result, and decides; the delivery
loop does the I/O (decide, then act). Nodes of a cluster share their breakers'
transitions through gateway.delivery.breaker_sharing, which tells a breaker
what another node decided (`adopt`).

    CLOSED ──N consecutive failures──▶ OPEN ──recovery elapsed──▶ HALF_OPEN
      ▲                                 ▲                            │
      └──────────── probe succeeds ─────┼──────── probe fails ───────┘
"""

from __future__ import annotations

import time
from enum import StrEnum

from gateway.model import BreakerSettings, Route, Smarthost

__all__ = ["BreakerState", "Breakers", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "CLOSED"  # in use
    OPEN = "OPEN"  # skipped until retry_at
    HALF_OPEN = "HALF_OPEN"  # one probe attempt is under way


class CircuitBreaker:
    """Counts one smarthost's consecutive failures; see the module docstring.

    `allows(now)` is true when a delivery may use the smarthost. While OPEN it
    is false until `retry_at`; the first call after that turns the breaker
    HALF_OPEN and lets exactly that one attempt through, and later calls stay
    false until the probe's result is recorded (or until one more recovery
    period passes without a result, in case the probe was cancelled).
    """

    def __init__(self, name: str, settings: BreakerSettings, route: str = "") -> None:
        self.name = name
        self.route = route
        self.settings = settings
        self.state = BreakerState.CLOSED
        self.failures = 0
        # OPEN: when to let a probe through; HALF_OPEN: when the probe is presumed lost.
        self.retry_at = 0.0

    def allows(self, now: float) -> bool:
        if self.state is BreakerState.CLOSED:
            return True
        if now < self.retry_at:
            return False
        self.state = BreakerState.HALF_OPEN
        self.retry_at = now + self.settings.recovery
        return True

    def record(self, success: bool, now: float) -> BreakerState:
        if success:
            self.state = BreakerState.CLOSED
            self.failures = 0
            return self.state
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.settings.failures:
            self.state = BreakerState.OPEN
            self.retry_at = now + self.settings.recovery
        return self.state

    def adopt(self, state: BreakerState, retry_at: float) -> None:
        """Take a transition another node made (gateway.delivery.breaker_sharing):
        OPEN until `retry_at`, HALF_OPEN (its probe is under way) until `retry_at`,
        or CLOSED."""
        self.state = state
        self.retry_at = retry_at if state is not BreakerState.CLOSED else 0.0
        if state is BreakerState.CLOSED:
            self.failures = 0

    def __repr__(self) -> str:
        text = f"<Smarthost {self.name} {self.state} failures={self.failures}"
        if self.state is not BreakerState.CLOSED:
            text += " retry_at=" + time.strftime("%H:%M:%S", time.localtime(self.retry_at))
        return text + ">"


class Breakers:
    """The breaker of each (route, smarthost name), made on first use and kept across reloads.

    Delivery learns routes from the jobs it is given, so a breaker appears
    with the first delivery through its smarthost; a reload that changes a
    route's thresholds applies them to the existing state.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], CircuitBreaker] = {}

    def get(self, route: Route, smarthost: Smarthost) -> CircuitBreaker:
        key = (route.name, smarthost.name)
        breaker = self._by_key.get(key)
        if breaker is None:
            breaker = self._by_key[key] = CircuitBreaker(smarthost.name, route.breaker, route.name)
        elif breaker.settings != route.breaker:
            breaker.settings = route.breaker  # a reload changed the thresholds: keep the state
        return breaker

    def all(self) -> list[CircuitBreaker]:
        return list(self._by_key.values())
