from __future__ import annotations

import pytest

from gateway.model import RetrySchedule
from gateway.scheduler.retry import next_attempt_at

T0 = 1_700_000_000.0
DEFAULT = RetrySchedule()
SHORT = RetrySchedule(delays=(1.0, 5.0, 15.0), repeat=None)


def test_default_schedule_backs_off_like_an_mta() -> None:
    now = T0
    waits = []
    for attempt in range(1, 9):
        when = next_attempt_at(attempt, DEFAULT, T0, now)
        assert when is not None
        waits.append(when - now)
        now = when
    assert waits == [60, 300, 900, 1800, 3600, 3600, 3600, 3600]


def test_default_schedule_expires_at_five_days() -> None:
    almost = T0 + 5 * 86400 - 10
    last = next_attempt_at(40, DEFAULT, T0, almost)
    assert last == T0 + 5 * 86400  # the final try is pulled in to max_age
    assert next_attempt_at(41, DEFAULT, T0, T0 + 5 * 86400) is None


def test_short_schedule_three_retries_then_give_up() -> None:
    assert next_attempt_at(1, SHORT, T0, T0) == T0 + 1
    assert next_attempt_at(2, SHORT, T0, T0 + 1) == T0 + 1 + 5
    assert next_attempt_at(3, SHORT, T0, T0 + 6) == T0 + 6 + 15
    assert next_attempt_at(4, SHORT, T0, T0 + 21) is None


@pytest.mark.parametrize("attempts, expected", [(1, T0 + 60), (2, None), (3, None)])
def test_max_attempts(attempts: int, expected: float | None) -> None:
    schedule = RetrySchedule(max_attempts=2)
    assert next_attempt_at(attempts, schedule, T0, T0) == expected
