"""The queue manager's decisions, with time from a ManualClock and a scripted deliverer.

The deliverer stands in for gateway.delivery (our own port, not SMTP): it answers
each recipient from a script, so retry timing, expiry and filing can be checked
attempt by attempt without waiting a second of real time. The real wire is
covered by the integration tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.delivery.settings import DeliveryConfig
from gateway.model import (
    Attempt,
    Client,
    DeliveryJob,
    Envelope,
    EventType,
    QueuedMessage,
    QueueState,
    RecipientResult,
    Reply,
    RetrySchedule,
    Route,
)
from gateway.scheduler.qmgr import Scheduler
from gateway.spool import Spool
from gateway.state.events import SqliteEventStore

OK = Reply(250, "2.0.0", "ok")
LATER = Reply(451, "4.3.0", "try later")
NEVER = Reply(550, "5.1.1", "no such user")


class OneRoute:
    def __init__(self, route: Route) -> None:
        self.route = route

    def split(self, message: QueuedMessage, recipients: Sequence[str]
              ) -> list[tuple[Route, str, tuple[str, ...]]]:
        return [(self.route, "example.net", tuple(recipients))]


class ScriptedDelivery:
    def __init__(self, clock: ManualClock, script: dict[str, list[Reply]]) -> None:
        self.clock = clock
        self.script = script
        self.calls: list[tuple[float, int, tuple[str, ...]]] = []
        self.tls = ""  # Attempt.tls of every attempt

    async def deliver(self, job: DeliveryJob, content: bytes) -> Attempt:
        self.calls.append((self.clock.now(), job.attempt, job.recipients))
        results = tuple(RecipientResult(r, self.script[r].pop(0) if len(self.script[r]) > 1
                                        else self.script[r][0]) for r in job.recipients)
        return Attempt(job.route.name, "mx.example.net", results, self.clock.now(),
                       self.clock.now(), self.tls)


class Harness:
    def __init__(self, tmp: Path, schedule: RetrySchedule, script: dict[str, list[Reply]]):
        self.clock = ManualClock()
        self.spool = Spool(tmp / "spool", self.clock)
        self.events = SqliteEventStore(tmp / "state.db")
        self.delivery = ScriptedDelivery(self.clock, script)
        route = Route("default", "mx", retry=schedule)
        self.scheduler = Scheduler(self.spool, self.delivery, OneRoute(route), self.events,
                                   self.clock, DeliveryConfig(helo_name="gw.test"))

    async def __aenter__(self) -> Harness:
        await self.events.open()
        await self.spool.open()
        self.scheduler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.scheduler.stop(5)
        await self.spool.close()
        await self.events.close()

    async def send(self, *rcpts: str) -> QueuedMessage:
        env = Envelope("app@example.com", rcpts, Client("relay", "127.0.0.1"), self.clock.now(),
                       message_id="<x@example.com>")
        qm = await self.spool.put(env, b"Subject: t\r\n\r\nhi\r\n")
        self.scheduler.notify(qm)
        return qm

    async def settle(self, calls: int) -> None:
        """Let the event loop run until `calls` attempts were made and filed (bounded)."""
        for _ in range(500):
            if len(self.delivery.calls) >= calls and self.scheduler.active_count == 0:
                await self.spool.index.flush()
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{len(self.delivery.calls)} attempts, wanted {calls}")

    async def types(self, qm: QueuedMessage) -> list[str]:
        return [e.type.value for e in await self.events.by_queue_id(qm.id)]


async def test_short_schedule_retries_at_1_5_15_seconds_then_expires(tmp_path: Path) -> None:
    schedule = RetrySchedule(delays=(1, 5, 15), repeat=None)
    async with Harness(tmp_path, schedule, {"g@example.net": [LATER]}) as h:
        t0 = h.clock.now()
        qm = await h.send("g@example.net")
        await h.settle(1)
        assert h.spool.files.find(qm.id) is QueueState.DEFERRED
        for step, total in ((1, 2), (5, 3), (15, 4)):
            h.clock.advance(step - 0.25)
            await asyncio.sleep(0.05)
            assert len(h.delivery.calls) == total - 1, "retried before its time"
            h.clock.advance(0.25)
            await h.settle(total)
        assert [round(c[0] - t0, 2) for c in h.delivery.calls] == [0, 1, 6, 21]
        assert [c[1] for c in h.delivery.calls] == [1, 2, 3, 4]
        assert h.spool.files.find(qm.id) is None
        assert await h.types(qm) == ["deferred"] * 3 + ["expired"]
        assert await h.spool.index.message(qm.id) is None


async def test_per_recipient_outcomes_only_the_deferred_one_is_retried(tmp_path: Path) -> None:
    script = {"ok@example.net": [OK], "bad@example.net": [NEVER],
              "slow@example.net": [LATER, OK]}
    async with Harness(tmp_path, RetrySchedule(), script) as h:
        qm = await h.send("ok@example.net", "bad@example.net", "slow@example.net")
        await h.settle(1)
        rows = {r.address: r.state.value for r in await h.spool.index.recipients(qm.id)}
        assert rows == {"ok@example.net": "delivered", "bad@example.net": "bounced",
                        "slow@example.net": "deferred"}
        h.clock.advance(60)
        await h.settle(2)
        assert h.delivery.calls[1][2] == ("slow@example.net",)
        assert h.spool.files.find(qm.id) is None
        events = await h.events.by_queue_id(qm.id)
        assert [(e.type, e.recipient) for e in events] == [
            (EventType.DELIVERED, "ok@example.net"), (EventType.BOUNCED, "bad@example.net"),
            (EventType.DEFERRED, "slow@example.net"), (EventType.DELIVERED, "slow@example.net"),
        ]
        assert events[1].reply == NEVER and events[1].host == "mx.example.net"


async def test_held_message_is_not_retried_until_released(tmp_path: Path) -> None:
    async with Harness(tmp_path, RetrySchedule(), {"g@example.net": [LATER, OK]}) as h:
        qm = await h.send("g@example.net")
        await h.settle(1)
        assert h.spool.files.move(qm.id, QueueState.DEFERRED, QueueState.HOLD)
        h.spool.index.set_state(qm.id, QueueState.HOLD)
        h.clock.advance(3600)
        await asyncio.sleep(0.1)
        assert len(h.delivery.calls) == 1
        assert h.spool.files.move(qm.id, QueueState.HOLD, QueueState.DEFERRED)
        h.spool.index.set_state(qm.id, QueueState.DEFERRED, next_attempt_at=h.clock.now())
        h.clock.advance(1)
        await h.settle(2)
        assert h.spool.files.find(qm.id) is None


@pytest.mark.parametrize("jump", [-3600.0, 86400.0])
async def test_clock_steps_do_not_lose_or_stall_mail(tmp_path: Path, jump: float) -> None:
    async with Harness(tmp_path, RetrySchedule(), {"g@example.net": [LATER, OK]}) as h:
        qm = await h.send("g@example.net")
        await h.settle(1)
        h.clock.advance(jump)
        h.clock.advance(max(0.0, -jump) + 61)
        await h.settle(2)
        assert h.spool.files.find(qm.id) is None


async def test_delivered_events_say_which_tls_policy_and_cipher_carried_them(
        tmp_path: Path) -> None:
    script = {"ok@example.net": [OK], "slow@example.net": [LATER]}
    async with Harness(tmp_path, RetrySchedule(), script) as h:
        h.delivery.tls = "policy=dane tls=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384"
        qm = await h.send("ok@example.net", "slow@example.net")
        await h.settle(1)
        events = {e.recipient: e for e in await h.events.by_queue_id(qm.id)}
    assert events["ok@example.net"].detail == h.delivery.tls
    assert events["slow@example.net"].detail is not None
    assert events["slow@example.net"].detail.startswith("attempt 1; next at")
