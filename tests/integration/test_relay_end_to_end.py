"""A message's whole trip: smtplib → gateway (in-process) → the test sink, with events."""

from __future__ import annotations

import asyncio
import re
import smtplib
import sqlite3
from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import EventType, QueueState
from gateway.scheduler.journal import decode_events
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Sink

MESSAGE = (
    "From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
    "Subject: Your booking\r\nMessage-ID: <booking-42@example.com>\r\n\r\nSee you soon.\r\n"
)


def smtp_send(port: int, rcpts: list[str], msg: str = MESSAGE) -> str:
    """Send over a real socket; return the queue id from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.test")
        s.mail("app@example.com")
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250
        code, text = s.data(msg.encode())
        assert code == 250, text
        m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-Z]+)", text)
        assert m, text
        return m.group(1).decode()


async def send(port: int, rcpts: list[str], msg: str = MESSAGE) -> str:
    return await asyncio.to_thread(smtp_send, port, rcpts, msg)


async def test_relayed_with_trace_headers_and_events(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            queue_id = await send(gw.ports["relay"], ["guest@example.net"])
            (got,) = await sink.await_for(1)
            assert got.mail_from == "app@example.com"
            assert got.rcpt_tos == ["guest@example.net"]
            head, _, body = got.data.partition(b"\r\n\r\n")
            assert head.startswith(b"Received: from app.test")
            assert f"id {queue_id}".encode() in head
            assert b"Message-ID: <booking-42@example.com>" in head
            assert body == b"See you soon.\r\n"
            for _ in range(100):
                events = await gw.state.events.by_queue_id(queue_id)
                if len(events) == 2:
                    break
                await asyncio.sleep(0.02)
            assert [e.type for e in events] == [EventType.ACCEPTED, EventType.DELIVERED]
            delivered = events[1]
            assert (delivered.route, delivered.host) == ("sink", "sink")
            assert delivered.reply is not None and delivered.reply.code == 250
            by_mid = await gw.state.events.by_message_id("<booking-42@example.com>")
            assert [e.queue_id for e in by_mid] == [queue_id, queue_id]
            assert gw.spool.files.find(queue_id) is None
    finally:
        sink.stop()


async def test_each_recipient_gets_its_own_outcome_and_retry(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies["gone@example.net"] = "550 5.1.1 No such user"
    sink.replies["full@example.net"] = "452 4.2.2 Mailbox full"
    clock = ManualClock()
    try:
        async with running_gateway(write_config(tmp_path, sink.port), clock) as gw:
            rcpts = ["ok@example.net", "gone@example.net", "full@example.net"]
            queue_id = await send(gw.ports["relay"], rcpts)
            await sink.await_for(1)
            for _ in range(200):
                if gw.spool.files.find(queue_id) is QueueState.DEFERRED:
                    break
                await asyncio.sleep(0.01)
            assert gw.spool.files.find(queue_id) is QueueState.DEFERRED
            states = {r.address: r.state.value for r in await gw.spool.index.recipients(queue_id)}
            assert states == {"ok@example.net": "delivered", "gone@example.net": "bounced",
                              "full@example.net": "deferred"}
            del sink.replies["full@example.net"]
            clock.advance(1.0)  # the test config's first retry delay
            got = await sink.await_for(2)
            assert got[1].rcpt_tos == ["full@example.net"]
            events = await gw.state.events.by_queue_id(queue_id)
            kinds = [(e.type.value, e.recipient) for e in events if e.type != EventType.ACCEPTED]
            assert kinds == [("delivered", "ok@example.net"), ("bounced", "gone@example.net"),
                             ("deferred", "full@example.net"), ("delivered", "full@example.net")]
            bounced = events[4]
            assert bounced.reply is not None and str(bounced.reply) == "550 5.1.1 No such user"
    finally:
        sink.stop()


async def test_final_events_are_on_disk_before_the_queue_file_goes(tmp_path: Path) -> None:
    # After the queue file is removed, the stored events are all that is left of a
    # message (traces, webhooks): a kill -9 right then must not lose "delivered".
    sink = Sink().start()
    seen: dict[str, list[str]] = {}
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            files = gw.spool.files
            real_remove = files.remove

            def remove_and_look(queue_id: str, state: QueueState) -> bool:
                # Stored, or in the delivery journal (replayed into the store after a
                # crash): either way on disk before the file goes.
                with sqlite3.connect(gw.config.state_path) as db:  # another reader
                    seen[queue_id] = [t for (t,) in db.execute(
                        "SELECT type FROM events WHERE queue_id = ?", (queue_id,))]
                journal = gw.spool.root / "journal"
                seen[queue_id] += [e.type.value for p in journal.glob("*.jsonl")
                                   for e in decode_events(p.read_bytes())
                                   if e.queue_id == queue_id]
                return real_remove(queue_id, state)

            files.remove = remove_and_look  # type: ignore[method-assign]
            ids = [await send(gw.ports["relay"], [f"guest{i}@example.net"]) for i in range(10)]
            await sink.await_for(10)
            for _ in range(200):
                if len(seen) == 10:
                    break
                await asyncio.sleep(0.01)
    finally:
        sink.stop()
    assert sorted(seen) == sorted(ids)
    assert all(EventType.DELIVERED.value in types for types in seen.values()), seen
