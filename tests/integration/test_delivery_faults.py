"""Destinations that misbehave: hang mid-DATA or after DATA, drop the connection
after DATA, trickle their replies (RFC 5321 4.5.3.2 timeouts); DNS that never
answers; every smarthost of a route down for days.

Each case ends in a deferral, never a loss: the end-to-end cases count the
messages that reach the destination after it recovers (duplicates are allowed
and counted — at least once). Time is a ManualClock; retry windows are crossed
with advance(), never slept through. Real sockets on 127.0.0.1 throughout.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.delivery.deliver import Delivery
from gateway.delivery.settings import DeliveryConfig
from gateway.model import (
    Client,
    DeliveryJob,
    Envelope,
    QueuedMessage,
    QueueState,
    Route,
    Smarthost,
)
from gateway.supervisor import Gateway
from tests.fixtures import tls
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.load import tags_in
from tests.fixtures.net import free_port
from tests.fixtures.raw_smtp import RawSmtpServer
from tests.fixtures.sink import Sink

CONTENT = b"From: app@src.test\r\nSubject: fault\r\n\r\nbody\r\n"


def config() -> DeliveryConfig:
    return DeliveryConfig(helo_name="gw.test", connect_timeout=0.5, command_timeout=0.4,
                          data_timeout=0.6)


def job(port: int) -> DeliveryJob:
    host = Smarthost(name="dest", host="127.0.0.1", port=port, tls="none")
    route = Route("dest", "smarthost", smarthosts=(host,))
    env = Envelope("app@src.test", ("u@dest.test",), Client("relay", "127.0.0.1"), 0.0)
    return DeliveryJob(QueuedMessage("Q1", env, len(CONTENT)), ("u@dest.test",), route,
                       "dest.test", 1)


@pytest.mark.parametrize("behaviour, stage, size", [
    ("hang_mid_data", "end of DATA", 8 * 1024 * 1024),  # the write itself stalls
    ("hang_after_data", "end of DATA", 0),
    ("drop_after_data", "end of DATA", 0),
    ("trickle", "greeting", 0),
    ("trickle_after_data", "end of DATA", 0),
])
async def test_a_misbehaving_destination_defers_within_the_timeout(
        behaviour: str, stage: str, size: int) -> None:
    content = CONTENT + b"x" * size
    delivery = Delivery(config(), ManualClock())
    try:
        async with RawSmtpServer([behaviour]) as server:
            started = time.monotonic()
            attempt = await delivery.deliver(job(server.port), content)
            elapsed = time.monotonic() - started
    finally:
        await delivery.close()
    (result,) = attempt.results
    assert (result.reply.code, result.reply.enhanced) == (451, "4.4.2"), result.reply
    assert stage in result.reply.text
    # Bounded by the configured timeouts (0.4 s per command, 0.6 s for the content).
    assert elapsed < 3.0


async def _send(port: int, tags: list[str]) -> None:
    def run() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for tag in tags:
                client.sendmail("app@src.test", ["u@dest.test"],
                                f"Subject: {tag}\r\nX-Seq: {tag}\r\n\r\nbody\r\n")
    await asyncio.to_thread(run)


async def _until(predicate: object, clock: ManualClock | None = None, step: float = 0.0,
                 timeout: float = 15.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        if clock is not None and step:
            clock.advance(step)
        await asyncio.sleep(0.02)


def _route_to(port: int) -> str:
    return textwrap.dedent(f"""\
        routes:
          - name: dest
            type: smarthost
            smarthosts:
              - name: dest
                host: 127.0.0.1
                port: {port}
                tls: none
            retry:
              delays: [1m, 5m]
              repeat: 10m
        """)


def _fast_timeouts(config_path: Path) -> None:
    text = config_path.read_text()
    for old, new in (("connect_timeout: 2s", "connect_timeout: 500ms"),
                     ("command_timeout: 5s", "command_timeout: 400ms"),
                     ("data_timeout: 5s", "data_timeout: 600ms")):
        text = text.replace(old, new)
    config_path.write_text(text)


def _queued(gw: Gateway) -> int:
    return sum(len(gw.spool.files.ids(s)) for s in
               (QueueState.INCOMING, QueueState.ACTIVE, QueueState.DEFERRED))


async def test_messages_survive_a_destination_that_hangs_drops_and_trickles(
        tmp_path: Path) -> None:
    """Every misbehaviour in turn, then a good server: every message arrives."""
    behaviours = ["hang_after_data", "drop_after_data", "hang_mid_data", "trickle",
                  "trickle_after_data"] * 2
    clock = ManualClock()
    async with RawSmtpServer(behaviours) as server:
        config = write_config(tmp_path, 0, route=_route_to(server.port))
        _fast_timeouts(config)
        async with running_gateway(config, clock) as gw:
            tags = [f"m{i}" for i in range(6)]
            await _send(gw.ports["relay"], tags)
            # Each retry window is crossed by advancing the clock; the faulty
            # connections are used up one per attempt, then the server behaves.
            await _until(lambda: set(tags_in(server.messages())) >= set(tags), clock, 60.0,
                         timeout=30)
            await _until(lambda: _queued(gw) == 0)
        received = tags_in(server.messages())
    duplicates = sum(n - 1 for n in received.values())
    print(f"sent={len(tags)} received={len(received)} duplicates={duplicates}")
    assert set(received) == set(tags)


@pytest.fixture
def silent_dns() -> Iterator[int]:
    """A UDP port on loopback that swallows every query."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_unreachable_dns_defers_and_nothing_is_lost(tmp_path: Path,
                                                          silent_dns: int) -> None:
    route = textwrap.dedent("""\
        routes:
          - name: direct
            type: mx
            tls: none
        """)
    extra = textwrap.dedent(f"""\
        delivery:
          helo_name: gateway.test
          dns:
            nameservers: [127.0.0.1]
            port: {silent_dns}
            timeout: 300ms
          connect_timeout: 500ms
        """)
    config = write_config(tmp_path, 0, route=route)
    text = config.read_text()
    head, _, rest = text.partition("delivery:\n")
    rest = rest.split("routes:", 1)[1]
    config.write_text(head + extra + "routes:" + rest)
    clock = ManualClock()
    async with running_gateway(config, clock) as gw:
        await _send(gw.ports["relay"], ["dns-1", "dns-2"])
        await _until(lambda: len(gw.spool.files.ids(QueueState.DEFERRED)) == 2)
        await gw.state.events.flush()  # type: ignore[attr-defined]
        events = [e for qid in gw.spool.files.ids(QueueState.DEFERRED)
                  for e in await gw.state.events.by_queue_id(qid)]
        deferred = [e.reply for e in events if e.type == "deferred"]
        assert len(deferred) == 2
        assert all(r is not None and (r.code, r.enhanced) == (451, "4.4.3")
                   for r in deferred), deferred
        assert _queued(gw) == 2


async def test_all_smarthosts_down_for_days_then_the_queue_drains(tmp_path: Path) -> None:
    first, second = free_port(), free_port()  # nothing listens on either, yet
    route = textwrap.dedent(f"""\
        routes:
          - name: providers
            type: smarthost
            smarthosts:
              - {{name: a, host: 127.0.0.1, port: {first}, tls: none}}
              - {{name: b, host: 127.0.0.1, port: {second}, tls: none}}
            retry:
              delays: [1m, 5m, 15m]
              repeat: 1h
        """)
    config = write_config(tmp_path, 0, route=route)
    clock = ManualClock()
    tags = [f"down-{i}" for i in range(20)]
    async with running_gateway(config, clock) as gw:
        await _send(gw.ports["relay"], tags)
        await _until(lambda: len(gw.spool.files.ids(QueueState.DEFERRED)) == len(tags))
        for _ in range(3 * 24):  # three days, an hour at a time: every retry fails
            clock.advance(3600)
            await asyncio.sleep(0.01)
        await _until(lambda: len(gw.spool.files.ids(QueueState.DEFERRED)) == len(tags))
        assert _queued(gw) == len(tags)  # held, nothing expired (max_age is 5 days)
        sink = Sink(port=second).start()
        try:
            await _until(lambda: set(tags_in([m.data for m in sink.messages])) >= set(tags),
                         clock, 600.0, timeout=30)
            await _until(lambda: _queued(gw) == 0)
        finally:
            sink.stop()


async def test_plaintext_injected_after_the_starttls_reply_is_discarded(tmp_path: Path) -> None:
    """A man in the middle appends plaintext replies to the server's 220 for STARTTLS
    (the client side of CVE-2011-0411): they must not be read as the first replies
    inside TLS. Here they would have faked a tiny SIZE limit and bounced the message."""
    certs = tls.make_certs(tmp_path)
    commands: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 dest.test ESMTP\r\n")
            await reader.readline()
            writer.write(b"250-dest.test\r\n250 STARTTLS\r\n")
            await reader.readline()
            writer.write(b"220 2.0.0 go ahead\r\n250-injected\r\n250 SIZE 10\r\n")
            await writer.drain()
            await writer.start_tls(certs.server_context())
            while line := await reader.readline():
                commands.append(line)
                if line.startswith(b"EHLO"):
                    writer.write(b"250-dest.test\r\n250 PIPELINING\r\n")
                elif line.startswith(b"DATA"):
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    writer.write(b"250 2.0.0 kept\r\n")
                else:
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    listener = await asyncio.start_server(server, "127.0.0.1", 0)
    port = int(listener.sockets[0].getsockname()[1])
    host = Smarthost(name="dest", host="127.0.0.1", port=port, tls="starttls",
                     verify_cert=False)
    delivery = Delivery(config(), ManualClock())
    try:
        the_job = job(port)
        the_job = replace(the_job, route=replace(the_job.route, smarthosts=(host,)))
        attempt = await delivery.deliver(the_job, CONTENT)
    finally:
        await delivery.close()
        listener.close()
        await listener.wait_closed()
    (result,) = attempt.results
    assert (result.reply.code, result.reply.text) == (250, "kept"), result.reply
    assert commands[0] == b"EHLO gw.test\r\n"  # EHLO again, answered inside TLS
