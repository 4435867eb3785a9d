"""Idempotency through the HTTP API: the same key (body field or Idempotency-Key header)
gives the same queue id and one delivery — twice in a row, across a restart, through two
nodes sharing PostgreSQL, and after kill -9 took the reply away."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
from collections import Counter
from pathlib import Path

import aiohttp

from gateway.model import EventType
from tests.fixtures.api import ApiClient, ApiReply, add_key, api_section, booking
from tests.fixtures.backends import pg_database, pg_dsn, redis_prefix, share_erasure_key
from tests.fixtures.gateway import GatewayProcess, running_gateway, write_config
from tests.fixtures.net import free_port, wait_listening
from tests.fixtures.sink import Sink

__all__ = ["pg_database", "pg_dsn", "redis_prefix"]  # fixtures, imported for pytest


HOLD = "451 4.3.0 not before the restart"  # the sink's answer: deliveries wait


def seq_of(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.startswith(b"X-Seq: "):
            return line[7:].decode()
    raise AssertionError("no X-Seq field")


async def test_same_key_twice_is_one_message(tmp_path: Path) -> None:
    key = add_key(tmp_path, "booking-app")
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port,
                                                extra=api_section(tmp_path))) as gw:
            assert gw.api is not None
            api = ApiClient(gw.api.port, key)
            first = await api.send(booking(idempotency_key="booking-42-confirmation"))
            again = await api.send(booking(idempotency_key="booking-42-confirmation"))
            assert again.queue_id == first.queue_id
            assert (first.json["duplicate"], again.json["duplicate"]) == (False, True)
            # The header form is the same key; a body that differs does not matter.
            by_header = await api.send(booking(text="rebuilt\n"), headers={
                "Idempotency-Key": "booking-42-confirmation"})
            assert by_header.queue_id == first.queue_id
            both = await api.send(booking(idempotency_key="a"), headers={
                "Idempotency-Key": "b"})
            assert (both.status, both.error_code) == (422, "conflicting_idempotency_key")
            # Another key (another app) with the same idempotency key is its own message.
            other = await ApiClient(gw.api.port, add_key(tmp_path, "shop-app")).send(
                booking(idempotency_key="booking-42-confirmation"))
            assert other.status == 202 and other.queue_id != first.queue_id
            await sink.await_for(2)
            await asyncio.sleep(0.3)
            assert sink.count() == 2
            events = await gw.state.events.by_queue_id(first.queue_id)
            assert [e.type for e in events].count(EventType.DUPLICATE) == 2
    finally:
        sink.stop()


async def test_the_key_survives_a_restart(tmp_path: Path) -> None:
    key = add_key(tmp_path, "booking-app")
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=api_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            assert gw.api is not None
            first = await ApiClient(gw.api.port, key).send(booking(idempotency_key="k-1"))
            await sink.await_for(1)
        async with running_gateway(config) as gw:
            assert gw.api is not None
            again = await ApiClient(gw.api.port, key).send(booking(idempotency_key="k-1"))
            assert again.queue_id == first.queue_id and again.json["duplicate"]
            await asyncio.sleep(0.3)
        assert sink.count() == 1
    finally:
        sink.stop()


def node(directory: Path, sink_port: int, extra: str) -> tuple[Path, int]:
    port = free_port()
    return write_config(directory, sink_port, extra=api_section(directory, port=port)
                        + extra), port


async def test_two_nodes_on_postgresql_answer_with_one_queue_id(
        tmp_path: Path, pg_dsn: str, redis_prefix: str) -> None:
    sink = Sink().start()
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    key = add_key(a_dir, "booking-app")
    shutil.copy2(a_dir / "api_keys.yaml", b_dir / "api_keys.yaml")  # one key, both nodes
    share_erasure_key(a_dir / "var", b_dir / "var")
    extra = f"state: {pg_dsn}\n"
    (a_config, a_port), (b_config, b_port) = (node(a_dir, sink.port, extra),
                                              node(b_dir, sink.port, extra))
    a, b = GatewayProcess(a_config).start(), GatewayProcess(b_config).start()
    try:
        wait_listening(a_port)
        wait_listening(b_port)
        first = await ApiClient(a_port, key).send(booking(idempotency_key="b-7"))
        # The app's 202 from node A got lost; it retries through node B.
        again = await ApiClient(b_port, key).send(booking(idempotency_key="b-7"))
        assert again.queue_id == first.queue_id and again.json["duplicate"]
        # Both nodes at the same moment with a new key: one message.
        x, y = await asyncio.gather(
            ApiClient(a_port, key).send(booking(idempotency_key="b-8")),
            ApiClient(b_port, key).send(booking(idempotency_key="b-8")))
        assert x.queue_id == y.queue_id, (x.text, y.text)
        await sink.await_for(2)
        await asyncio.sleep(0.5)
        assert sink.count() == 2
    finally:
        for gw in (a, b):
            gw.signal(signal.SIGTERM)
        for gw in (a, b):
            try:
                gw.wait(30)
            finally:
                gw.stop_hard()
        sink.stop()


async def post_unread(port: int, key: str, body: bytes) -> asyncio.StreamWriter:
    """Send a whole request and never read the reply: for the client it is lost."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\n"
                 + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + body)
    await writer.drain()
    return writer


async def test_kill9_after_the_spool_write_then_retry_delivers_once(tmp_path: Path) -> None:
    """The spool has the message, the client never saw the 202, the gateway is killed.
    After the restart the client's retry with its key gets the same queue id, and the
    message is delivered once. The sink holds every delivery back until the restart, so
    a duplicate could only come from intake."""
    key = add_key(tmp_path, "booking-app")
    sink = Sink().start()
    sink.data_reply = HOLD
    config, port = node(tmp_path, sink.port, "")
    gw = GatewayProcess(config).start()
    try:
        wait_listening(port)
        body = booking(idempotency_key="lost-reply", headers={"X-Seq": "lost-reply"})
        lost = await post_unread(port, key, json.dumps(body).encode())
        spool = tmp_path / "var" / "spool"
        for _ in range(500):  # until the queue file exists (incoming/ or active/)
            if any((spool / d).is_dir() and any((spool / d).iterdir())
                   for d in ("incoming", "active", "deferred")):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the message never reached the spool")
        gw.kill9()
        lost.close()  # whatever reply was written is thrown away unread
        gw = GatewayProcess(config).start()
        wait_listening(port)
        sink.data_reply = ""
        retry: ApiReply = await ApiClient(port, key).send(body)
        assert retry.status == 202 and retry.json["duplicate"], retry.text
        (got,) = await sink.await_for(1)
        assert seq_of(got.data) == "lost-reply"
        assert retry.queue_id in got.data.decode()  # the Received: line names its id
        await asyncio.sleep(1.0)
        assert sink.count() == 1
    finally:
        gw.stop_hard()
        sink.stop()


CLIENTS = 6
PER_CLIENT = 60


async def test_kill9_mid_load_every_key_is_delivered_exactly_once(tmp_path: Path) -> None:
    """Clients send with keys; kill -9 lands wherever it lands (some requests between
    the spool's fsync and their reply); after the restart every client resends every
    message it got no 202 for, with the same key, until it gets one. Each key is then
    delivered exactly once, under the queue id its 202s named."""
    key = add_key(tmp_path, "booking-app")
    sink = Sink().start()
    # Nothing is delivered before the restart: deliveries wait at DATA (a refusal
    # instead would defer them and, repeated, open the sink's circuit breaker,
    # which the restarted gateway remembers).
    sink.data_gate = threading.Event()
    config, port = node(tmp_path, sink.port, "")
    gw = GatewayProcess(config).start()
    answered: dict[str, set[str]] = {}
    try:
        wait_listening(port)
        api = ApiClient(port, key)

        async def one(seq: str) -> bool:
            try:
                reply = await api.send(booking(idempotency_key=seq, headers={"X-Seq": seq}))
            except (OSError, TimeoutError, aiohttp.ClientError):
                return False
            if reply.status != 202:
                return False
            answered.setdefault(seq, set()).add(reply.queue_id)
            return True

        async def client(n: int, stop: asyncio.Event) -> None:
            for i in range(PER_CLIENT):
                if stop.is_set():
                    return
                await one(f"c{n}-{i}")

        stop = asyncio.Event()
        tasks = [asyncio.create_task(client(n, stop)) for n in range(CLIENTS)]
        for _ in range(3000):  # bounded: until 60 messages are acknowledged
            if len(answered) >= 60:
                break
            await asyncio.sleep(0.005)
        await asyncio.to_thread(gw.kill9)
        stop.set()
        await asyncio.gather(*tasks)
        attempted = {f"c{n}-{i}" for n in range(CLIENTS) for i in range(PER_CLIENT)}
        gw = GatewayProcess(config).start()
        wait_listening(port)
        sink.data_gate.set()
        for seq in sorted(attempted):  # every message: the unanswered ones must land now
            for _ in range(20):
                if await one(seq):
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"{seq}: no 202 after the restart")
        await sink.await_for(len(attempted), timeout=120)
        await asyncio.sleep(1.0)
        counts = Counter(seq_of(m.data) for m in sink.messages)
        assert set(counts) == attempted
        assert [s for s, c in counts.items() if c != 1] == []
        assert [s for s, ids in answered.items() if len(ids) != 1] == []
    finally:
        gw.stop_hard()
        sink.stop()
