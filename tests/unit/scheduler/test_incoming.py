"""The incoming queue: what an intake worker reports is placed without reading its file
and marked fresh (its delivery asks the index nothing); a full lane still parks it."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import ManualClock
from gateway.intake.processes import _priority
from gateway.model import Client, Envelope, Priority, QueueState
from gateway.scheduler.incoming import IncomingQueue
from gateway.spool import Spool


def _envelope(clock: ManualClock, priority: Priority) -> Envelope:
    return Envelope("a@example.com", ("b@example.net",), Client("relay", "127.0.0.1"),
                    clock.now(), priority=priority)


async def test_a_worker_s_message_is_placed_by_its_priority_without_reading_it(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool", ManualClock(), fsync=False)
    await spool.open()
    incoming = IncomingQueue(spool, limit=10)
    assert await incoming.take(Priority.HIGH, 5, set()) == []  # nothing parked from before
    # No such file: placing it must not read one (the worker said all it takes).
    assert incoming.add_fresh("01JD5Q8W3K7H2M9XQ4RTAAAAAA", Priority.HIGH)
    assert await incoming.take(Priority.HIGH, 5, set()) == [("01JD5Q8W3K7H2M9XQ4RTAAAAAA", True)]
    await spool.close()


async def test_a_full_lane_parks_a_worker_s_message_from_its_file(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "spool", clock, fsync=False)
    await spool.open()
    incoming = IncomingQueue(spool, limit=1)
    assert await incoming.take(Priority.LOW, 5, set()) == []  # nothing parked from before
    first = await spool.put(_envelope(clock, Priority.LOW), b"Subject: 1\r\n\r\nx\r\n")
    second = await spool.put(_envelope(clock, Priority.LOW), b"Subject: 2\r\n\r\nx\r\n")
    assert incoming.add_fresh(first.id, Priority.LOW)
    assert incoming.add_fresh(second.id, Priority.LOW)  # lane full: parked in the index
    assert await spool.index.ids_in_state(QueueState.INCOMING) == {second.id}
    taken = await incoming.take(Priority.LOW, 5, set())
    assert taken == [(first.id, True), (second.id, False)]  # parked mail is indexed
    await spool.close()


async def test_found_by_a_scan_is_not_fresh(tmp_path: Path) -> None:
    clock = ManualClock()
    spool = Spool(tmp_path / "spool", clock, fsync=False)
    await spool.open()
    incoming = IncomingQueue(spool, limit=10)
    left = await spool.put(_envelope(clock, Priority.NORMAL), b"Subject: 1\r\n\r\nx\r\n")
    await incoming.scan(set())  # e.g. a crash's leftover: may have recipients done
    assert await incoming.take(Priority.NORMAL, 5, set()) == [(left.id, False)]
    await spool.close()


def test_the_worker_line_s_priority() -> None:
    assert _priority("critical") is Priority.CRITICAL
    assert _priority("") is None  # an id alone: the master reads the file
    assert _priority("urgent") is None
