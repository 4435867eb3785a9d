"""When to try again, and when to give up: pure functions of the schedule and time.

Postfix counterpart: qmgr's exponential backoff (minimal/maximal_backoff_time)
and maximal_queue_lifetime. Ours is an explicit list of delays so that both an
MTA-like schedule (1m, 5m, 15m, 30m, 1h, then hourly for 5 days) and an app's
"1 s, 5 s, 15 s, then give up" are plain configuration.
"""

from __future__ import annotations

from gateway.model import RetrySchedule

__all__ = ["next_attempt_at"]


def next_attempt_at(
    attempts: int, schedule: RetrySchedule, queued_at: float, now: float
) -> float | None:
    """The time of the next attempt after `attempts` failed ones, or None to expire.

    A message expires once it has had `max_attempts` attempts, when the listed
    delays are used up and there is no `repeat`, or once it is `max_age` old.
    The last retry is pulled in to the moment the message reaches max_age, so
    an hourly schedule still makes its final attempt at 5 days, not 4d23h.
    """
    if schedule.max_attempts is not None and attempts >= schedule.max_attempts:
        return None
    expires_at = queued_at + schedule.max_age
    if now >= expires_at:
        return None
    if attempts <= len(schedule.delays):
        delay = schedule.delays[attempts - 1]
    elif schedule.repeat is not None:
        delay = schedule.repeat
    else:
        return None
    return min(now + delay, expires_at)
