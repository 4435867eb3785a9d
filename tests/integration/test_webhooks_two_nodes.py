"""Webhooks from two gateway nodes (separate processes and spools) sharing one PostgreSQL
database, to one receiver: one node holds the webhook's lease and sends the events of
both; kill -9 of that node in the middle of a (slow) backlog, and the other takes
over from the cursor in PostgreSQL — every stored event arrives. Duplicates (a batch
POSTed just before the kill, its cursor not yet moved) are allowed, counted and
reported."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from tests.fixtures.backends import pg_database, pg_dsn, share_erasure_key
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink
from tests.fixtures.webhook_receiver import Receiver

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

SECRET = "webhook-secret-for-the-two-nodes"
FIRST, SECOND = 15, 10  # messages through each node before the kill; through the survivor after
TYPES = ("accepted", "delivered")


def node_config(directory: Path, sink_port: int, dsn: str, receiver: Receiver) -> Path:
    directory.mkdir()
    (directory / "hook.secret").write_text(SECRET)
    (directory / "hook.secret").chmod(0o600)  # secrets are refused when others may read them
    return write_config(directory, sink_port, extra=f"state: {dsn}\n" + textwrap.dedent(f"""\
        webhooks:
          - name: app
            url: {receiver.url}
            secret_file: hook.secret
            events: [{", ".join(TYPES)}]
            batch_size: 4
            poll_interval: 50ms
            retry_initial: 100ms
            retry_max: 500ms
        """))


def send(port: int, tags: range) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.test")
        for n in tags:
            s.mail("app@example.com")
            s.rcpt(f"guest{n}@example.net")
            code, text = s.data(f"Subject: booking {n}\r\n\r\nbooking {n}\r\n".encode())
            assert code == 250, text


async def until(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_two_nodes_send_every_event_and_the_survivor_takes_over_after_kill9(
        tmp_path: Path, pg_dsn: str) -> None:
    receiver = Receiver(SECRET).start()
    receiver.delay = 0.1  # a slow receiver: the backlog outlives the kill
    sink = Sink().start()
    configs = [node_config(tmp_path / n, sink.port, pg_dsn, receiver) for n in "ab"]
    share_erasure_key(*(tmp_path / n / "var" for n in "ab"))
    migrate = subprocess.run([sys.executable, "-m", "gateway", "db", "migrate", "-c",
                              str(configs[0])], capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stderr
    db = await asyncpg.connect(pg_dsn)
    nodes = [GatewayProcess(c).start() for c in configs]

    async def holder() -> str:
        return str(await db.fetchval("SELECT holder FROM webhook_cursors WHERE name = 'app'")
                   or "")

    async def stored() -> set[int]:
        rows = await db.fetch("SELECT seq FROM events WHERE type = ANY($1::text[])",
                              list(TYPES))
        return {int(r[0]) for r in rows}

    try:
        await until(lambda: _truthy(holder()), "a node to take the webhook")
        await asyncio.gather(*(asyncio.to_thread(send, n.port, range(i * 100, i * 100 + FIRST))
                               for i, n in enumerate(nodes)))
        await sink.await_for(2 * FIRST)
        await until(lambda: _at_least(stored(), 2 * 2 * FIRST), "every event in PostgreSQL")
        await until(lambda: _true(len(receiver.batches) >= 2), "the first batches")
        # Both nodes' events go out through the one that holds the lease.
        held_by = await holder()
        sending = next(n for n in nodes if held_by.endswith(f" pid {_pid(n)}"))
        survivor = next(n for n in nodes if n is not sending)
        sending.kill9()
        before_kill = len(receiver.events())
        assert before_kill < 2 * 2 * FIRST, "the receiver had everything before the kill"
        await asyncio.to_thread(send, survivor.port, range(1000, 1000 + SECOND))
        await sink.await_for(2 * FIRST + SECOND)
        await until(lambda: _at_least(stored(), 2 * (2 * FIRST + SECOND)), "the new events")
        every = await stored()
        await receiver.await_events(lambda ev: {int(e["id"]) for e in ev} >= every,
                                    timeout=60)
        assert (await holder()).endswith(f" pid {_pid(survivor)}")
        assert "webhook app: sent from this node now" in survivor.output()
    finally:
        for n in nodes:
            n.stop_hard()
        await db.close()
        sink.stop()
        receiver.stop()
    receiver.assert_each_stored_event_arrived(every, before_kill)


def _pid(node: GatewayProcess) -> int:
    assert node.proc is not None
    return node.proc.pid


async def _truthy(value: Awaitable[str]) -> bool:
    return bool(await value)


async def _at_least(value: Awaitable[set[int]], n: int) -> bool:
    return len(await value) >= n


async def _true(value: bool) -> bool:
    return value
