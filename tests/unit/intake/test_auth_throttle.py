"""AuthThrottle: counting, delay, lockout, expiry, and bounded memory."""

from __future__ import annotations

from gateway.intake.auth import AuthThrottle, ThrottleSettings
from gateway.intake.replies import printable_line


def make(**changes: float) -> tuple[AuthThrottle, list[float]]:
    now = [0.0]
    fields: dict[str, float] = dict(per_address=4, per_user=2, window=60, lockout=100,
                                    delay=0.5, max_delay=1.2, max_entries=50)
    fields.update(changes)
    settings = ThrottleSettings(**fields)  # type: ignore[arg-type]
    return AuthThrottle(settings, now=lambda: now[0]), now


def test_delay_grows_and_is_capped() -> None:
    throttle, _ = make(per_user=100, per_address=100)
    assert [throttle.failed("192.0.2.1", "u") for _ in range(4)] == [0.5, 1.0, 1.2, 1.2]


def test_user_lockout_then_expiry() -> None:
    throttle, now = make()
    throttle.failed("192.0.2.1", "app")
    assert not throttle.locked("192.0.2.9", "app")
    throttle.failed("192.0.2.2", "app")
    assert throttle.locked("192.0.2.9", "app")  # per user, from any address
    assert not throttle.locked("192.0.2.9", "other")
    now[0] += 101
    assert not throttle.locked("192.0.2.9", "app")


def test_failures_outside_the_window_do_not_count() -> None:
    throttle, now = make()
    throttle.failed("192.0.2.1", "app")
    now[0] += 61
    throttle.failed("192.0.2.1", "app")
    assert not throttle.locked("192.0.2.1", "app")


def test_success_clears_the_user_but_not_the_address() -> None:
    throttle, _ = make()
    for name in ("a", "b", "c"):
        throttle.failed("192.0.2.1", name)
    throttle.failed("192.0.2.1", "app")
    throttle.succeeded("app")
    assert throttle.locked("192.0.2.1")  # 4 failures from the address
    assert not throttle.locked("192.0.2.2", "app")


def test_memory_is_bounded_under_rotating_names() -> None:
    throttle, _ = make(per_user=1000, per_address=1000)
    for n in range(5000):
        throttle.failed(f"10.0.{n // 250}.{n % 250}", f"user{n}")
    assert "addresses=50 users=50" in repr(throttle)


def test_reply_lines_are_printable_ascii() -> None:
    assert printable_line('500 5.5.2 Error: command "A\r250\x00\xff" not recognized') == \
        '500 5.5.2 Error: command "A?250??" not recognized'
    assert printable_line("250 2.0.0 OK") == "250 2.0.0 OK"
