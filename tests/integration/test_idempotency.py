"""A resent message gets its original queue id and is delivered once: real SMTP in,
the test sink out, the keys in idempotency.db (in-process and with intake workers)."""

from __future__ import annotations

import asyncio
import re
import smtplib
import sqlite3
import threading
from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import EventType
from tests.fixtures.gateway import GatewayProcess, running_gateway, write_config
from tests.fixtures.sink import Sink
from tests.integration.test_relay_end_to_end import MESSAGE


def submit(port: int, msg: str = MESSAGE, rcpts: tuple[str, ...] = ("guest@example.net",),
           source: str = "127.0.0.1", barrier: threading.Barrier | None = None
           ) -> tuple[int, str]:
    """One SMTP transaction; (code, queue id or reply text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(source, 0)) as s:
        s.ehlo("app.test")
        s.mail("app@example.com")
        for r in rcpts:
            assert s.rcpt(r)[0] == 250
        if barrier is not None:
            barrier.wait(10)  # both sessions send DATA together
        code, text = s.data(msg.encode())
    m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-Z]+)", text)
    return code, m.group(1).decode() if m else text.decode()


async def asubmit(port: int, msg: str = MESSAGE, **kw: object) -> tuple[int, str]:
    return await asyncio.to_thread(submit, port, msg, **kw)  # type: ignore[arg-type]


async def until_events(gw: object, queue_id: str, kind: EventType, n: int) -> list[EventType]:
    for _ in range(200):
        types = [e.type for e in await gw.state.events.by_queue_id(queue_id)]  # type: ignore[attr-defined]
        if types.count(kind) >= n:
            return types
        await asyncio.sleep(0.02)
    raise AssertionError(f"{queue_id}: {types}")


async def test_resend_gets_the_original_queue_id_and_is_not_delivered_again(tmp_path: Path
                                                                            ) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            code, first = await asubmit(port)
            assert code == 250
            await sink.await_for(1)
            assert await asubmit(port) == (250, first)  # the app resends after a timeout
            types = await until_events(gw, first, EventType.DUPLICATE, 1)
            assert types.count(EventType.DELIVERED) == 1
            # Another client (another IP) with the same Message-ID is not a resend ...
            code, other = await asubmit(port, source="127.0.0.2")
            # ... nor the same Message-ID to another recipient (apps that split by recipient).
            code2, third = await asubmit(port, rcpts=("other@example.net",))
            assert code == code2 == 250 and len({first, other, third}) == 3
            await sink.await_for(3)
            await asyncio.sleep(0.2)
            assert sink.count() == 3
    finally:
        sink.stop()


async def test_idempotency_key_header_wins_over_message_id(tmp_path: Path) -> None:
    sink = Sink().start()
    keyed = MESSAGE.replace("Subject:", "Idempotency-Key: order-77-confirmation\r\nSubject:")
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            _, first = await asubmit(port, keyed)
            # A resend that got a fresh Message-ID (the app rebuilt the message) ...
            rebuilt = keyed.replace("<booking-42@", "<booking-42-retry@")
            # ... to a different recipient list even: the app said what a resend is.
            assert await asubmit(port, rebuilt, rcpts=("x@example.net",)) == (250, first)
            await sink.await_for(1)
            await asyncio.sleep(0.2)
            assert sink.count() == 1
    finally:
        sink.stop()


async def test_keys_survive_a_restart_and_expire_after_the_window(tmp_path: Path) -> None:
    sink = Sink().start()
    clock = ManualClock()
    config = write_config(tmp_path, sink.port, extra="idempotency:\n  window: 1h\n")
    try:
        async with running_gateway(config, clock) as gw:
            code, first = await asubmit(gw.ports["relay"])
            await sink.await_for(1)
        async with running_gateway(config, clock) as gw:  # a restart: new process state
            assert await asubmit(gw.ports["relay"]) == (250, first)
            clock.advance(3601)  # past the window: a new message
            code, again = await asubmit(gw.ports["relay"])
            assert code == 250 and again != first
            await sink.await_for(2)
        con = sqlite3.connect(tmp_path / "var" / "idempotency.db")
        assert con.execute("SELECT queue_id FROM idempotency_keys").fetchall() == [(again,)]
        con.close()
    finally:
        sink.stop()


async def test_racing_identical_submissions_are_delivered_once(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.data_delay = 0.01
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            for i in range(5):
                msg = MESSAGE.replace("booking-42", f"race-{i}")
                barrier = threading.Barrier(2)
                a, b = await asyncio.gather(asubmit(port, msg, barrier=barrier),
                                            asubmit(port, msg, barrier=barrier))
                assert a[0] == b[0] == 250 and a[1] == b[1], (a, b)
            await sink.await_for(5)
            await asyncio.sleep(0.3)
            assert sink.count() == 5
    finally:
        sink.stop()


def test_racing_submissions_in_two_intake_processes_are_delivered_once(tmp_path: Path
                                                                       ) -> None:
    sink = Sink().start()
    gw = GatewayProcess(write_config(tmp_path, sink.port, extra="intake_workers: 2\n")).start()
    try:
        replies: list[tuple[int, str]] = []
        for i in range(10):
            msg = MESSAGE.replace("booking-42", f"race-{i}")
            barrier = threading.Barrier(2)
            out: list[tuple[int, str]] = []

            def one(msg: str = msg, barrier: threading.Barrier = barrier,
                    out: list[tuple[int, str]] = out) -> None:
                out.append(submit(gw.port, msg, barrier=barrier))
            threads = [threading.Thread(target=one) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert len(out) == 2 and out[0] == out[1] and out[0][0] == 250, out
            replies.extend(out)
        sink.wait_for(10)
        gw.signal(15)
        assert gw.wait() == 0
        assert sink.count() == 10, gw.output()
        assert "duplicate from ip:127.0.0.1" in gw.output()
    finally:
        gw.stop_hard()
        sink.stop()
