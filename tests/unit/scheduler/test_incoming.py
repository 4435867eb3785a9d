"""The incoming queue: what an intake worker reports is placed without reading its file
and marked fresh (its delivery asks the index nothing); a full lane still parks it."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import ManualClock
from gateway.intake.processes import _priority
from gateway.model import Client, Envelope, Priority, QueueId, QueueState
from gateway.scheduler.incoming import IncomingQueue
from gateway.spool import Spool


class _Queue:
    """A spool and its incoming queue, nothing parked from before (the first round)."""

    def __init__(self, tmp: Path, limit: int) -> None:
        self.clock = ManualClock()
        self.spool = Spool(tmp / "spool", self.clock, fsync=False)
        self.incoming = IncomingQueue(self.spool, limit)

    async def __aenter__(self) -> _Queue:
        await self.spool.open()
        for priority in Priority:
            assert await self.incoming.take(priority, 5, set()) == []
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.spool.close()

    async def put(self, priority: Priority) -> QueueId:
        envelope = Envelope("a@example.com", ("b@example.net",), Client("relay", "127.0.0.1"),
                            self.clock.now(), priority=priority)
        return (await self.spool.put(envelope, b"Subject: x\r\n\r\nx\r\n")).id


async def test_a_worker_s_message_is_placed_by_its_priority_without_reading_it(
    tmp_path: Path,
) -> None:
    async with _Queue(tmp_path, limit=10) as q:
        # No such file: placing it must not read one (the worker said all it takes).
        assert q.incoming.add_fresh("01JD5Q8W3K7H2M9XQ4RTAAAAAA", Priority.HIGH)
        assert await q.incoming.take(Priority.HIGH, 5, set()) == [
            ("01JD5Q8W3K7H2M9XQ4RTAAAAAA", True)]


async def test_a_full_lane_parks_a_worker_s_message_from_its_file(tmp_path: Path) -> None:
    async with _Queue(tmp_path, limit=1) as q:
        first, second = await q.put(Priority.LOW), await q.put(Priority.LOW)
        assert q.incoming.add_fresh(first, Priority.LOW)
        assert q.incoming.add_fresh(second, Priority.LOW)  # lane full: parked in the index
        assert await q.spool.index.ids_in_state(QueueState.INCOMING) == {second}
        taken = await q.incoming.take(Priority.LOW, 5, set())
        assert taken == [(first, True), (second, False)]  # parked mail is indexed


async def test_found_by_a_scan_is_not_fresh(tmp_path: Path) -> None:
    async with _Queue(tmp_path, limit=10) as q:
        left = await q.put(Priority.NORMAL)
        await q.incoming.scan(set())  # e.g. a crash's leftover: may have recipients done
        assert await q.incoming.take(Priority.NORMAL, 5, set()) == [(left, False)]


def test_the_worker_line_s_priority() -> None:
    assert _priority("critical") is Priority.CRITICAL
    assert _priority("") is None  # an id alone: the master reads the file
    assert _priority("urgent") is None
