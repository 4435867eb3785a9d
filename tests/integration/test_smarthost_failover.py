"""Smarthost routes: failover within one attempt, circuit breakers, AUTH, connection reuse.

Real sockets on 127.0.0.1 throughout: aiosmtpd sinks, and raw asyncio servers
for the misbehaving hosts (421 at greeting, silence after connect). Breaker
windows are crossed with ManualClock.advance(), never by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.delivery.deliver import Delivery
from gateway.delivery.settings import DeliveryConfig
from gateway.delivery.smarthosts import BreakerState
from gateway.model import (
    Attempt,
    BreakerSettings,
    Client,
    DeliveryJob,
    Envelope,
    QueuedMessage,
    Route,
    Secret,
    Smarthost,
)
from tests.fixtures import tls
from tests.fixtures.net import free_port
from tests.fixtures.sink import Sink

CONTENT = b"From: app@src.test\r\nSubject: relay\r\n\r\n.leading dot\r\nbody\r\n"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def config(**changes: object) -> DeliveryConfig:
    base: dict[str, object] = dict(helo_name="gw.test", connect_timeout=1.0,
                                   command_timeout=0.5, data_timeout=1.0)
    base.update(changes)
    return DeliveryConfig(**base)  # type: ignore[arg-type]


def smarthost(name: str, port: int, **changes: object) -> Smarthost:
    fields: dict[str, object] = dict(name=name, host="127.0.0.1", port=port, tls="none")
    fields.update(changes)
    return Smarthost(**fields)  # type: ignore[arg-type]


def route(*hosts: Smarthost, failures: int = 3) -> Route:
    return Route("providers", "smarthost", smarthosts=hosts,
                 breaker=BreakerSettings(failures=failures, recovery=300.0))


def job(r: Route, *recipients: str, sender: str = "app@src.test") -> DeliveryJob:
    recipients = recipients or ("u@dest.test",)
    env = Envelope(sender, recipients, Client("relay", "127.0.0.1"), 0.0)
    return DeliveryJob(QueuedMessage("Q1", env, len(CONTENT)), recipients, r, "dest.test", 1)


def replies(attempt: Attempt) -> list[tuple[int, str]]:
    return [(r.reply.code, r.reply.enhanced) for r in attempt.results]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def delivery(clock: ManualClock) -> AsyncIterator[Delivery]:
    d = Delivery(config(), clock)
    yield d
    await d.close()


@pytest.fixture
def backup() -> Iterator[Sink]:
    sink = Sink(pipelining=True).start()
    yield sink
    sink.stop()


class RawServer:
    """A misbehaving SMTP server: `handler` runs per connection, which are counted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        await self.handler(reader, writer)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


async def greet_421(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"421 4.3.2 Service not available, closing channel\r\n")
    await writer.drain()
    writer.close()


async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts the connection, never greets, waits for the client to go


MakeRaw = Callable[[Handler], Awaitable[tuple[RawServer, int]]]


@pytest.fixture
async def raw() -> AsyncIterator[MakeRaw]:
    servers: list[RawServer] = []

    async def make(handler: Handler) -> tuple[RawServer, int]:
        server = RawServer(handler)
        servers.append(server)
        return server, await server.start()

    yield make
    for server in servers:
        await server.stop()


# -- failover within one attempt ---------------------------------------------------------


async def test_first_refuses_connections_second_takes_it(delivery: Delivery, backup: Sink) -> None:
    r = route(smarthost("primary", free_port()), smarthost("backup", backup.port))
    attempt = await delivery.deliver(job(r, "a@dest.test", "b@dest.test"), CONTENT)
    assert replies(attempt) == [(250, "2.0.0"), (250, "2.0.0")]
    assert attempt.host == "backup"
    assert backup.recipients() == ["a@dest.test", "b@dest.test"]
    assert backup.messages[0].data == CONTENT


async def test_first_answers_421_at_greeting(delivery: Delivery, backup: Sink,
                                             raw: MakeRaw) -> None:
    primary, port = await raw(greet_421)
    r = route(smarthost("primary", port), smarthost("backup", backup.port))
    attempt = await delivery.deliver(job(r), CONTENT)
    assert replies(attempt) == [(250, "2.0.0")]
    assert attempt.host == "backup"
    assert primary.connections == 1


async def test_first_hangs_after_connect(delivery: Delivery, backup: Sink, raw: MakeRaw) -> None:
    primary, port = await raw(say_nothing)
    r = route(smarthost("primary", port), smarthost("backup", backup.port))
    attempt = await delivery.deliver(job(r), CONTENT)
    assert replies(attempt) == [(250, "2.0.0")]
    assert attempt.host == "backup" and primary.connections == 1
    assert attempt.finished_at - attempt.started_at == 0  # ManualClock: nobody slept on it


async def test_first_defers_data_second_takes_it(delivery: Delivery, backup: Sink) -> None:
    primary = Sink(pipelining=True).start()
    primary.data_reply = "451 4.3.0 queue full"
    try:
        r = route(smarthost("primary", primary.port), smarthost("backup", backup.port))
        attempt = await delivery.deliver(job(r), CONTENT)
    finally:
        primary.stop()
    assert replies(attempt) == [(250, "2.0.0")]
    assert backup.count() == 1


async def test_rcpt_4xx_for_all_fails_over_but_5xx_stays(delivery: Delivery, backup: Sink) -> None:
    primary = Sink().start()  # lock-step: no PIPELINING
    primary.replies.update({"a@dest.test": "450 4.2.1 later", "b@dest.test": "452 4.3.1 full",
                            "c@dest.test": "550 5.1.1 unknown"})
    try:
        r = route(smarthost("primary", primary.port), smarthost("backup", backup.port))
        attempt = await delivery.deliver(job(r, "a@dest.test", "b@dest.test", "c@dest.test"),
                                         CONTENT)
    finally:
        primary.stop()
    assert replies(attempt) == [(250, "2.0.0"), (250, "2.0.0"), (550, "5.1.1")]
    assert backup.recipients() == ["a@dest.test", "b@dest.test"]


async def test_deferring_mailboxes_never_open_the_breaker(delivery: Delivery) -> None:
    # Mailbox-level 4xx at RCPT (full, greylisted) say nothing about the smarthost: three
    # in a row must not stop the route for every other recipient.
    sink = Sink().start()
    sink.replies.update({f"full{i}@dest.test": "452 4.2.2 mailbox full" for i in range(5)})
    try:
        r = route(smarthost("only", sink.port), failures=3)
        for i in range(5):
            attempt = await delivery.deliver(job(r, f"full{i}@dest.test"), CONTENT)
            assert replies(attempt) == [(452, "4.2.2")]
        (breaker,) = [b for b in delivery.breakers() if b.name == "only"]
        assert breaker.state is BreakerState.CLOSED
        attempt = await delivery.deliver(job(r, "ok@dest.test"), CONTENT)
        assert replies(attempt) == [(250, "2.0.0")]
    finally:
        sink.stop()
    assert sink.recipients() == ["ok@dest.test"]


async def test_every_smarthost_failing_defers(delivery: Delivery, raw: MakeRaw) -> None:
    _, port = await raw(greet_421)
    r = route(smarthost("primary", free_port()), smarthost("backup", port))
    attempt = await delivery.deliver(job(r, "a@dest.test", "b@dest.test"), CONTENT)
    assert [c for c, _ in replies(attempt)] == [421, 421]  # the last host's reason
    assert all(res.state == "deferred" for res in attempt.results)
    assert attempt.host == "backup"


# -- circuit breakers --------------------------------------------------------------------


async def test_circuit_opens_after_three_failures_then_half_opens_and_closes(
        delivery: Delivery, clock: ManualClock, backup: Sink) -> None:
    primary = Sink(pipelining=True).start()
    primary.data_reply = "421 4.3.0 going down"
    try:
        r = route(smarthost("primary", primary.port), smarthost("backup", backup.port))
        for _ in range(3):
            assert replies(await delivery.deliver(job(r), CONTENT)) == [(250, "2.0.0")]
        assert primary.connections == 3
        (breaker,) = [b for b in delivery.breakers() if b.name == "primary"]
        assert breaker.state is BreakerState.OPEN
        assert re.fullmatch(r"<Smarthost primary OPEN failures=3 retry_at=\d\d:\d\d:\d\d>",
                            repr(breaker))

        # Open: skipped without a connection, straight to the backup.
        attempt = await delivery.deliver(job(r), CONTENT)
        assert attempt.host == "backup" and primary.connections == 3
        clock.advance(299)
        await delivery.deliver(job(r), CONTENT)
        assert primary.connections == 3

        # Half-open: one probe, which fails and re-opens the circuit.
        clock.advance(1)
        attempt = await delivery.deliver(job(r), CONTENT)
        assert primary.connections == 4 and attempt.host == "backup"
        assert breaker.state is BreakerState.OPEN
        await delivery.deliver(job(r), CONTENT)
        assert primary.connections == 4

        # The next probe succeeds and closes it; the primary is used again.
        primary.data_reply = None
        clock.advance(300)
        attempt = await delivery.deliver(job(r), CONTENT)
        assert attempt.host == "primary" and breaker.state is BreakerState.CLOSED
        attempt = await delivery.deliver(job(r), CONTENT)
        assert attempt.host == "primary"
        assert primary.count() == 2
        assert backup.count() == 7
    finally:
        primary.stop()


async def test_all_circuits_open_defers_without_connecting(
        delivery: Delivery, clock: ManualClock) -> None:
    r = route(smarthost("primary", free_port()), smarthost("backup", free_port()), failures=1)
    first = await delivery.deliver(job(r), CONTENT)
    assert replies(first) == [(451, "4.4.1")]
    second = await delivery.deliver(job(r), CONTENT)
    assert replies(second) == [(451, "4.4.0")]
    assert "circuit breakers open" in second.results[0].reply.text
    assert second.host == ""
    assert all(b.state is BreakerState.OPEN for b in delivery.breakers())


async def test_recipient_5xx_does_not_trip_the_breaker(delivery: Delivery, backup: Sink) -> None:
    backup.replies["gone@dest.test"] = "550 5.1.1 no such user"
    r = route(smarthost("only", backup.port))
    for _ in range(5):
        attempt = await delivery.deliver(job(r, "gone@dest.test"), CONTENT)
        assert replies(attempt) == [(550, "5.1.1")]
        assert attempt.results[0].state == "bounced"
    (breaker,) = delivery.breakers()
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0


async def test_reconfigure_keeps_breaker_state_and_pooled_connections(
        delivery: Delivery, backup: Sink) -> None:
    r = route(smarthost("primary", free_port()), smarthost("backup", backup.port), failures=1)
    await delivery.deliver(job(r), CONTENT)
    delivery.reconfigure(config(command_timeout=2.0))
    attempt = await delivery.deliver(job(r), CONTENT)
    assert attempt.host == "backup"
    assert [b.state for b in delivery.breakers()] == [BreakerState.OPEN, BreakerState.CLOSED]
    assert backup.connections == 1


# -- per-recipient outcomes, reuse, limits --------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
async def test_mixed_outcomes_in_one_job(delivery: Delivery, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining).start()
    sink.replies.update({"later@dest.test": "450 4.2.1 mailbox busy",
                         "gone@dest.test": "550 5.1.1 no such user"})
    try:
        r = route(smarthost("only", sink.port))
        rcpts = ("ok@dest.test", "later@dest.test", "gone@dest.test", "ok2@dest.test")
        attempt = await delivery.deliver(job(r, *rcpts), CONTENT)
    finally:
        sink.stop()
    assert [r.recipient for r in attempt.results] == list(rcpts)
    assert replies(attempt) == [(250, "2.0.0"), (450, "4.2.1"), (550, "5.1.1"), (250, "2.0.0")]
    assert [r.state for r in attempt.results] == ["delivered", "deferred", "bounced", "delivered"]
    assert attempt.results[1].reply.text == "mailbox busy"
    assert sink.recipients() == ["ok@dest.test", "ok2@dest.test"]
    (breaker,) = delivery.breakers()
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
async def test_messages_share_one_connection(delivery: Delivery, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining).start()
    try:
        r = route(smarthost("only", sink.port))
        for i in range(5):
            attempt = await delivery.deliver(job(r, f"u{i}@dest.test"), CONTENT)
            assert replies(attempt) == [(250, "2.0.0")]
        assert sink.connections == 1
        assert [m.connection for m in sink.messages] == [1] * 5
    finally:
        await delivery.close()
        sink.stop()


async def test_connection_retired_after_messages_per_connection(delivery: Delivery,
                                                               backup: Sink) -> None:
    r = route(smarthost("only", backup.port, messages_per_connection=2))
    for i in range(5):
        await delivery.deliver(job(r, f"u{i}@dest.test"), CONTENT)
    assert backup.count() == 5
    assert [m.connection for m in backup.messages] == [1, 1, 2, 2, 3]


async def test_max_connections_limits_concurrent_sessions(delivery: Delivery,
                                                          backup: Sink) -> None:
    r = route(smarthost("only", backup.port, max_connections=2))
    attempts = await asyncio.gather(*(delivery.deliver(job(r, f"u{i}@dest.test"), CONTENT)
                                      for i in range(12)))
    assert all(replies(a) == [(250, "2.0.0")] for a in attempts)
    assert backup.count() == 12
    assert backup.connections == 2


async def test_a_connection_the_server_dropped_while_idle_is_replaced(
        delivery: Delivery) -> None:
    port = free_port()
    sink = Sink(port=port, pipelining=True).start()
    r = route(smarthost("only", port))
    await delivery.deliver(job(r), CONTENT)
    sink.stop()  # drops the pooled connection
    sink = Sink(port=port, pipelining=True).start()
    try:
        attempt = await delivery.deliver(job(r), CONTENT)
    finally:
        await delivery.close()
        sink.stop()
    assert replies(attempt) == [(250, "2.0.0")]
    (breaker,) = delivery.breakers()
    assert breaker.failures == 0  # a stale cached connection is nobody's failure


async def test_null_sender_and_8bitmime(delivery: Delivery, backup: Sink) -> None:
    env = Envelope("", ("u@dest.test",), Client("relay", "127.0.0.1"), 0.0,
                   body_type="8BITMIME")
    r = route(smarthost("only", backup.port))
    body = "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()
    job8 = DeliveryJob(QueuedMessage("Q2", env, len(body)), ("u@dest.test",), r, "dest.test", 1)
    attempt = await delivery.deliver(job8, body)
    assert replies(attempt) == [(250, "2.0.0")]
    (message,) = backup.messages
    assert message.mail_from == "<>" and message.data == body  # aiosmtpd's spelling of <>
    assert "BODY=8BITMIME" in message.mail_options
    assert "SMTPUTF8" not in message.mail_options


async def test_smtputf8_is_passed_on(delivery: Delivery, backup: Sink) -> None:
    rcpt = "j\u00fcrgen@dest.test"
    env = Envelope("s\u00e9nder@src.test", (rcpt,), Client("relay", "127.0.0.1"), 0.0,
                   smtputf8=True, body_type="8BITMIME")
    r = route(smarthost("only", backup.port))
    utf8 = DeliveryJob(QueuedMessage("Q3", env, len(CONTENT)), (rcpt,), r, "dest.test", 1)
    attempt = await delivery.deliver(utf8, CONTENT)
    assert replies(attempt) == [(250, "2.0.0")]
    (message,) = backup.messages
    assert "SMTPUTF8" in message.mail_options
    assert message.rcpt_tos == [rcpt] and message.mail_from == "s\u00e9nder@src.test"


# -- TLS and AUTH ---------------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> tls.TestCerts:
    return tls.make_certs(tmp_path)


async def test_auth_over_starttls(clock: ManualClock, certs: tls.TestCerts,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = Sink(tls_context=certs.server_context(), auth_users={"gw": "s3cret-pw"},
                pipelining=True).start()
    d = Delivery(config(ca_file=certs.ca_file), clock)
    try:
        r = route(smarthost("provider", sink.port, tls="starttls", verify_cert=True,
                            username="gw", password=Secret("s3cret-pw")))
        attempt = await d.deliver(job(r), CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert replies(attempt) == [(250, "2.0.0")]
    (message,) = sink.messages
    assert message.tls and message.auth_user == "gw"
    assert "s3cret-pw" not in caplog.text


async def test_wrong_password_defers_and_counts_against_the_smarthost(
        clock: ManualClock, certs: tls.TestCerts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = Sink(tls_context=certs.server_context(), auth_users={"gw": "right"}).start()
    d = Delivery(config(ca_file=certs.ca_file), clock)
    try:
        r = route(smarthost("provider", sink.port, tls="starttls",
                            username="gw", password=Secret("wrong-pw")))
        attempt = await d.deliver(job(r), CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert replies(attempt)[0][0] // 100 == 4
    assert "AUTH" in attempt.results[0].reply.text
    assert sink.count() == 0
    assert d.breakers()[0].failures == 1
    assert "wrong-pw" not in caplog.text and "wrong-pw" not in attempt.results[0].reply.text


async def test_starttls_required_but_not_offered(delivery: Delivery, backup: Sink) -> None:
    r = route(smarthost("provider", backup.port, tls="starttls"))
    attempt = await delivery.deliver(job(r), CONTENT)
    assert replies(attempt) == [(451, "4.7.5")]
    assert backup.count() == 0


async def test_untrusted_certificate_fails_over(delivery: Delivery, backup: Sink,
                                                certs: tls.TestCerts) -> None:
    # No ca_file in the config: the test CA is not trusted.
    sink = Sink(tls_context=certs.server_context()).start()
    try:
        r = route(smarthost("provider", sink.port, tls="starttls"),
                  smarthost("backup", backup.port))
        attempt = await delivery.deliver(job(r), CONTENT)
    finally:
        sink.stop()
    assert replies(attempt) == [(250, "2.0.0")] and attempt.host == "backup"
    assert sink.count() == 0


async def test_implicit_tls(clock: ManualClock, certs: tls.TestCerts) -> None:
    sink = Sink(implicit_tls_context=certs.server_context()).start()
    d = Delivery(config(ca_file=certs.ca_file), clock)
    try:
        r = route(smarthost("provider", sink.port, tls="implicit"))
        attempt = await d.deliver(job(r), CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert replies(attempt) == [(250, "2.0.0")]
    assert sink.messages[0].tls

