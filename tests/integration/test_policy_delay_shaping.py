"""`action: delay` shaping, observed at the sink: every message gets its 250, but at
most one a "3 s" slot reaches the guest; the injected clock moves time, nobody sleeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import EventType, QueueState
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import events_of_type, message, smtp_session, write_policy
from tests.fixtures.sink import Sink

SHAPING = """\
    limits:
      - name: guest-shaping
        key: [recipient]
        rate: 20/m
        burst: 1
        action: delay
    """


async def deferred_count(gw: object, n: int) -> int:
    files = gw.spool.files  # type: ignore[attr-defined]
    for _ in range(300):
        count = len(files.ids(QueueState.DEFERRED))
        if count >= n:
            return count
        await asyncio.sleep(0.01)
    return len(files.ids(QueueState.DEFERRED))


async def test_delay_holds_delivery_to_the_rate(tmp_path: Path) -> None:
    write_policy(tmp_path, "ratelimits.yaml", SHAPING)
    clock = ManualClock()
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port), clock) as gw:
            port = gw.ports["relay"]
            ids = []
            for n in range(3):
                result = await smtp_session(port, ["guest@example.net"],
                                            message(subject=f"Loop {n}"))
                assert result.data is not None and result.data[0] == 250
                ids.append(result.data[1].rsplit(" ", 1)[1])
            other = await smtp_session(port, ["other@example.net"])
            assert other.data is not None and other.data[0] == 250
            got = await sink.await_for(2)
            assert sorted(m.rcpt_tos[0] for m in got) == ["guest@example.net",
                                                          "other@example.net"]
            assert await deferred_count(gw, 2) == 2
            await asyncio.sleep(0.2)
            assert sink.count() == 2  # the other two wait for their slots
            (delayed,) = await events_of_type(gw, ids[1], EventType.DELAYED, 1)
            assert delayed.detail == (f"rule=limit:guest-shaping not_before={clock.now() + 3:.3f}"
                                      " category=transactional")
            assert await events_of_type(gw, ids[0], EventType.DELAYED, 0) == []
            clock.advance(3.0)
            got = await sink.await_for(3)
            assert b"Subject: Loop 1" in got[2].data
            await asyncio.sleep(0.2)
            assert sink.count() == 3
            clock.advance(3.0)
            got = await sink.await_for(4)
            assert b"Subject: Loop 2" in got[3].data
            # The sink counts the message before our client has read its 250: wait for
            # the delivery to be filed.
            await events_of_type(gw, ids[2], EventType.DELIVERED, 1)
            kinds = [e.type for e in await gw.state.events.by_queue_id(ids[2])]
            assert kinds == [EventType.DELAYED, EventType.ACCEPTED, EventType.DELIVERED] or \
                kinds == [EventType.ACCEPTED, EventType.DELAYED, EventType.DELIVERED]
    finally:
        sink.stop()


async def test_a_held_message_stays_held_across_a_restart(tmp_path: Path) -> None:
    write_policy(tmp_path, "ratelimits.yaml", SHAPING)
    clock = ManualClock()
    sink = Sink().start()
    config = write_config(tmp_path, sink.port)
    try:
        async with running_gateway(config, clock) as gw:
            for n in range(2):
                result = await smtp_session(gw.ports["relay"], ["guest@example.net"],
                                            message(subject=f"Loop {n}"))
                assert result.data is not None and result.data[0] == 250
            await sink.await_for(1)
            assert await deferred_count(gw, 1) == 1
        (gw.config.data_dir / "spool" / "queue.db").unlink()  # even the index is rebuilt
        async with running_gateway(config, clock) as gw:
            await asyncio.sleep(0.3)
            assert sink.count() == 1  # the queue file's not_before still holds it
            clock.advance(3.0)
            got = await sink.await_for(2)
            assert b"Subject: Loop 1" in got[1].data
            # The limiter state survived too: the next one waits its turn.
            result = await smtp_session(gw.ports["relay"], ["guest@example.net"],
                                        message(subject="Loop 2"))
            assert result.data is not None and result.data[0] == 250
            assert await deferred_count(gw, 1) == 1
    finally:
        sink.stop()
