"""Two gateway nodes (separate processes, ports, spools) sharing PostgreSQL and Redis
(issue 8): a suppression added through node A's CLI refuses the recipient on
node B at the next RCPT; a per-recipient limit holds for both together; a
message resent through node B after node A queued it gets A's queue id and a
`duplicate` event, and is delivered once — also when both nodes receive it at
the same moment; the events of both nodes are in one trace."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

from gateway.model import EventType, Secret
from gateway.state.migrations import latest
from gateway.state.migrations.postgresql import POSTGRESQL
from gateway.state.settings import StateConfig
from gateway.state.store import StateStore
from tests.fixtures.backends import (
    REDIS_URL,
    pg_database,
    pg_dsn,
    redis_prefix,
    share_erasure_key,
)
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.policy import message, write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_idempotency import asubmit

__all__ = ["pg_database", "pg_dsn", "redis_prefix"]  # fixtures, imported for pytest


LIMITS = """\
    limits:
      - name: per-guest
        key: [recipient]
        rate: 1/h
        burst: 3
    """


def node_config(directory: Path, sink_port: int, dsn: str, prefix: str, workers: int) -> Path:
    directory.mkdir()
    write_policy(directory, "ratelimits.yaml", LIMITS)
    write_policy(directory, "suppression.yaml", "entries: []\n")
    extra = (f"state: {dsn}\nrate_limits: {REDIS_URL}\n"
             f"rate_limits_prefix: \"{prefix}\"\nintake_workers: {workers}\n")
    return write_config(directory, sink_port, extra=extra)


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rcpt(port: int, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.test")
        s.mail("app@example.com")
        code, _ = s.rcpt(address)
        s.rset()
    return code


async def trace(dsn: str, message_id: str, *wanted: EventType
                ) -> list[tuple[str, EventType]]:
    """The trace of `message_id` as any node's store reads it, waiting (bounded) until it
    holds each of `wanted` (the nodes write their events in batches)."""
    store = StateStore(Path("/nonexistent/state.db"), StateConfig(dsn=Secret(dsn)))
    await store.open()
    try:
        for _ in range(200):
            events = await store.events.by_message_id(message_id)
            if set(wanted) <= {e.type for e in events}:
                break
            await asyncio.sleep(0.05)
        return [(e.queue_id, e.type) for e in events]
    finally:
        await store.close()


async def test_two_nodes_share_suppressions_limits_and_events(
        tmp_path: Path, pg_dsn: str, redis_prefix: str) -> None:
    sink = Sink().start()
    # Node A serves SMTP from two intake worker processes, node B from its main process.
    a_config = node_config(tmp_path / "a", sink.port, pg_dsn, redis_prefix, workers=2)
    b_config = node_config(tmp_path / "b", sink.port, pg_dsn, redis_prefix, workers=1)
    share_erasure_key(tmp_path / "a" / "var", tmp_path / "b" / "var")
    assert "up to date" in cli("db", "migrate", "-c", str(a_config))
    version = latest(POSTGRESQL)
    assert f"version {version} (this gateway: {version}) up to date" in cli(
        "db", "status", "-c", str(b_config))
    a = GatewayProcess(a_config).start()
    b = GatewayProcess(b_config).start()
    try:
        # A suppression added through node A refuses the recipient on node B at once.
        assert await asyncio.to_thread(rcpt, b.port, "blocked@example.net") == 250
        cli("suppress", "add", "blocked@example.net", "-c", str(a_config))
        assert await asyncio.to_thread(rcpt, b.port, "blocked@example.net") == 550
        assert await asyncio.to_thread(rcpt, a.port, "blocked@example.net") == 550
        # The per-guest limit (burst 3) holds for both nodes together.
        codes = [await asyncio.to_thread(rcpt, node.port, "guest@limited.example")
                 for node in (a, b, a, b, a, b)]
        assert codes == [250, 250, 250, 451, 451, 451]
        # The app's 250 from node A got lost; it resends through node B, which answers
        # with A's queue id. One delivery; the trace holds both nodes' events.
        msg = message(extra="Message-ID: <booking-42@example.com>\r\n")
        code, first = await asubmit(a.port, msg)
        assert code == 250
        assert await asubmit(b.port, msg) == (250, first)
        # The same message reaching both nodes at the same moment: one is queued.
        for i in range(3):
            race = message(extra=f"Message-ID: <race-{i}@example.com>\r\n")
            barrier = threading.Barrier(2)
            x, y = await asyncio.gather(*(
                asubmit(node.port, race, rcpts=(f"race{i}@example.net",), barrier=barrier)
                for node in (a, b)))
            assert x == y and x[0] == 250, (x, y)
        await sink.await_for(4)
        events = await trace(pg_dsn, "<booking-42@example.com>", EventType.DELIVERED,
                             EventType.DUPLICATE)
        assert {q for q, _ in events} == {first}  # B queued nothing of its own
        types = [t for _, t in events]
        assert types.count(EventType.DELIVERED) == 1 and types.count(EventType.DUPLICATE) == 1
        for i in range(3):
            events = await trace(pg_dsn, f"<race-{i}@example.com>", EventType.DELIVERED,
                                 EventType.DUPLICATE)
            assert len({q for q, t in events if t is EventType.ACCEPTED}) == 1
            assert [t for _, t in events].count(EventType.DELIVERED) == 1
    finally:
        for node in (a, b):
            node.signal(15)
        for node in (a, b):
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.stop_hard()
        sink.stop()
    assert sink.count() == 4  # booking-42 once, each race once
