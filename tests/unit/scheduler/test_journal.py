"""The delivery journal (gateway/scheduler/journal.py): final events survive a crash
between the queue file's removal and the event store's flush, are replayed once at the
next start, and segments go once the event store has their events."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gateway.clock import ManualClock
from gateway.delivery.settings import DeliveryConfig
from gateway.model import (
    Attempt,
    DeliveryJob,
    Event,
    EventType,
    QueuedMessage,
    Reply,
    Route,
)
from gateway.scheduler.journal import DeliveryJournal, decode_events, encode_events
from gateway.scheduler.qmgr import Scheduler
from gateway.spool import Spool
from gateway.state.events import SqliteEventStore

DELIVERED = Event(1_700_000_000.125, "01JD5Q8W3K7H2M9XQ4RT", EventType.DELIVERED,
                  "gäst@example.net", "<b-42@example.com>", "sink", "mx.example.net",
                  Reply(250, "2.0.0", "Ok: queued as ABC"), None)
BOUNCED = Event(1_700_000_001.5, "01JD5Q8W3K7H2M9XQ4RU", EventType.BOUNCED,
                "nobody@example.net", None, "sink", None, Reply(550, "5.1.1", "no such user"),
                "attempt 1")


class NoDelivery:
    async def deliver(self, job: DeliveryJob, content: bytes) -> Attempt:
        raise AssertionError("nothing is queued in these tests")


class NoRoute:
    def split(self, message: QueuedMessage, recipients: Sequence[str]
              ) -> list[tuple[Route, str, tuple[str, ...]]]:
        return []


def test_events_round_trip_through_a_journal_line() -> None:
    data = encode_events([DELIVERED, BOUNCED])
    assert data.count(b"\n") == 2
    assert decode_events(data) == [DELIVERED, BOUNCED]
    # A line cut short by a crash is skipped, the others kept.
    assert decode_events(data + b'[1.0,"01JD5Q8W3K') == [DELIVERED, BOUNCED]


async def test_a_crash_left_journal_is_replayed_once_then_removed(tmp_path: Path) -> None:
    events = SqliteEventStore(tmp_path / "state.db")
    await events.open()
    events.record([DELIVERED])  # this one reached the event store before the crash
    await events.flush()
    left = DeliveryJournal(tmp_path / "spool" / "journal")
    left.open()
    left.append([DELIVERED, BOUNCED])  # then the process died: no cut, no drop
    clock = ManualClock()
    spool = Spool(tmp_path / "spool", clock)
    await spool.open()
    scheduler = Scheduler(spool, NoDelivery(), NoRoute(), events, clock,
                          DeliveryConfig(helo_name="gw.test"))
    scheduler.start()
    try:
        for _ in range(500):  # bounded: the replay runs first in the scheduler's loop
            if not list((tmp_path / "spool" / "journal").glob("0*.jsonl"))[1:]:
                break
            await asyncio.sleep(0.01)
        stored = await events.by_queue_id(DELIVERED.queue_id)
        stored += await events.by_queue_id(BOUNCED.queue_id)
        assert stored == [DELIVERED, BOUNCED]  # each once
        segments = sorted(p.name for p in (tmp_path / "spool" / "journal").iterdir())
        current = scheduler.journal._current
        assert current is not None and segments == [current.name]
    finally:
        await scheduler.stop(1)
        await spool.close()
        await events.close()
    assert list((tmp_path / "spool" / "journal").iterdir()) == []  # nothing left to replay


async def test_segments_go_once_the_event_store_has_their_events(tmp_path: Path) -> None:
    events = SqliteEventStore(tmp_path / "state.db")
    await events.open()
    clock = ManualClock()
    spool = Spool(tmp_path / "spool", clock)
    await spool.open()
    scheduler = Scheduler(spool, NoDelivery(), NoRoute(), events, clock,
                          DeliveryConfig(helo_name="gw.test"))
    scheduler.start()
    try:
        for _ in range(10):
            await asyncio.sleep(0)  # the keeper is asleep on the clock
        events.record([DELIVERED])
        scheduler.journal.append([DELIVERED])
        journal = tmp_path / "spool" / "journal"
        assert [p.read_bytes() for p in journal.iterdir()] == [encode_events([DELIVERED])]
        clock.advance(1.0)  # the keeper's turn: cut, flush, drop
        for _ in range(500):
            if [p.read_bytes() for p in journal.iterdir()] == [b""]:
                break
            await asyncio.sleep(0.01)
        assert [p.read_bytes() for p in journal.iterdir()] == [b""]  # the new, empty one
        assert await events.by_queue_id(DELIVERED.queue_id) == [DELIVERED]
    finally:
        await scheduler.stop(1)
        await spool.close()
        await events.close()
