"""The circuit breaker's state machine, driven by explicit times (no clock, no sleeping)."""

from __future__ import annotations

import re

from gateway.delivery.smarthosts import Breakers, BreakerState, CircuitBreaker
from gateway.model import BreakerSettings, Route, Smarthost

T0 = 1_700_000_000.0


def breaker(failures: int = 3, recovery: float = 300.0) -> CircuitBreaker:
    return CircuitBreaker("primary", BreakerSettings(failures, recovery))


def test_closed_until_n_consecutive_failures() -> None:
    b = breaker()
    assert b.record(False, T0) is BreakerState.CLOSED
    assert b.record(False, T0 + 1) is BreakerState.CLOSED
    assert b.allows(T0 + 1)
    assert b.record(False, T0 + 2) is BreakerState.OPEN
    assert b.failures == 3
    assert b.retry_at == T0 + 2 + 300


def test_a_success_resets_the_count() -> None:
    b = breaker()
    b.record(False, T0)
    b.record(False, T0)
    b.record(True, T0)
    b.record(False, T0)
    b.record(False, T0)
    assert b.state is BreakerState.CLOSED
    assert b.failures == 2


def test_open_skips_until_recovery_then_lets_exactly_one_probe_through() -> None:
    b = breaker(failures=1, recovery=300)
    b.record(False, T0)
    assert not b.allows(T0)
    assert not b.allows(T0 + 299.9)
    assert b.allows(T0 + 300)
    assert b.state is BreakerState.HALF_OPEN
    # The probe is under way: nobody else gets through.
    assert not b.allows(T0 + 300)
    assert not b.allows(T0 + 400)


def test_probe_success_closes() -> None:
    b = breaker(failures=1)
    b.record(False, T0)
    assert b.allows(T0 + 300)
    assert b.record(True, T0 + 301) is BreakerState.CLOSED
    assert b.failures == 0
    assert b.allows(T0 + 301) and b.allows(T0 + 301)


def test_probe_failure_reopens_for_a_new_window() -> None:
    b = breaker(failures=3)
    for _ in range(3):
        b.record(False, T0)
    assert b.allows(T0 + 300)
    # One failed probe is enough, whatever the threshold.
    assert b.record(False, T0 + 310) is BreakerState.OPEN
    assert not b.allows(T0 + 600)
    assert b.allows(T0 + 610)


def test_a_probe_that_never_reports_is_presumed_lost_after_a_window() -> None:
    b = breaker(failures=1)
    b.record(False, T0)
    assert b.allows(T0 + 300)
    assert not b.allows(T0 + 599)
    assert b.allows(T0 + 600)  # a second probe, since the first one was cancelled or lost


def test_clock_stepping_back_keeps_it_open() -> None:
    b = breaker(failures=1)
    b.record(False, T0)
    assert not b.allows(T0 - 3600)


def test_repr_shows_state_failures_and_retry_time() -> None:
    b = breaker()
    assert repr(b) == "<Smarthost primary CLOSED failures=0>"
    for _ in range(3):
        b.record(False, T0)
    assert re.fullmatch(r"<Smarthost primary OPEN failures=3 retry_at=\d\d:\d\d:\d\d>", repr(b))


def test_breakers_are_per_route_and_smarthost_and_survive_new_settings() -> None:
    primary = Smarthost("primary", "127.0.0.1")
    route = Route("r", "smarthost", smarthosts=(primary,))
    breakers = Breakers()
    b = breakers.get(route, primary)
    b.record(False, T0)
    assert breakers.get(route, primary) is b
    other = Route("other", "smarthost", smarthosts=(primary,))
    assert breakers.get(other, primary) is not b
    # A reload with a new threshold keeps the count and applies the threshold.
    reloaded = Route("r", "smarthost", smarthosts=(primary,), breaker=BreakerSettings(2, 60))
    assert breakers.get(reloaded, primary) is b
    assert b.record(False, T0) is BreakerState.OPEN
    assert b.retry_at == T0 + 60
    assert len(breakers.all()) == 2


def test_adopting_another_nodes_transitions() -> None:
    b = breaker(failures=3)
    b.record(False, T0)
    b.adopt(BreakerState.OPEN, T0 + 300)  # another node opened it
    assert not b.allows(T0 + 299)
    assert b.allows(T0 + 300) and b.state is BreakerState.HALF_OPEN
    b.adopt(BreakerState.HALF_OPEN, T0 + 600)  # ... but that node took the probe
    assert not b.allows(T0 + 599)
    b.adopt(BreakerState.CLOSED, 0.0)  # its probe closed it
    assert b.allows(T0 + 300) and (b.failures, b.retry_at) == (0, 0.0)
    # A failed probe of this node's own after adopting HALF_OPEN reopens it at once.
    b.adopt(BreakerState.HALF_OPEN, T0 + 900)
    assert b.record(False, T0 + 700) is BreakerState.OPEN
    assert b.retry_at == T0 + 1000
