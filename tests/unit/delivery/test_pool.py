"""The connection pool's bookkeeping: per-destination limits, reuse, retirement.

The connections here are stand-ins with the few attributes the pool reads;
real SMTP sessions are exercised in the integration tests.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.delivery.pool import ConnectionPool, Lease
from gateway.delivery.smtp_client import SmtpConnection


class FakeConnection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.usable = True
        self.is_closing = False
        self.messages = 0
        self.closed = False

    def close(self) -> None:
        self.closed = self.is_closing = True

    def abort(self) -> None:
        self.close()


def opened(lease: Lease, name: str) -> FakeConnection:
    conn = FakeConnection(name)
    lease.connection = cast(SmtpConnection, cast(Any, conn))
    return conn


async def test_first_lease_is_an_empty_slot_then_the_idle_connection_is_reused() -> None:
    pool = ConnectionPool()
    lease = await pool.acquire("d", 2)
    assert lease.connection is None and not lease.reused
    conn = opened(lease, "c1")
    conn.messages = 1
    pool.release(lease, max_messages=10)
    again = await pool.acquire("d", 2)
    assert again.connection is cast(Any, conn) and again.reused
    pool.release(again, 10)
    assert pool.stats() == (1, 1)
    pool.close()
    assert conn.closed and pool.stats() == (0, 0)


async def test_limit_makes_callers_wait_for_a_release() -> None:
    pool = ConnectionPool()
    first = await pool.acquire("d", 1)
    opened(first, "c1")
    waiting = asyncio.ensure_future(pool.acquire("d", 1))
    await asyncio.sleep(0)
    assert not waiting.done()
    other = await pool.acquire("other", 1)  # another destination is not held up
    pool.release(other, 10)
    pool.release(first, 10)
    second = await asyncio.wait_for(waiting, 1)
    assert second.reused  # it got the connection the first caller gave back
    pool.release(second, 10)
    pool.close()


async def test_connection_is_retired_after_max_messages() -> None:
    pool = ConnectionPool()
    lease = await pool.acquire("d", 1)
    conn = opened(lease, "c1")
    conn.messages = 3
    pool.release(lease, max_messages=3)
    assert conn.closed
    assert pool.stats() == (0, 0)


async def test_unusable_or_discarded_connections_free_their_slot() -> None:
    pool = ConnectionPool()
    lease = await pool.acquire("d", 1)
    conn = opened(lease, "c1")
    conn.usable = False
    pool.release(lease, 10)
    assert conn.closed and pool.stats() == (0, 0)
    lease = await pool.acquire("d", 1)
    conn = opened(lease, "c2")
    lease.discard()
    assert conn.closed and lease.connection is None
    pool.release(lease, 10)
    assert pool.stats() == (0, 0)


async def test_a_connection_closed_while_idle_is_not_handed_out() -> None:
    pool = ConnectionPool()
    lease = await pool.acquire("d", 1)
    conn = opened(lease, "c1")
    pool.release(lease, 10)
    conn.is_closing = True  # the server hung up
    lease = await pool.acquire("d", 1)
    assert lease.connection is None
    pool.release(lease, 10)


async def test_sweep_closes_connections_idle_too_long() -> None:
    pool = ConnectionPool(idle_timeout=5.0)
    lease = await pool.acquire("d", 1)
    conn = opened(lease, "c1")
    pool.release(lease, 10)
    pool._sweep()
    assert not conn.closed  # just released
    pool.idle_timeout = 0.0
    pool._sweep()
    assert conn.closed and pool.stats() == (0, 0)
    pool.close()


async def test_cancelled_waiter_passes_its_turn_on() -> None:
    pool = ConnectionPool()
    first = await pool.acquire("d", 1)
    cancelled = asyncio.ensure_future(pool.acquire("d", 1))
    patient = asyncio.ensure_future(pool.acquire("d", 1))
    await asyncio.sleep(0)
    pool.release(first, 10)  # wakes `cancelled`...
    cancelled.cancel()  # ...which gives up before it runs
    lease = await asyncio.wait_for(patient, 1)
    assert lease.connection is None
    pool.release(lease, 10)
    assert pool.stats() == (0, 0)
