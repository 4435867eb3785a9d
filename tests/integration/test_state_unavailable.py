"""PostgreSQL away (issue 8): suppression lookups fail closed — 451 4.3.0 at RCPT, never
250 (a possibly suppressed address mailed) nor 550 (a good one bounced) — while
queued mail is still delivered; the gateway reconnects by itself and writes the
events it kept meanwhile. The idempotency check fails closed too: 451 4.3.0 at
DATA, nothing queued, and the retry is taken once the database is back. The
database is cut mid-run with a TCP forwarder in front of the real server
(tests/fixtures/tcp_proxy.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

from gateway.clock import ManualClock
from gateway.model import EventType, QueueState, Suppression, SuppressionReason
from gateway.supervisor import Gateway
from tests.fixtures.backends import pg_database, pg_dsn
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.net import free_port
from tests.fixtures.policy import message, smtp_session, write_policy
from tests.fixtures.sink import Sink
from tests.fixtures.tcp_proxy import TcpProxy

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest


UNAVAILABLE = (451, "4.3.0 Policy state temporarily unavailable, try again later")
STATE_UNAVAILABLE = (451, "4.3.0 Temporary failure (state store unavailable), try again later")


def through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    return f"postgresql://postgres@127.0.0.1:{port}{parts.path}"


async def rcpt_reply(gw: Gateway, address: str) -> tuple[int, str]:
    return (await smtp_session(gw.ports["relay"], [address])).rcpt[address]


async def deferred(gw: Gateway) -> int:
    for _ in range(300):
        if count := len(gw.spool.files.ids(QueueState.DEFERRED)):
            return count
        await asyncio.sleep(0.01)
    return 0


async def test_database_cut_mid_run_then_back(tmp_path: Path, pg_dsn: str) -> None:
    write_policy(tmp_path, "suppression.yaml", "entries: []\n")
    database = TcpProxy(5432).start()
    sink = Sink().start()
    next_hop = TcpProxy(sink.port)  # not listening yet: the first attempt fails
    next_hop.start()
    next_hop.cut()
    clock = ManualClock()
    config = write_config(tmp_path, next_hop.port,
                          extra=f"state: {through(pg_dsn, database.port)}\n")
    try:
        async with running_gateway(config, clock) as gw:
            await gw.state.suppressions.add([Suppression(
                "blocked@example.net", SuppressionReason.HARD_BOUNCE, "all", 1.0, "t")], "t", 1.0)
            assert (await rcpt_reply(gw, "blocked@example.net"))[0] == 550
            # A message accepted before the cut waits in deferred/ (next hop down) ...
            msg = message(extra="Message-ID: <before-cut@example.com>\r\n")
            sent = await smtp_session(gw.ports["relay"], ["guest@example.net"], msg)
            assert sent.data is not None and sent.data[0] == 250
            assert await deferred(gw) == 1
            database.cut()
            assert await rcpt_reply(gw, "blocked@example.net") == UNAVAILABLE
            assert await rcpt_reply(gw, "guest@example.net") == UNAVAILABLE
            assert gw.state.health() == {"postgresql": False}  # what readiness reports
            # ... and is delivered at its retry while the database is away: delivery
            # never needs it.
            next_hop.start()
            clock.advance(2.0)
            await sink.await_for(1)
            assert await rcpt_reply(gw, "guest@example.net") == UNAVAILABLE  # still away
            database.start()  # back: the first RCPT after the backoff reconnects
            deadline = time.monotonic() + 30
            while (reply := await rcpt_reply(gw, "guest@example.net"))[0] != 250:
                assert reply == UNAVAILABLE and time.monotonic() < deadline
                await asyncio.sleep(0.1)
            assert (await rcpt_reply(gw, "blocked@example.net"))[0] == 550
            assert gw.state.health() == {"postgresql": True}
            # The events of the outage (the delivery, the refusals) were kept and written.
            trace = [e.type for e in await gw.state.events.by_message_id(
                "<before-cut@example.com>")]
            assert trace[0] is EventType.ACCEPTED and trace[-1] is EventType.DELIVERED
            assert EventType.DEFERRED in trace
            refused = await gw.state.events.by_queue_id("")
            assert sum("rule=state-unavailable" in (e.detail or "") for e in refused) >= 3
    finally:
        database.cut()
        next_hop.cut()
        sink.stop()


async def test_unreachable_database_at_start(tmp_path: Path, pg_dsn: str) -> None:
    # The gateway starts anyway (its queue must go out) and answers 451 4.3.0.
    write_policy(tmp_path, "suppression.yaml", "entries: []\n")
    sink = Sink().start()
    dsn = through(pg_dsn, free_port())  # nothing listens there
    config = write_config(tmp_path, sink.port, extra=f"state: {dsn}\n")
    try:
        async with running_gateway(config) as gw:
            assert await rcpt_reply(gw, "guest@example.net") == UNAVAILABLE
    finally:
        sink.stop()


async def test_idempotency_check_with_the_database_away_answers_451_at_data(
        tmp_path: Path, pg_dsn: str) -> None:
    # No policy files: RCPT needs no database, so DATA shows the idempotency check's own
    # answer. A message queued without it might be a second booking confirmation.
    database = TcpProxy(5432).start()
    sink = Sink().start()
    config = write_config(tmp_path, sink.port,
                          extra=f"state: {through(pg_dsn, database.port)}\n")
    first = message(extra="Message-ID: <first@example.com>\r\n")
    retried = message(extra="Message-ID: <during-outage@example.com>\r\n")
    try:
        async with running_gateway(config) as gw:
            sent = await smtp_session(gw.ports["relay"], ["guest@example.net"], first)
            assert sent.data is not None and sent.data[0] == 250
            queue_id = sent.data[1].rsplit(" ", 1)[1]
            await sink.await_for(1)
            database.cut()
            for msg in (first, retried):  # a resend and a new message: neither is queued
                sent = await smtp_session(gw.ports["relay"], ["guest@example.net"], msg)
                assert sent.rcpt["guest@example.net"][0] == 250
                assert sent.data == STATE_UNAVAILABLE
            assert gw.spool.files.ids(QueueState.INCOMING) == []
            assert gw.spool.files.ids(QueueState.ACTIVE) == []
            database.start()
            deadline = time.monotonic() + 30
            while (sent := await smtp_session(gw.ports["relay"], ["guest@example.net"],
                                              retried)).data == STATE_UNAVAILABLE:
                assert time.monotonic() < deadline  # the pool's backoff, then it reconnects
                await asyncio.sleep(0.1)
            assert sent.data is not None and sent.data[0] == 250
            resent = await smtp_session(gw.ports["relay"], ["guest@example.net"], first)
            assert resent.data == (250, f"2.0.0 Ok: queued as {queue_id}")
            await sink.await_for(2)
            trace = await gw.state.events.by_message_id("<first@example.com>")
            assert {e.queue_id for e in trace} == {queue_id}
            assert [e.type for e in trace].count(EventType.DUPLICATE) == 1
    finally:
        database.cut()
        sink.stop()
    assert sink.count() == 2
