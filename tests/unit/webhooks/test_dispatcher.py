"""The webhook dispatcher against a real receiver over HTTP and a real outbox — state.db,
and PostgreSQL on 127.0.0.1:5432 (every test runs on both) — with a ManualClock for
every wait (retries, polls): no test sleeps through a delay."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.model import Event, EventType, Reply, Secret
from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import EVENTS
from gateway.state.store import StateStore
from gateway.webhooks.dispatcher import WebhookDispatcher, next_delay
from gateway.webhooks.outbox import Outbox, SqliteOutbox
from gateway.webhooks.outbox_postgres import PostgresOutbox
from gateway.webhooks.settings import WebhookConfig
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config
from tests.fixtures.tls import make_certs
from tests.fixtures.webhook_receiver import Receiver

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

SECRET = "s3cret-for-the-booking-app-hooks"


@pytest.fixture(params=["sqlite", "postgresql"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    store = StateStore(tmp_path / "state.db", sqlite_or_pg_state_config(request.param, dsn))
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def outbox(state: StateStore, clock: ManualClock) -> AsyncIterator[Outbox]:
    """The outbox as the gateway reads it (gateway.supervisor): state.db beside the event
    writer, or the shared database."""
    if state.postgres is not None:
        yield PostgresOutbox(state.postgres, clock)
        return
    db = StateDb(state.path, EVENTS)
    yield SqliteOutbox(db)
    await db.close()


async def execute(state: StateStore, sql: str, *params: object) -> None:
    """One statement written for SQLite (`?` marks), on either backend."""
    if state.postgres is None:
        db = StateDb(state.path, EVENTS)
        try:
            await db.execute(sql, params)
        finally:
            await db.close()
        return
    for n in range(len(params)):
        sql = sql.replace("?", f"${n + 1}", 1)
    await state.postgres.run(lambda c: c.execute(sql, *params))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
def receiver(clock: ManualClock) -> Iterator[Receiver]:
    r = Receiver(SECRET, now=clock.now).start()
    yield r
    r.stop()


def hook(url: str, name: str = "app", **kw: object) -> WebhookConfig:
    base = WebhookConfig(name=name, url=url, secret=Secret(SECRET), poll_interval=1.0,
                         retry_initial=10.0, retry_max=40.0, timeout=5.0)
    return replace(base, **kw)  # type: ignore[arg-type]


async def until(cond: Callable[[], bool], what: str = "", timeout: float = 10.0) -> None:
    """Wait (real time, bounded) for I/O that the test started to finish."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


def sleeping(clock: ManualClock) -> int:
    return sum(1 for _, _, fut in clock._sleepers if not fut.done())


async def record(state: StateStore, *events: Event) -> None:
    state.events.record(events)
    await state.events.flush()  # type: ignore[attr-defined]


def delivered(n: int, queue_id: str = "Q1", when: float = 1_800_000_000.0) -> Event:
    return Event(time=when, queue_id=queue_id, type=EventType.DELIVERED,
                 recipient=f"guest{n}@example.net", message_id=f"<m{n}@app>", route="sink",
                 host="mx.example.net", reply=Reply(250, "2.0.0", "OK queued"))


async def started(outbox: Outbox, clock: ManualClock, *hooks: WebhookConfig
                  ) -> WebhookDispatcher:
    d = WebhookDispatcher(hooks, outbox, clock)
    await d.start()
    await until(lambda: sleeping(clock) >= len(hooks), "senders idle")
    return d


async def test_a_batch_is_signed_and_carries_the_documented_fields(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    d = await started(outbox, clock, hook(receiver.url))
    try:
        await record(state, delivered(1))
        clock.advance(1.0)
        await until(lambda: d.events_sent == 1)
        (event,) = receiver.events()
        assert event == {
            "id": event["id"], "type": "delivered", "time": 1_800_000_000.0,
            "time_iso": "2027-01-15T08:00:00.000+00:00", "queue_id": "Q1",
            "message_id": "<m1@app>", "recipient": "guest1@example.net", "route": "sink",
            "host": "mx.example.net",
            "reply": {"code": 250, "enhanced": "2.0.0", "text": "OK queued"},
            "category": None, "detail": None}
        headers = receiver.batches[0].headers
        assert headers["X-Gateway-Timestamp"] == str(int(clock.now()))
        assert headers["X-Gateway-Signature"].startswith("v1=")
        assert headers["X-Gateway-Webhook"] == "app"
        assert receiver.rejected == []
        assert d.counts["success"] == 1 and d.events_sent == 1
    finally:
        await d.stop()


async def test_retries_back_off_exponentially_on_the_clock(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    receiver.statuses = [503, 500, 429]
    d = await started(outbox, clock, hook(receiver.url))
    try:
        await record(state, delivered(1))
        clock.advance(1.0)
        for attempt, wait in ((1, 10.0), (2, 20.0), (3, 40.0)):
            await until(lambda a=attempt: receiver.requests == a and sleeping(clock) == 1)  # type: ignore[misc]
            clock.advance(wait - 0.5)
            await until(lambda: sleeping(clock) == 1)
            await asyncio.sleep(0.05)  # real time: nothing may be sent before the wait is over
            assert receiver.requests == attempt, f"retried early after attempt {attempt}"
            clock.advance(0.5)
        await until(lambda: d.events_sent == 1)
        assert len(receiver.events()) == 1
        assert d.counts == {"server_error": 2, "client_error": 1, "success": 1}
    finally:
        await d.stop()
    assert [next_delay(n, 10, 40) for n in (1, 2, 3, 4, 9)] == [10, 20, 40, 40, 40]


async def test_receiver_down_then_up_gets_every_event(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    d = await started(outbox, clock, hook(receiver.url))
    try:
        receiver.down()
        await record(state, delivered(1), delivered(2))
        clock.advance(1.0)
        await until(lambda: d.counts["connection_error"] == 1 and sleeping(clock) == 1)
        await record(state, delivered(3))
        receiver.up()
        clock.advance(10.0)
        await until(lambda: len(receiver.events()) == 3)
        assert [e["recipient"] for e in receiver.events()] == [
            "guest1@example.net", "guest2@example.net", "guest3@example.net"]
        assert len(receiver.batches) == 1  # what piled up went in one batch
    finally:
        await d.stop()


async def test_a_busy_outbox_goes_out_in_full_batches_without_waiting(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    d = await started(outbox, clock, hook(receiver.url, batch_size=120))
    try:
        await record(state, *(delivered(n) for n in range(250)))
        clock.advance(1.0)  # one poll; the full batches that follow need no more time
        await until(lambda: len(receiver.events()) == 250)
        # (batches over 100 events are encoded in a thread, the last one inline)
        assert [len(b.events) for b in receiver.batches] == [120, 120, 10]
        ids = [e["id"] for e in receiver.events()]
        assert ids == sorted(ids) and len(set(ids)) == 250
    finally:
        await d.stop()


async def test_filters_by_event_type_and_category(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    # Intake tags a classified message's category (message_tags, `:category`); dropped
    # events name theirs in the detail.
    for queue_id, category in (("QM", "marketing"), ("QT", "transactional")):
        await execute(state, "INSERT INTO message_tags (queue_id, name, value)"
                      " VALUES (?, ':category', ?)", queue_id, category)
    other = Receiver(SECRET, now=clock.now).start()
    marketing = hook(receiver.url, name="marketing-problems",
                     events=("bounced", "dropped", "complained"), categories=("marketing",))
    everything = hook(other.url, name="everything")
    d = await started(outbox, clock, marketing, everything)
    try:
        bounce = Reply(550, "5.1.1", "no such user")
        await record(
            state,
            replace(delivered(1, "QM")),
            Event(clock.now(), "QM", EventType.BOUNCED, "b1@example.net", reply=bounce),
            Event(clock.now(), "QT", EventType.BOUNCED, "b2@example.net", reply=bounce),
            Event(clock.now(), "QT", EventType.DROPPED, "d1@example.net",
                  detail="rule=consent:marketing:none category=marketing"),
            Event(clock.now(), "QX", EventType.BOUNCED, "b3@example.net", reply=bounce),
            Event(clock.now(), "QM", EventType.ACCEPTED, "a@example.net"),
        )
        # A type this version's EventType does not know (the bounce handling adds it).
        await execute(state, "INSERT INTO events (time, queue_id, type, recipient)"
                      " VALUES (?, 'QM', 'complained', 'c1@example.net')", clock.now())
        clock.advance(1.0)
        await until(lambda: len(other.events()) == 6)
        await until(lambda: len(receiver.events()) == 3)
        assert [(e["type"], e["recipient"], e["category"]) for e in receiver.events()] == [
            ("bounced", "b1@example.net", "marketing"),
            ("dropped", "d1@example.net", "marketing"),
            ("complained", "c1@example.net", "marketing")]
        # The default types leave out intake's `accepted`; no category filter takes all,
        # with or without a category.
        assert [(e["type"], e["category"]) for e in other.events()] == [
            ("delivered", "marketing"), ("bounced", "marketing"), ("bounced", "transactional"),
            ("dropped", "marketing"), ("bounced", None), ("complained", "marketing")]
    finally:
        await d.stop()
        other.stop()


async def test_a_wrong_secret_fails_verification_and_nothing_is_skipped(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    wrong = replace(hook(receiver.url), secret=Secret("not-the-receivers-secret"))
    d = await started(outbox, clock, wrong)
    start = d.senders["app"].cursor
    try:
        await record(state, delivered(1))
        clock.advance(1.0)
        await until(lambda: len(receiver.rejected) == 1 and sleeping(clock) == 1)
        assert receiver.events() == [] and d.counts["client_error"] == 1
        assert d.senders["app"].cursor == start  # refused: still waiting to be sent
    finally:
        await d.stop()
    fixed = await started(outbox, clock, hook(receiver.url))
    try:
        clock.advance(1.0)
        await until(lambda: len(receiver.events()) == 1)
    finally:
        await fixed.stop()


async def test_a_hanging_receiver_does_not_hold_back_another_webhook(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    with socket.socket() as hang:  # accepts connections (backlog), never answers
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)
        stuck = hook(f"http://127.0.0.1:{hang.getsockname()[1]}/", name="stuck", timeout=60.0)
        d = await started(outbox, clock, stuck, hook(receiver.url))
        try:
            for n in range(3):
                await record(state, delivered(n))
                clock.advance(1.0)
                # Sent, and the sender asleep again (the stuck one never sleeps).
                await until(lambda n=n: d.counts["success"] == n + 1  # type: ignore[misc]
                            and sleeping(clock) == 1)
            assert len(receiver.events()) == 3
            assert d.counts == {"success": 3}  # the stuck POST has not even ended
        finally:
            await d.stop()


async def test_gone_pauses_until_reload_and_too_large_halves_the_batch(
        state: StateStore, outbox: Outbox, clock: ManualClock, receiver: Receiver) -> None:
    receiver.statuses = [410]
    d = await started(outbox, clock, hook(receiver.url, batch_size=8))
    try:
        await record(state, *(delivered(n) for n in range(6)))
        clock.advance(1.0)
        await until(lambda: d.senders["app"].paused)
        clock.advance(3600.0)
        await asyncio.sleep(0.05)
        assert receiver.requests == 1
        receiver.statuses = [413, 413]
        await d.reconfigure(d.configs)  # what a SIGHUP does
        clock.advance(1.0)
        await until(lambda: len(receiver.events()) == 6)
        assert [len(b.events) for b in receiver.batches] == [2, 2, 2]
    finally:
        await d.stop()


async def test_the_cursor_survives_a_restart(state: StateStore, outbox: Outbox,
                                             clock: ManualClock, receiver: Receiver) -> None:
    d = await started(outbox, clock, hook(receiver.url))
    await record(state, delivered(1))
    clock.advance(1.0)
    await until(lambda: len(receiver.events()) == 1)
    await d.stop()
    await record(state, delivered(2), delivered(3))  # while no dispatcher runs
    d = await started(outbox, clock, hook(receiver.url))
    try:
        clock.advance(1.0)
        await until(lambda: len(receiver.events()) == 3)
        assert sorted(receiver.ids().values()) == [1, 1, 1]
        assert await d.lag() == {"app": 0}
    finally:
        await d.stop()


async def test_https_receivers_certificates_are_checked(
        tmp_path: Path, state: StateStore, outbox: Outbox, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    certs = make_certs(tmp_path)
    secure = Receiver(SECRET, now=clock.now, ssl_context=certs.server_context()).start()
    try:
        trusting = hook(secure.url, name="with-ca", ca_file=certs.ca_file)
        system = hook(secure.url, name="system-store")  # the test CA is not in it
        d = await started(outbox, clock, trusting, system)
        start = d.senders["system-store"].cursor
        try:
            await record(state, delivered(1))
            clock.advance(1.0)
            await until(lambda: d.events_sent == 1 and d.counts["connection_error"] == 1)
            assert secure.url.startswith("https://") and len(secure.events()) == 1
            assert d.senders["system-store"].cursor == start  # refused, so still to be sent
            assert "connection_error (ClientConnectorCertificateError)" in caplog.text
            assert secure.url not in caplog.text
        finally:
            await d.stop()
    finally:
        secure.stop()
