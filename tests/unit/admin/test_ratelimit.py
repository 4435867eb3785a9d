from __future__ import annotations

from gateway.admin.ratelimit import MAX_CLIENTS, IpRateLimiter
from gateway.clock import ManualClock


def test_burst_then_one_per_interval_per_client() -> None:
    clock = ManualClock()
    limiter = IpRateLimiter(6.0, 3, clock)
    assert [limiter.take("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("10.0.0.1") == 6.0
    assert limiter.take("10.0.0.2") == 0.0  # another client has its own budget
    clock.advance(6.0)
    assert limiter.take("10.0.0.1") == 0.0
    assert limiter.take("10.0.0.1") == 6.0


def test_table_stays_bounded() -> None:
    clock = ManualClock()
    limiter = IpRateLimiter(60.0, 1, clock)
    for i in range(MAX_CLIENTS + 10):
        limiter.take(f"c{i}")
    assert len(limiter._tat) <= MAX_CLIENTS
