"""Rate counters (GCRA) for a cluster, in Redis: "20 a minute to one guest" holds for
all nodes together (selected by `rate_limits: redis://…`).

One Redis string per limit key holds its theoretical arrival time (TAT), with
an expiry at the TAT: an expired key is a full bucket, so Redis forgets idle
keys by itself. A Lua script takes the tokens of one RCPT — every limit key
it has — in one round trip, atomically (Redis runs a script alone), so two
nodes counting the same key never both take the last token.

Time is the caller's `now` (the node's clock, injectable in tests), not the
Redis server's: nodes are expected to run NTP, and a node whose clock is off
by d seconds counts as if its requests came d seconds early or late.

Redis unavailable (refused, timeout, dropped): with `fail_open`, the request
passes unlimited and the event is counted (`failed_open`); without it,
StateUnavailable, and the policy stage answers 451 4.3.0. After a failure
Redis is not asked again for a while (gateway.state.backoff).

Single Redis (or a primary with replicas), not Redis Cluster: the keys of one
script call may hash to different cluster slots.

Security: keys contain recipient addresses; they are bound script arguments,
never script text. The URL may carry a password: it stays in a Secret.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StateUnavailable
from gateway.model import Secret
from gateway.state.backoff import BackendHealth, Backoff

__all__ = ["GCRA_SCRIPT", "RedisRateCounters", "redact_url"]

log = logging.getLogger(__name__)

# KEYS: the limit keys. ARGV: now, then per key: interval, burst, mode (1 = reserve:
# take the token whatever the wait). Returns per key: allowed (0/1), tat (a string,
# since Lua numbers returned to Redis are truncated to integers).
GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
    local interval = tonumber(ARGV[3 * i - 1])
    local burst = tonumber(ARGV[3 * i])
    local reserve = ARGV[3 * i + 1] == '1'
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local new = tat + interval
    local allowed = reserve or (new - now <= interval * burst)
    if allowed then
        tat = new
        local ttl = math.ceil((new - now) * 1000) + 1000
        redis.call('SET', key, string.format('%.6f', new), 'PX', ttl)
    end
    out[#out + 1] = allowed and 1 or 0
    out[#out + 1] = string.format('%.6f', tat)
end
return out
"""
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def redact_url(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url.split("?")[0]
    scheme = head.split("://")[0]
    return f"{scheme}://***@{tail.split('?')[0]}"


class RedisRateCounters:
    def __init__(self, url: Secret, *, prefix: str = "smtp-gateway:rate:",
                 fail_open: bool = False, timeout: float = 1.0) -> None:
        self.where = redact_url(url.value)
        self._client: Any = aioredis.from_url(url.value, socket_timeout=timeout,
                                              socket_connect_timeout=timeout,
                                              retry_on_timeout=False)
        self._script = self._client.register_script(GCRA_SCRIPT)
        self._prefix = prefix
        self.fail_open = fail_open
        self.failed_open = 0  # requests let through while Redis was away
        self._backoff = Backoff()

    @property
    def available(self) -> bool:
        return self._backoff.failures == 0

    def health(self) -> BackendHealth:
        return self._backoff.health()

    async def ping(self) -> None:
        """For readiness: StateUnavailable unless Redis answers now (paced by the backoff;
        never counted as failing open)."""
        await self._attempt(self._client.ping)

    async def acquire(self, key: str, interval: float, burst: int, now: float
                      ) -> tuple[bool, float]:
        return (await self.acquire_many([(key, interval, burst)], now))[0]

    async def acquire_many(self, requests: list[tuple[str, float, int]], now: float
                           ) -> list[tuple[bool, float]]:
        if not requests:
            return []
        result = await self._call(requests, now, reserve=False)
        if result is None:  # failed open
            return [(True, now)] * len(requests)
        return result

    async def reserve(self, key: str, interval: float, burst: int, now: float) -> float:
        result = await self._call([(key, interval, burst)], now, reserve=True)
        if result is None:
            return now  # failed open: no shaping while Redis is away
        return max(now, result[0][1] - interval * burst)

    async def _call(self, requests: list[tuple[str, float, int]], now: float, *,
                    reserve: bool) -> list[tuple[bool, float]] | None:
        keys = [self._prefix + key for key, _, _ in requests]
        args: list[str] = [repr(now)]
        for _, interval, burst in requests:
            args += [repr(interval), str(burst), "1" if reserve else "0"]
        try:
            flat = await self._attempt(lambda: self._script(keys=keys, args=args))
        except StateUnavailable as exc:
            self._unavailable(exc)
            return None
        return [(bool(int(flat[i])), float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def _attempt(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`'s answer; StateUnavailable if Redis is away (now, or within the
        backoff after a failure)."""
        wait = self._backoff.wait()
        if wait > 0:
            raise StateUnavailable(f"rate-limit store {self.where} unavailable "
                                   f"(next try in {wait:.1f}s)")
        try:
            result = await call()
        except _UNAVAILABLE as exc:
            self._failed(exc)
            raise StateUnavailable(f"rate-limit store {self.where} unavailable "
                                   f"({type(exc).__name__})") from None
        ended = self._backoff.succeeded()
        if ended:
            log.warning("rate-limit store %s is back after %d failed tries", self.where, ended)
        return result

    def _unavailable(self, exc: StateUnavailable) -> None:
        """Count a fail-open pass, or raise."""
        if self.fail_open:
            self.failed_open += 1
            return
        raise exc

    def _failed(self, exc: BaseException) -> None:
        pause = self._backoff.failed(exc)
        tries = self._backoff.failures
        if tries == 1 or tries % 10 == 0:
            log.error("rate-limit store %s unavailable (%s); %s; try %d, next in %.2fs",
                      self.where, exc, "failing open" if self.fail_open else "answering 451",
                      tries, pause)

    async def close(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable {self._backoff!r}"
        return f"<RedisRateCounters {self.where} {state} fail_open={self.fail_open}>"
