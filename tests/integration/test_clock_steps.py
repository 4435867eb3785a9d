"""The wall clock steps back an hour, then forward a day, with the whole gateway running
on a ManualClock: deferred mail is delivered once, new mail is not held up, nothing is
lost or stuck (counted at the sink and in the events)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import EventType, QueueState
from gateway.supervisor import Gateway
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Sink
from tests.integration.test_relay_end_to_end import MESSAGE, send


async def state_of(gw: Gateway, queue_id: str, want: QueueState | None) -> None:
    for _ in range(300):
        if gw.spool.files.find(queue_id) is want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{queue_id} is {gw.spool.files.find(queue_id)}, not {want}")


async def test_clock_stepped_back_then_forward(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies["later@example.net"] = "451 4.3.0 Try again later"
    sink.replies["later2@example.net"] = "451 4.3.0 Try again later"
    clock = ManualClock()
    try:
        async with running_gateway(write_config(tmp_path, sink.port), clock) as gw:
            port = gw.ports["relay"]
            deferred = await send(port, ["later@example.net"])
            await state_of(gw, deferred, QueueState.DEFERRED)

            clock.advance(-3600)  # NTP steps the clock back an hour
            del sink.replies["later@example.net"]
            # New mail goes out at once, stepped clock or not ...
            fresh = await send(port, ["fresh@example.net"],
                               MESSAGE.replace("booking-42", "fresh"))
            await sink.await_for(1)
            # ... and mail deferred now is due by the stepped clock.
            second = await send(port, ["later2@example.net"],
                                MESSAGE.replace("booking-42", "second"))
            await state_of(gw, second, QueueState.DEFERRED)
            del sink.replies["later2@example.net"]
            clock.advance(2.5)  # the retry delays of write_config: 1 s, then 2 s
            await sink.await_for(2)
            # The first one was due an hour "later": it waits, it is not lost.
            assert gw.spool.files.find(deferred) is QueueState.DEFERRED

            clock.advance(86400)  # then a day forward in one step
            got = await sink.await_for(3)
            await state_of(gw, deferred, None)
            await asyncio.sleep(0.2)
            assert sink.count() == 3
            assert sorted(r for m in got for r in m.rcpt_tos) == [
                "fresh@example.net", "later2@example.net", "later@example.net"]
            for queue_id in (deferred, fresh, second):
                types = [e.type for e in await gw.state.events.by_queue_id(queue_id)]
                assert types.count(EventType.DELIVERED) == 1, (queue_id, types)
                assert EventType.EXPIRED not in types
            assert gw.scheduler.active_count == 0 and not gw.spool.files.ids(
                QueueState.DEFERRED)
    finally:
        sink.stop()
