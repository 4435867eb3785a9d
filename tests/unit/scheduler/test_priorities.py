"""Priority lanes: the gate's order and shares, and the queue manager serving critical
mail first — new and deferred — with time from a ManualClock and a scripted deliverer
(the real wire is tests/integration/test_priority_backlog.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import ManualClock
from gateway.delivery.settings import DeliveryConfig
from gateway.model import (
    Attempt,
    Client,
    DeliveryJob,
    Envelope,
    Priority,
    QueuedMessage,
    QueueState,
    RecipientResult,
    RetrySchedule,
    Route,
)
from gateway.scheduler.lanes import PriorityGate, RateBucket
from gateway.scheduler.qmgr import Scheduler
from gateway.scheduler.settings import DEFAULT_LANES, Lane
from gateway.spool import Spool
from gateway.state.events import SqliteEventStore
from tests.unit.scheduler.test_qmgr import LATER, OK, OneRoute

LOW, CRITICAL, NORMAL = Priority.LOW, Priority.CRITICAL, Priority.NORMAL


async def test_gate_serves_waiters_highest_priority_first() -> None:
    gate = PriorityGate(1, DEFAULT_LANES)
    await gate.acquire(LOW)
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        async with gate.slot(priority):
            order.append(name)

    tasks = [asyncio.create_task(take(f"low{i}", LOW)) for i in range(3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("normal", NORMAL)))
    tasks.append(asyncio.create_task(take("critical", CRITICAL)))
    await asyncio.sleep(0)
    gate.release(LOW)
    await asyncio.gather(*tasks)
    assert order == ["critical", "normal", "low0", "low1", "low2"]


async def test_gate_keeps_a_share_free_for_higher_priorities() -> None:
    gate = PriorityGate(10, DEFAULT_LANES)  # low may hold 60%: 6 of 10
    for _ in range(6):
        await gate.acquire(LOW)
    blocked = asyncio.create_task(gate.acquire(LOW))
    await asyncio.sleep(0)
    assert not blocked.done() and gate.held(LOW) == 6
    await asyncio.wait_for(gate.acquire(CRITICAL), 1)  # at once, with low waiting
    gate.release(LOW)
    await asyncio.wait_for(blocked, 1)
    assert gate.held(LOW) == 6 and gate.held(CRITICAL) == 1


async def test_cancelled_waiter_gives_its_slot_back() -> None:
    gate = PriorityGate(1, DEFAULT_LANES)
    await gate.acquire(NORMAL)
    waiter = asyncio.create_task(gate.acquire(NORMAL))
    await asyncio.sleep(0)
    waiter.cancel()
    gate.release(NORMAL)
    await asyncio.sleep(0)
    await asyncio.wait_for(gate.acquire(LOW), 1)
    assert gate.held(NORMAL) == 0


async def test_rate_bucket_follows_the_clock_and_survives_a_step_back() -> None:
    clock = ManualClock()
    bucket = RateBucket(2.0, clock)  # 2/s, bursts of 2
    await bucket.take()
    await bucket.take()
    clock.advance(-3600)  # stepped back: neither refilled nor owed an hour
    third = asyncio.create_task(bucket.take())
    await asyncio.sleep(0.01)
    assert not third.done()
    clock.advance(0.25)
    await asyncio.sleep(0.01)
    assert not third.done()
    clock.advance(0.25)  # half a second at 2/s: one token
    await asyncio.wait_for(third, 1)


class GatedDelivery:
    """Each attempt waits until the test opens the gate: deliveries stay in flight."""

    def __init__(self, clock: ManualClock, first: dict[str, object]) -> None:
        self.clock = clock
        self.first = first  # recipient → reply of its first attempt (later ones: OK)
        self.calls: list[tuple[str, int]] = []  # (recipient, attempt)
        self.open = asyncio.Event()
        self.open.set()

    async def deliver(self, job: DeliveryJob, content: bytes) -> Attempt:
        self.calls.append((job.recipients[0], job.attempt))
        await self.open.wait()
        reply = self.first.get(job.recipients[0], OK) if job.attempt == 1 else OK
        results = tuple(RecipientResult(r, reply) for r in job.recipients)  # type: ignore[arg-type]
        return Attempt(job.route.name, "mx", results, self.clock.now(), self.clock.now())


class Lanes:
    def __init__(self, tmp: Path, first: dict[str, object], concurrency: int,
                 lanes: dict[Priority, Lane] | None = None, max_active: int = 20000) -> None:
        self.clock = ManualClock()
        self.spool = Spool(tmp / "spool", self.clock, fsync=False)
        self.events = SqliteEventStore(tmp / "state.db")
        self.delivery = GatedDelivery(self.clock, first)
        route = Route("default", "mx", retry=RetrySchedule(delays=(60.0,), repeat=60.0),
                      max_connections_per_destination=100)
        config = DeliveryConfig(helo_name="gw.test", max_concurrency=concurrency,
                                max_active=max_active,
                                priority_lanes=lanes or dict(DEFAULT_LANES))
        self.scheduler = Scheduler(self.spool, self.delivery, OneRoute(route), self.events,
                                   self.clock, config)

    async def __aenter__(self) -> Lanes:
        await self.events.open()
        await self.spool.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.delivery.open.set()
        await self.scheduler.stop(5)
        await self.spool.close()
        await self.events.close()

    async def put(self, rcpt: str, priority: Priority) -> QueuedMessage:
        env = Envelope("app@example.com", (rcpt,), Client("relay", "127.0.0.1"),
                       self.clock.now(), category=priority.label, priority=priority)
        return await self.spool.put(env, b"Subject: t\r\n\r\nhi\r\n")

    async def until(self, predicate: object) -> None:
        for _ in range(1000):
            if predicate():  # type: ignore[operator]
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"not reached; calls={self.delivery.calls}")


async def test_new_critical_mail_is_taken_before_low_mail_queued_earlier(tmp_path: Path
                                                                         ) -> None:
    async with Lanes(tmp_path, {}, concurrency=1) as h:
        lows = [await h.put(f"low{i}@example.net", LOW) for i in range(5)]
        critical = await h.put("crit@example.net", CRITICAL)
        for qm in [*lows, critical]:
            h.scheduler.notify(qm)
        h.scheduler.start()
        await h.until(lambda: len(h.delivery.calls) == 6 and h.scheduler.active_count == 0)
        assert h.delivery.calls[0] == ("crit@example.net", 1)


async def test_deferred_critical_mail_is_retried_before_earlier_due_low_mail(tmp_path: Path
                                                                             ) -> None:
    first: dict[str, object] = {f"low{i}@example.net": LATER for i in range(5)}
    first["crit@example.net"] = LATER
    async with Lanes(tmp_path, first, concurrency=1) as h:
        h.scheduler.start()
        for i in range(5):
            h.scheduler.notify(await h.put(f"low{i}@example.net", LOW))
            await h.until(lambda: h.scheduler.active_count == 0)
            h.clock.advance(1)  # each low one falls due a second before the next
        critical = await h.put("crit@example.net", CRITICAL)
        h.scheduler.notify(critical)
        await h.until(lambda: len(h.delivery.calls) == 6 and h.scheduler.active_count == 0)
        await h.spool.index.flush()
        assert h.spool.files.find(critical.id) is QueueState.DEFERRED
        h.clock.advance(120)  # everything is due; the low mail has been due longest
        await h.until(lambda: len(h.delivery.calls) == 12 and h.scheduler.active_count == 0)
        retries = [rcpt for rcpt, attempt in h.delivery.calls if attempt == 2]
        assert retries[0] == "crit@example.net", retries
        assert retries[1:] == [f"low{i}@example.net" for i in range(5)]


async def test_critical_gets_a_session_while_low_mail_holds_its_whole_share(tmp_path: Path
                                                                            ) -> None:
    async with Lanes(tmp_path, {}, concurrency=4) as h:  # low: 60% of 4 = 2 sessions
        h.delivery.open.clear()
        h.scheduler.start()
        for i in range(20):
            h.scheduler.notify(await h.put(f"low{i}@example.net", LOW))
        await h.until(lambda: len(h.delivery.calls) == 2)
        await asyncio.sleep(0.05)
        assert len(h.delivery.calls) == 2  # the rest of the backlog waits for low's share
        h.scheduler.notify(await h.put("crit@example.net", CRITICAL))
        await h.until(lambda: len(h.delivery.calls) == 3)
        assert h.delivery.calls[2] == ("crit@example.net", 1)
        h.delivery.open.set()
        await h.until(lambda: len(h.delivery.calls) == 21 and h.scheduler.active_count == 0)


async def test_without_lanes_the_same_backlog_makes_critical_mail_wait(tmp_path: Path) -> None:
    """The control for the test above: every lane at 100% behaves like one FIFO queue."""
    flat = {p: Lane(1.0) for p in Priority}
    async with Lanes(tmp_path, {}, concurrency=4, lanes=flat) as h:
        h.delivery.open.clear()
        h.scheduler.start()
        for i in range(20):
            h.scheduler.notify(await h.put(f"low{i}@example.net", LOW))
        await h.until(lambda: len(h.delivery.calls) == 4)
        h.scheduler.notify(await h.put("crit@example.net", CRITICAL))
        await asyncio.sleep(0.05)
        assert len(h.delivery.calls) == 4  # all sessions taken by low mail
        h.delivery.open.set()
        await h.until(lambda: len(h.delivery.calls) == 21 and h.scheduler.active_count == 0)
        # It still overtakes the low mail waiting (the gate serves by priority) ...
        assert [c[0] for c in h.delivery.calls].index("crit@example.net") == 4


async def test_priority_and_category_survive_in_the_queue_file_and_index(tmp_path: Path
                                                                         ) -> None:
    async with Lanes(tmp_path, {"crit@example.net": LATER}, concurrency=2) as h:
        qm = await h.put("crit@example.net", CRITICAL)
        assert h.spool.files.read_header(qm.id, QueueState.INCOMING).envelope.priority is CRITICAL
        h.scheduler.start()
        h.scheduler.notify(qm)
        await h.until(lambda: h.scheduler.active_count == 0 and h.delivery.calls)
        await h.spool.index.flush()
        row = await h.spool.index.message(qm.id)
        assert row is not None and row.priority is CRITICAL
        header = h.spool.files.read_header(qm.id, QueueState.DEFERRED)
        assert (header.envelope.category, header.envelope.priority) == ("critical", CRITICAL)


async def test_a_full_lane_parks_mail_in_the_index_and_loses_none(tmp_path: Path) -> None:
    """max_active 4: each lane holds 4 in memory; the rest are parked, in order."""
    async with Lanes(tmp_path, {}, concurrency=2, max_active=4) as h:
        h.delivery.open.clear()
        h.scheduler.start()
        for i in range(30):
            h.scheduler.notify(await h.put(f"low{i:02}@example.net", LOW))
            h.clock.advance(0.001)  # distinct arrival times: FIFO is by arrival
        await h.until(lambda: len(h.delivery.calls) == 1)
        await h.spool.index.flush()
        parked = await h.spool.index.ids_in_state(QueueState.INCOMING)
        assert len(parked) >= 20
        h.scheduler.notify(await h.put("crit@example.net", CRITICAL))
        await h.until(lambda: ("crit@example.net", 1) in h.delivery.calls)
        h.delivery.open.set()
        await h.until(lambda: len(h.delivery.calls) == 31 and h.scheduler.active_count == 0)
        lows = [c[0] for c in h.delivery.calls if c[0].startswith("low")]
        assert lows == [f"low{i:02}@example.net" for i in range(30)]  # FIFO within a lane
        await h.spool.index.flush()
        assert await h.spool.index.ids_in_state(QueueState.INCOMING) == set()
        assert not h.spool.files.ids(QueueState.INCOMING)


async def test_parked_mail_is_found_after_a_restart(tmp_path: Path) -> None:
    async with Lanes(tmp_path, {}, concurrency=1, max_active=2) as h:
        h.delivery.open.clear()
        h.scheduler.start()
        for i in range(10):
            h.scheduler.notify(await h.put(f"low{i}@example.net", LOW))
        await h.until(lambda: len(h.delivery.calls) == 1)
        await h.scheduler.stop(0)  # interrupted: one in active/, the rest waiting
    async with Lanes(tmp_path, {}, concurrency=4) as h2:
        h2.scheduler.start()
        await h2.until(lambda: len(h2.delivery.calls) == 10 and h2.scheduler.active_count == 0)
        assert sorted(c[0] for c in h2.delivery.calls) == sorted(
            f"low{i}@example.net" for i in range(10))


async def test_idle_destination_gates_are_dropped(tmp_path: Path) -> None:
    async with Lanes(tmp_path, {}, concurrency=4) as h:
        h.scheduler.start()
        for i in range(5):
            h.scheduler.notify(await h.put(f"r{i}@example.net", NORMAL))
        await h.until(lambda: len(h.delivery.calls) == 5 and h.scheduler.active_count == 0)
        assert h.scheduler._destinations == {}
