"""Per-client-IP rate limit for the public unsubscribe endpoint (GCRA, in memory).

One process serves the admin listener, so memory is the right place: nothing
to share, nothing worth keeping across a restart. The table is bounded: past
MAX_CLIENTS entries the ones that are back to a full burst are forgotten, and
if every entry is still limited, the oldest are.
"""

from __future__ import annotations

from gateway.clock import Clock

__all__ = ["MAX_CLIENTS", "IpRateLimiter"]

MAX_CLIENTS = 10_000


class IpRateLimiter:
    def __init__(self, interval: float, burst: int, clock: Clock) -> None:
        self.interval = interval  # seconds per request, sustained
        self.burst = burst
        self._clock = clock
        self._tat: dict[str, float] = {}  # theoretical arrival time per client

    def take(self, client: str) -> float:
        """0.0 if the request may go on (and counts), else seconds to wait."""
        now = self._clock.now()
        tat = max(self._tat.get(client, now), now)
        allowed_at = tat - self.interval * (self.burst - 1)
        if allowed_at > now:
            return allowed_at - now
        self._tat[client] = tat + self.interval
        if len(self._tat) > MAX_CLIENTS:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        self._tat = {k: v for k, v in self._tat.items() if v > now}
        if len(self._tat) > MAX_CLIENTS:
            keep = sorted(self._tat.items(), key=lambda kv: kv[1])[-MAX_CLIENTS // 2:]
            self._tat = dict(keep)

    def __repr__(self) -> str:
        return f"<IpRateLimiter 1/{self.interval:g}s burst={self.burst} clients={len(self._tat)}>"
