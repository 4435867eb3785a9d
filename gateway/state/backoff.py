"""Reconnection pacing for the shared state backends (PostgreSQL, Redis).

After a failure the backend is not asked again for a while — 0.25 s, doubling
up to 30 s — so that a dead server costs each RCPT nothing but its 451 (or,
failing open, nothing at all), and the first request after the pause is the
reconnection attempt. Real monotonic time: this paces network retries, it
schedules no mail.

It also remembers the last failure, for readiness (`health()`: up or down, and
how long ago the last error was — a flapping backend shows up even while up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BackendHealth", "Backoff"]


@dataclass(frozen=True)
class BackendHealth:
    up: bool
    # The last failure's exception type (never its text: it may name hosts or users),
    # and how many seconds ago it was; None: none since start.
    last_error: str | None = None
    last_error_age: float | None = None


class Backoff:
    def __init__(self, first: float = 0.25, maximum: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._first = first
        self._maximum = maximum
        self._clock = clock
        self._retry_at = 0.0
        self.failures = 0  # in a row, since the last success
        self._last_error: tuple[str, float] | None = None  # (exception type, when)

    def wait(self) -> float:
        """Seconds before the next try is due (≤ 0: try now)."""
        return self._retry_at - self._clock()

    def failed(self, exc: BaseException | None = None) -> float:
        """Count a failure; return the pause before the next try."""
        self._last_error = (type(exc).__name__ if exc is not None else "error", self._clock())
        self.failures += 1
        pause = min(self._maximum, self._first * 2.0 ** min(self.failures - 1, 16))
        self._retry_at = self._clock() + pause
        return pause

    def succeeded(self) -> int:
        """Count a success; return how many failures it ends (0: none)."""
        ended, self.failures = self.failures, 0
        return ended

    def health(self) -> BackendHealth:
        if self._last_error is None:
            return BackendHealth(self.failures == 0)
        name, when = self._last_error
        return BackendHealth(self.failures == 0, name, max(0.0, self._clock() - when))

    def __repr__(self) -> str:
        return f"<Backoff failures={self.failures} wait={max(0.0, self.wait()):.2f}s>"
