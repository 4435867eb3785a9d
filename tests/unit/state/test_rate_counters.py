"""Rate counters: one GCRA suite over the node's shared table and Redis (a real
server on 127.0.0.1:6379, a key prefix per test), then Redis's failure modes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.errors import StateUnavailable
from gateway.model import Secret
from gateway.state.backoff import Backoff
from gateway.state.ratelimits import RateCounters, SharedRateCounters
from gateway.state.redis_limits import RedisRateCounters, redact_url
from tests.fixtures.backends import REDIS_URL, redis_prefix
from tests.fixtures.net import free_port

__all__ = ["redis_prefix"]  # fixtures, imported for pytest


@pytest.fixture(params=["table", "redis"])
async def counters(request: pytest.FixtureRequest, tmp_path: Path
                   ) -> AsyncIterator[RateCounters]:
    store: RateCounters
    if request.param == "table":
        store = SharedRateCounters(tmp_path / "ratelimits.table")
    else:
        store = RedisRateCounters(Secret(REDIS_URL), prefix=request.getfixturevalue(
            "redis_prefix"))
    yield store
    await store.close()


async def test_gcra_burst_then_one_per_interval(counters: RateCounters) -> None:
    acquire = counters.acquire
    # 1 token per 3 s, burst 2: two at once, the third refused until 3 s later.
    assert (await acquire("k", 3.0, 2, 1000.0))[0]
    assert (await acquire("k", 3.0, 2, 1000.0))[0]
    allowed, tat = await acquire("k", 3.0, 2, 1000.0)
    assert not allowed and tat - 3.0 * 2 == pytest.approx(1000.0)  # free again at tat - window
    assert not (await acquire("k", 3.0, 2, 1002.9))[0]
    assert (await acquire("k", 3.0, 2, 1003.0))[0]
    assert not (await acquire("k", 3.0, 2, 1003.0))[0]
    assert (await acquire("other", 3.0, 2, 1003.0))[0]


async def test_acquire_many_takes_each_limit_in_one_call(counters: RateCounters) -> None:
    reqs = [("per-guest", 60.0, 2), ("per-client", 1.0, 100)]
    results = [await counters.acquire_many(reqs, 1000.0) for _ in range(3)]
    assert [[a for a, _ in r] for r in results] == [[True, True], [True, True], [False, True]]
    assert await counters.acquire_many([], 1000.0) == []


async def test_reserve_spaces_requests(counters: RateCounters) -> None:
    reserve = counters.reserve
    # 1 per 3 s, burst 2: two go now, then one every 3 s.
    assert [await reserve("k", 3.0, 2, 1000.0) for _ in range(4)] == pytest.approx(
        [1000.0, 1000.0, 1003.0, 1006.0])
    assert await reserve("k", 3.0, 2, 1100.0) == 1100.0  # idle long enough: no wait


async def test_redis_limit_holds_across_clients(redis_prefix: str) -> None:
    # Two nodes = two clients; 10 concurrent takers of a burst of 4 get exactly 4.
    nodes = [RedisRateCounters(Secret(REDIS_URL), prefix=redis_prefix) for _ in range(2)]
    results = await asyncio.gather(*(nodes[i % 2].acquire("guest", 3600.0, 4, 1000.0)
                                     for i in range(10)))
    assert sum(allowed for allowed, _ in results) == 4
    for node in nodes:
        await node.close()


async def test_redis_keys_expire_when_their_bucket_is_full_again(redis_prefix: str) -> None:
    store = RedisRateCounters(Secret(REDIS_URL), prefix=redis_prefix)
    await store.acquire("k", 30.0, 1, 1000.0)
    client = aioredis.from_url(REDIS_URL)
    ttl_ms = await client.pttl(redis_prefix + "k")
    assert 30_000 < ttl_ms <= 31_000  # the TAT is 30 s ahead; + 1 s of slack
    await client.aclose()
    await store.close()


async def test_redis_away_fails_closed_by_default(redis_prefix: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    store = RedisRateCounters(Secret(dead), prefix=redis_prefix, timeout=0.5)
    with pytest.raises(StateUnavailable, match="unavailable"):
        await store.acquire("k", 1.0, 1, 1000.0)
    # Within the backoff, the next call does not even try (and fails the same way).
    with pytest.raises(StateUnavailable, match="next try in"):
        await store.acquire_many([("k", 1.0, 1)], 1000.0)
    assert not store.available
    await store.close()


async def test_redis_away_fails_open_when_configured(redis_prefix: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisRateCounters(Secret(dead), prefix=redis_prefix, fail_open=True, timeout=0.5)
    assert await store.acquire_many([("k", 60.0, 1), ("j", 60.0, 1)], 1000.0) == [
        (True, 1000.0), (True, 1000.0)]
    assert await store.reserve("k", 60.0, 1, 1000.0) == 1000.0  # no shaping meanwhile
    assert store.failed_open == 2
    await store.close()


def test_redis_url_password_is_never_shown() -> None:
    assert redact_url("redis://:s3cret@10.0.0.5:6379/0") == "redis://***@10.0.0.5:6379/0"
    store = RedisRateCounters(Secret("redis://user:s3cret@10.0.0.5:6379/0"))
    assert "s3cret" not in repr(store)


def test_backoff_doubles_to_a_ceiling_and_resets() -> None:
    now = [100.0]
    backoff = Backoff(first=0.25, maximum=1.0, clock=lambda: now[0])
    assert backoff.wait() <= 0  # never failed: try now
    assert [backoff.failed() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert backoff.wait() == 1.0
    now[0] += 1.0
    assert backoff.wait() == 0.0  # due: the next request is the reconnection attempt
    assert backoff.succeeded() == 5 and backoff.failures == 0
