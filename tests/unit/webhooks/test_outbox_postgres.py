"""The PostgreSQL outbox on a real server (127.0.0.1:5432): events committed out of id
order by concurrent writers are all sent; one node at a time holds a webhook's
lease, a holder whose session ended can no longer move the cursor, and a node cut
off from the database (a TCP forwarder, reset) hands the webhook to another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from gateway.clock import ManualClock
from gateway.errors import StateUnavailable
from gateway.model import Secret
from gateway.state.postgres import PostgresPool
from gateway.webhooks.dispatcher import WebhookDispatcher
from gateway.webhooks.outbox import Position
from gateway.webhooks.outbox_postgres import HELD_WARNING, PostgresOutbox
from gateway.webhooks.settings import WebhookConfig
from tests.fixtures.backends import PG_ADMIN_DSN, pg_database, pg_dsn
from tests.fixtures.tcp_proxy import TcpProxy
from tests.fixtures.webhook_receiver import Receiver

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

SECRET = "s3cret-for-the-booking-app-hooks"
TYPES = ("delivered",)
_INSERT = ("INSERT INTO events (time, queue_id, type, recipient) VALUES"
           " (1800000000, $1, 'delivered', $2) RETURNING seq")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
async def pools(pg_dsn: str) -> AsyncIterator[tuple[PostgresPool, PostgresPool]]:
    """Two nodes' connection pools on the same database."""
    a, b = PostgresPool(Secret(pg_dsn)), PostgresPool(Secret(pg_dsn))
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
def receiver(clock: ManualClock) -> Iterator[Receiver]:
    r = Receiver(SECRET, now=clock.now).start()
    yield r
    r.stop()


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def sleeping(clock: ManualClock) -> int:
    return sum(1 for _, _, fut in clock._sleepers if not fut.done())


async def cursor_row(dsn: str, name: str) -> tuple[int, int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT xid, seq, holder FROM webhook_cursors WHERE name = $1",
                                  name)
        return int(row[0]), int(row[1]), str(row[2])
    finally:
        await conn.close()


async def test_an_event_committed_after_a_higher_id_is_still_sent(
        pg_dsn: str, pools: tuple[PostgresPool, PostgresPool], clock: ManualClock,
        receiver: Receiver) -> None:
    hook = WebhookConfig(name="app", url=receiver.url, secret=Secret(SECRET), events=TYPES,
                         poll_interval=1.0)
    slow, quick, third = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    d = WebhookDispatcher([hook], PostgresOutbox(pools[0], clock), clock)
    await d.start()
    try:
        await until(lambda: sleeping(clock) == 1, "the sender idle at the head")
        # Writer 1 takes the lower id and is slow to commit; writer 2 commits a higher id.
        held = slow.transaction()
        await held.start()
        low = await slow.fetchval(_INSERT, "Q1", "held@example.net")
        high = await quick.fetchval(_INSERT, "Q2", "quick@example.net")
        assert low < high
        # What a cursor over ids would have seen: the higher id alone; it would move past
        # the lower one before it commits.
        assert [r[0] for r in await third.fetch("SELECT seq FROM events")] == [high]
        for _ in range(3):  # polls while writer 1 is still open: nothing may go out
            clock.advance(1.0)
            await until(lambda: sleeping(clock) == 1, "a poll")
        await asyncio.sleep(0.05)
        assert receiver.events() == []
        await held.commit()
        clock.advance(1.0)
        await until(lambda: len(receiver.events()) == 2, "both events")
        assert sorted(receiver.ids().items()) == [(low, 1), (high, 1)]
        assert {e["recipient"] for e in receiver.events()} == {"held@example.net",
                                                              "quick@example.net"}
    finally:
        await d.stop()
        for conn in (slow, quick, third):
            await conn.close()


async def test_a_transaction_open_in_another_database_does_not_hold_webhooks_back(
        pg_dsn: str, pools: tuple[PostgresPool, PostgresPool], clock: ManualClock) -> None:
    lease = PostgresOutbox(pools[0], clock).lease("app")
    other_db = await asyncpg.connect(PG_ADMIN_DSN)
    writer = await asyncpg.connect(pg_dsn)
    same_db = await asyncpg.connect(pg_dsn)
    try:
        start = await lease.acquire(clock.now())
        assert start is not None
        elsewhere = other_db.transaction()
        await elsewhere.start()
        await other_db.fetchval("SELECT pg_current_xact_id()")  # it has written: an xid
        seq = await writer.fetchval(_INSERT, "Q1", "a@example.net")
        read = await lease.read(start, TYPES, 10)
        assert [e.seq for e in read.events] == [seq]  # not held by the other database
        # The same in this database holds it back until it ends.
        here = same_db.transaction()
        await here.start()
        await same_db.fetchval("SELECT pg_current_xact_id()")
        later = await writer.fetchval(_INSERT, "Q2", "b@example.net")
        blocked = await lease.read(read.scanned_to, TYPES, 10)
        assert blocked.events == [] and blocked.scanned_to < Position(2**62, 0)
        await here.rollback()
        freed = await lease.read(blocked.scanned_to, TYPES, 10)
        assert [e.seq for e in freed.events] == [later]
        await elsewhere.rollback()
    finally:
        await lease.release()
        for conn in (other_db, writer, same_db):
            await conn.close()


async def test_one_node_holds_a_webhook_until_it_lets_go(
        pg_dsn: str, pools: tuple[PostgresPool, PostgresPool], clock: ManualClock) -> None:
    node_a = PostgresOutbox(pools[0], clock, holder="node-a")
    node_b = PostgresOutbox(pools[1], clock, holder="node-b")
    a, b = node_a.lease("app"), node_b.lease("app")
    other_b = node_b.lease("other")
    try:
        start = await a.acquire(clock.now())
        assert start is not None
        assert await b.acquire(clock.now()) is None  # held by node A
        assert await other_b.acquire(clock.now()) is not None  # another webhook: free
        writer = await asyncpg.connect(pg_dsn)
        seq = await writer.fetchval(_INSERT, "Q1", "a@example.net")
        await writer.close()
        read = await a.read(start, TYPES, 10)
        assert [e.seq for e in read.events] == [seq]
        await a.advance(read.scanned_to, clock.now())
        assert (await cursor_row(pg_dsn, "app"))[2] == "node-a"
        assert await b.acquire(clock.now()) is None
        await a.release()
        assert await b.acquire(clock.now()) == read.scanned_to  # where A left it
        assert (await cursor_row(pg_dsn, "app"))[2] == "node-b"
        assert await a.acquire(clock.now()) is None
    finally:
        for lease in (a, b, other_b):
            await lease.release()


async def test_a_holder_whose_session_ended_cannot_move_the_cursor(
        pg_dsn: str, pools: tuple[PostgresPool, PostgresPool], clock: ManualClock) -> None:
    a = PostgresOutbox(pools[0], clock, holder="node-a").lease("app")
    b = PostgresOutbox(pools[1], clock, holder="node-b").lease("app")
    admin = await asyncpg.connect(pg_dsn)
    try:
        start = await a.acquire(clock.now())
        assert start is not None
        # The server ends node A's session (a network cut, an operator, a restart).
        session = a._conn  # type: ignore[attr-defined]
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", session.get_server_pid())
        for _ in range(100):  # bounded: the server drops the lock with the session
            taken = await b.acquire(clock.now())
            if taken is not None:
                break
            await asyncio.sleep(0.02)
        assert taken == start
        with pytest.raises((StateUnavailable, asyncpg.PostgresError)):
            await a.advance(Position(start.xid, start.seq + 1000), clock.now())
        assert (await cursor_row(pg_dsn, "app"))[:2] == (start.xid, start.seq)
        assert await a.acquire(clock.now()) is None  # node A asks again: B has it now
    finally:
        await a.release()
        await b.release()
        await admin.close()


async def test_a_transaction_that_never_ends_is_reported_once(
        pg_dsn: str, pools: tuple[PostgresPool, PostgresPool], clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    lease = PostgresOutbox(pools[0], clock).lease("app")
    stuck, writer = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        cursor: Any = await lease.acquire(clock.now())
        open_tx = stuck.transaction()
        await open_tx.start()
        await stuck.fetchval("SELECT pg_current_xact_id()")
        await writer.fetchval(_INSERT, "Q1", "a@example.net")
        for _ in range(4):
            cursor = (await lease.read(cursor, TYPES, 10)).scanned_to
            clock.advance(HELD_WARNING / 2)
        warnings = [r for r in caplog.records if "events wait behind transaction" in r.message]
        assert len(warnings) == 1, caplog.text
        await open_tx.rollback()
        assert len((await lease.read(cursor, TYPES, 10)).events) == 1
    finally:
        await lease.release()
        await stuck.close()
        await writer.close()



async def test_a_node_cut_off_from_the_database_hands_the_webhook_over_and_comes_back(
        pg_dsn: str, clock: ManualClock, receiver: Receiver) -> None:
    proxy = TcpProxy(5432).start()
    parts = urlsplit(pg_dsn)
    cut_off = PostgresPool(Secret(f"postgresql://postgres@127.0.0.1:{proxy.port}{parts.path}"))
    direct = PostgresPool(Secret(pg_dsn))
    writer = await asyncpg.connect(pg_dsn)
    await cut_off.open()
    await direct.open()
    hook = WebhookConfig(name="app", url=receiver.url, secret=Secret(SECRET), events=TYPES,
                         poll_interval=1.0)
    node_a = WebhookDispatcher([hook], PostgresOutbox(cut_off, clock, holder="node-a"), clock)
    node_b = WebhookDispatcher([hook], PostgresOutbox(direct, clock, holder="node-b"), clock)
    try:
        await node_a.start()
        await until(lambda: node_a.senders["app"].cursor is not None, "node A holding")
        await node_b.start()
        await until(lambda: sleeping(clock) == 2, "both senders idle")
        assert node_b.senders["app"].cursor is None  # standing by
        first = await writer.fetchval(_INSERT, "Q1", "a@example.net")
        clock.advance(1.0)
        await until(lambda: node_a.events_sent == 1, "node A sending")
        proxy.cut()  # node A's connections reset: the server drops its lock with them
        second = await writer.fetchval(_INSERT, "Q2", "b@example.net")
        for _ in range(200):  # bounded; the server needs a moment to end A's session
            clock.advance(1.0)
            await asyncio.sleep(0.02)
            if node_b.events_sent:
                break
        assert node_b.events_sent == 1 and node_a.senders["app"].cursor is None
        assert node_a.senders["app"].outbox_failures >= 1
        proxy.start()  # A is back: it asks again, and stands by while B holds the webhook
        for _ in range(30):  # past the pool's reconnection backoff (real time)
            clock.advance(1.0)
            await asyncio.sleep(0.02)
        assert node_a.senders["app"].outbox_failures == 0
        assert node_a.senders["app"].cursor is None
        assert sorted(receiver.ids().items()) == [(first, 1), (second, 1)]
    finally:
        await node_a.stop()
        await node_b.stop()
        proxy.stop()
        await writer.close()
        await cut_off.close()
        await direct.close()
