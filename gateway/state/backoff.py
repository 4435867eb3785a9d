"""Reconnection pacing for the shared state backends (PostgreSQL, Redis).

After a failure the backend is not asked again for a while — 0.25 s, doubling
up to 30 s — so that a dead server costs each RCPT nothing but its 451 (or,
failing open, nothing at all), and the first request after the pause is the
reconnection attempt. Real monotonic time: this paces network retries, it
schedules no mail.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    def __init__(self, first: float = 0.25, maximum: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._first = first
        self._maximum = maximum
        self._clock = clock
        self._retry_at = 0.0
        self.failures = 0  # in a row, since the last success

    def wait(self) -> float:
        """Seconds before the next try is due (≤ 0: try now)."""
        return self._retry_at - self._clock()

    def failed(self) -> float:
        """Count a failure; return the pause before the next try."""
        self.failures += 1
        pause = min(self._maximum, self._first * 2.0 ** min(self.failures - 1, 16))
        self._retry_at = self._clock() + pause
        return pause

    def succeeded(self) -> int:
        """Count a success; return how many failures it ends (0: none)."""
        ended, self.failures = self.failures, 0
        return ended

    def __repr__(self) -> str:
        return f"<Backoff failures={self.failures} wait={max(0.0, self.wait()):.2f}s>"
