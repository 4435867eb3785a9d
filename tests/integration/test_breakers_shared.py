"""Circuit breakers shared by two nodes through PostgreSQL (issue 8): two Delivery
instances, each with its own StateStore (its own connection pool), against the
real server and real SMTP sinks on loopback. A primary smarthost that answers
every message with 421 is the dead host; time is a ManualClock shared by both.

When node A opens the primary's breaker, node B stops sending there at its next
attempt after a refresh; the half-open probe is made by one node; its result
(closed, or open again) reaches the other; PostgreSQL away leaves each node
with its own breaker, and delivery goes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.clock import ManualClock
from gateway.delivery.breaker_sharing import REFRESH
from gateway.delivery.deliver import Delivery
from gateway.delivery.smarthosts import BreakerState, CircuitBreaker
from gateway.errors import StateUnavailable
from gateway.model import Attempt, Route, Secret
from gateway.state.breakers import BreakerRow
from gateway.state.settings import StateConfig
from gateway.state.store import StateStore
from tests.fixtures.backends import pg_database, pg_dsn
from tests.fixtures.sink import Sink
from tests.fixtures.tcp_proxy import TcpProxy
from tests.integration.test_queue_cli import until
from tests.integration.test_smarthost_failover import CONTENT, config, job, route, smarthost

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

RECOVERY = 300.0  # route()'s circuit_breaker.recovery


@dataclass
class Node:
    name: str
    state: StateStore
    delivery: Delivery

    async def send(self, r: Route) -> Attempt:
        attempt = await self.delivery.deliver(job(r), CONTENT)
        assert [res.reply.code for res in attempt.results] == [250], attempt
        return attempt

    def breaker(self, name: str = "primary") -> CircuitBreaker:
        (found,) = [b for b in self.delivery.breakers() if b.name == name]
        return found


async def start_node(name: str, dsn: str, directory: Path, clock: ManualClock) -> Node:
    state = StateStore(directory / name / "state.db", StateConfig(dsn=Secret(dsn)))
    await state.open()
    delivery = Delivery(config(), clock, breaker_store=state.breakers, node=name)
    return Node(name, state, delivery)


async def stop_node(node: Node) -> None:
    await node.delivery.close()
    await node.state.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def dead() -> Iterator[Sink]:
    """The primary smarthost: every message gets 421 (a host failure)."""
    sink = Sink(pipelining=True).start()
    sink.data_reply = "421 4.3.0 going down"
    yield sink
    sink.stop()


@pytest.fixture
def backup() -> Iterator[Sink]:
    sink = Sink(pipelining=True).start()
    yield sink
    sink.stop()


@pytest.fixture
async def nodes(pg_dsn: str, tmp_path: Path, clock: ManualClock
                ) -> AsyncIterator[tuple[Node, Node]]:
    a = await start_node("node-a", pg_dsn, tmp_path, clock)
    b = await start_node("node-b", pg_dsn, tmp_path, clock)
    yield a, b
    await stop_node(a)
    await stop_node(b)


async def rows(node: Node) -> list[BreakerRow]:
    assert node.state.breakers is not None
    return await node.state.breakers.all()


async def test_node_b_stops_sending_to_the_host_node_a_found_dead(
        nodes: tuple[Node, Node], clock: ManualClock, dead: Sink, backup: Sink) -> None:
    a, b = nodes
    r = route(smarthost("primary", dead.port), smarthost("backup", backup.port))
    # B reads the cluster's breakers at its first attempt: nothing is open yet.
    assert (await b.send(r)).host == "backup"
    assert dead.connections == 1 and b.breaker().failures == 1
    for _ in range(3):
        assert (await a.send(r)).host == "backup"
    assert dead.connections == 4 and a.breaker().state is BreakerState.OPEN
    (row,) = await rows(a)
    assert (row.state, row.node, row.retry_at) == ("OPEN", "node-a", clock.now() + RECOVERY)

    # B learns it at its next attempt once its refresh is due: no connection to the
    # dead host, straight to the backup.
    clock.advance(REFRESH)
    for _ in range(3):
        assert (await b.send(r)).host == "backup"
    assert dead.connections == 4
    assert b.breaker().state is BreakerState.OPEN
    assert b.breaker().retry_at == row.retry_at
    assert backup.count() == 7


async def test_one_node_probes_and_both_follow_its_result(
        nodes: tuple[Node, Node], clock: ManualClock, dead: Sink, backup: Sink) -> None:
    a, b = nodes
    r = route(smarthost("primary", dead.port), smarthost("backup", backup.port))
    for _ in range(3):
        await a.send(r)
    clock.advance(REFRESH)
    await b.send(r)  # B has adopted A's OPEN
    assert dead.connections == 3
    elsewhere = Route("elsewhere", "smarthost", smarthosts=(smarthost("backup", backup.port),))

    # Recovery over: both breakers would let a probe through. B reads the shared state
    # first (a delivery on another route), so it has not seen A's claim when it asks
    # for the probe itself. A claims it; while A's probe is in flight (the dead host
    # holds its DATA reply), B's claim finds it taken and B skips the host.
    # (Claims at the very same moment: tests/unit/state/test_store_backends.py.)
    clock.advance(RECOVERY)
    await b.send(elsewhere)
    dead.data_gate = threading.Event()
    probe = asyncio.create_task(a.send(r))
    await until(lambda: dead.connections == 4)
    assert (await b.send(r)).host == "backup"
    assert dead.connections == 4
    assert b.breaker().state is BreakerState.HALF_OPEN  # A's probe, adopted
    dead.data_gate.set()
    assert (await probe).host == "backup"  # the probe failed: 421 again
    (row,) = await rows(a)
    assert (row.state, row.node) == ("OPEN", "node-a")
    assert a.breaker().state is BreakerState.OPEN
    clock.advance(REFRESH)
    await b.send(r)
    assert b.breaker().state is BreakerState.OPEN and dead.connections == 4

    # The host is back. This time B probes; its probe succeeds, and A learns that the
    # breaker closed and sends there again too.
    dead.data_reply = None
    dead.data_gate = threading.Event()
    clock.advance(RECOVERY)
    await a.send(elsewhere)
    probe = asyncio.create_task(b.send(r))
    await until(lambda: dead.connections == 5)
    assert (await a.send(r)).host == "backup"
    dead.data_gate.set()
    assert (await probe).host == "primary"
    (row,) = await rows(a)
    assert (row.state, row.node) == ("CLOSED", "node-b")
    clock.advance(REFRESH)
    assert (await a.send(r)).host == "primary"
    assert (await b.send(r)).host == "primary"
    assert a.breaker().state is b.breaker().state is BreakerState.CLOSED
    assert dead.count() == 3
    assert backup.count() == 10


def through(dsn: str, port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}{urlsplit(dsn).path}"


async def test_database_away_leaves_each_node_its_own_breaker(
        pg_dsn: str, tmp_path: Path, clock: ManualClock, dead: Sink, backup: Sink,
        caplog: pytest.LogCaptureFixture) -> None:
    database = TcpProxy(5432).start()
    a = await start_node("node-a", through(pg_dsn, database.port), tmp_path, clock)
    try:
        r = route(smarthost("primary", dead.port), smarthost("backup", backup.port))
        await a.send(r)  # reads the (empty) shared state while the database is there
        database.cut()
        clock.advance(REFRESH)
        for _ in range(5):
            assert (await a.send(r)).host == "backup"
        # Opened on this node alone after 3 failures; the dead host is skipped.
        assert dead.connections == 3 and a.breaker().state is BreakerState.OPEN
        away = [rec for rec in caplog.records if rec.name == "gateway.delivery.breaker_sharing"
                and "cannot be used" in rec.getMessage()]
        assert len(away) == 1, [rec.getMessage() for rec in away]  # said once

        database.start()
        await reconnected(a.state)
        # The probe after the recovery time is claimed in the database again (its
        # row made now: the OPEN of the outage was never written) and shared.
        clock.advance(RECOVERY)
        assert (await a.send(r)).host == "backup"
        assert dead.connections == 4
        (row,) = await rows(a)
        assert (row.state, row.node) == ("OPEN", "node-a")
        assert any("shared with the other nodes again" in rec.getMessage()
                   for rec in caplog.records)
    finally:
        await stop_node(a)
        database.cut()


async def reconnected(state: StateStore) -> None:
    """Wait (bounded, real time: the pool's reconnection backoff) for the database."""
    assert state.postgres is not None
    deadline = time.monotonic() + 30
    while True:
        try:
            await state.postgres.ping()
            return
        except StateUnavailable:
            assert time.monotonic() < deadline, "the database did not come back"
            await asyncio.sleep(0.1)


async def test_without_a_store_the_breakers_are_the_nodes_own(
        clock: ManualClock, dead: Sink, backup: Sink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "gateway.delivery.breaker_sharing")
    delivery = Delivery(config(), clock)  # the embedded (SQLite) backend has no breaker store
    try:
        r = route(smarthost("primary", dead.port), smarthost("backup", backup.port))
        for _ in range(4):
            await delivery.deliver(job(r), CONTENT)
        assert dead.connections == 3
        assert "node-local" in repr(delivery)
    finally:
        await delivery.close()
    assert not [rec for rec in caplog.records if rec.name == "gateway.delivery.breaker_sharing"]
