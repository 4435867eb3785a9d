"""Metrics after real SMTP traffic: a delivery, a deferral, a bounce, an expiry, refusals
at RCPT and DATA, reloads — read from `exposition()` and checked by promtool.

In-process gateway with a ManualClock (retries and ages move only when the test
says); then the master in-process with two real intake worker processes, whose
samples reach the master over their pipes (gateway.metrics.workers).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.model import EventType
from gateway.supervisor import Gateway
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.metrics import Scrape, promtool_check_metrics, scrape
from tests.fixtures.policy import events_of_type, message, smtp_session, write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_signals import worker_pids

SUPPRESSION = """\
    entries:
      - address: blocked@example.net
        reason: manual
    """
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent}
    """


def route(sink_port: int) -> str:
    # One retry a minute later, then give up: the second 4xx expires the recipient.
    return textwrap.dedent(f"""\
        routes:
          - name: sink
            type: smarthost
            smarthosts:
              - name: sink
                host: 127.0.0.1
                port: {sink_port}
                tls: none
            retry:
              delays: [60s]
              repeat: never
        """)


def queue_id_of(data_reply: tuple[int, str] | None) -> str:
    assert data_reply is not None and data_reply[0] == 250, data_reply
    match = re.search(r"queued as (\S+)", data_reply[1])
    assert match is not None
    return match.group(1)


async def test_series_move_with_real_traffic(tmp_path: Path) -> None:
    write_policy(tmp_path, "suppression.yaml", SUPPRESSION)
    write_policy(tmp_path, "consent.yaml", CONSENT)
    sink = Sink().start()
    sink.replies["later@example.net"] = "451 4.2.0 Mailbox busy, try later"
    sink.replies["gone@example.net"] = "550 5.1.1 No such user"
    clock = ManualClock()
    config = write_config(tmp_path, sink.port, route=route(sink.port),
                          extra="limits: {max_recipients: 3}\n")
    try:
        async with running_gateway(config, clock) as gw:
            before = scrape()
            port = gw.ports["relay"]
            booking = await smtp_session(
                port, ["blocked@example.net", "bad..dots@example.net", "fine@example.net",
                       "later@example.net", "gone@example.net", "fourth@example.net"],
                message("transactional"))
            assert booking.rcpt["blocked@example.net"][0] == 550
            assert booking.rcpt["bad..dots@example.net"][0] == 553
            assert booking.rcpt["fourth@example.net"][0] == 452  # max_recipients: 3
            queue_id = queue_id_of(booking.data)
            newsletter = await smtp_session(port, ["nogrant@example.net"],
                                            message("marketing"))
            assert newsletter.data is not None and newsletter.data[0] == 550
            await sink.await_for(1)
            await events_of_type(gw, queue_id, EventType.DEFERRED, 1)
            await events_of_type(gw, queue_id, EventType.BOUNCED, 1)
            await gw.queue_metrics.sample()
            clock.advance(30)  # ages are computed at scrape time
            after = scrape()
            promtool_check_metrics(after.text)

            def moved(name: str, **labels: str) -> float:
                return after.delta(before, name, **labels)

            relay = {"listener": "relay"}
            assert moved("smtp_gateway_messages_received_total", **relay) == 2
            assert moved("smtp_gateway_messages_accepted_total", **relay) == 1
            assert moved("smtp_gateway_messages_rejected_total", stage="rcpt", reply_class="5xx",
                         rule="suppression:manual", **relay) == 1
            assert moved("smtp_gateway_messages_rejected_total", stage="rcpt", reply_class="5xx",
                         rule="bad_address", **relay) == 1
            assert moved("smtp_gateway_messages_rejected_total", stage="rcpt", reply_class="4xx",
                         rule="too_many_recipients", **relay) == 1
            assert moved("smtp_gateway_messages_rejected_total", stage="data", reply_class="5xx",
                         rule="consent:marketing:none", **relay) == 1
            transactional = {"route": "sink", "category": "transactional"}
            for outcome in ("delivered", "deferred", "bounced"):
                assert moved("smtp_gateway_recipients_total", outcome=outcome,
                             **transactional) == 1, outcome
            assert moved("smtp_gateway_recipients_total", outcome="suppressed",
                         route="none") == 1
            assert moved("smtp_gateway_recipients_total", outcome="dropped", route="none",
                         category="marketing") == 1
            # One attempt with three recipients: 2xx, 4xx, 5xx; its class is the first failure.
            assert moved("smtp_gateway_delivery_attempts_total", route="sink", smarthost="sink",
                         reply_class="4xx") == 1
            assert moved("smtp_gateway_intake_latency_seconds_count", **relay) == 1
            assert moved("smtp_gateway_delivery_latency_seconds_count", **transactional) == 1
            assert after.get("smtp_gateway_queue_messages", state="deferred", route="sink") == 1
            assert after.get("smtp_gateway_queue_oldest_message_age_seconds",
                             category="transactional") == 30
            assert after.get("smtp_gateway_smarthost_circuit_state", route="sink",
                             smarthost="sink", state="closed") == 1

            clock.advance(31)  # the retry is due; the 451 again, and no more retries
            await events_of_type(gw, queue_id, EventType.EXPIRED, 1)
            await gw.queue_metrics.sample()
            last = scrape()
            assert last.delta(before, "smtp_gateway_recipients_total", outcome="expired",
                              **transactional) == 1
            assert last.get("smtp_gateway_queue_messages", state="deferred") == 0
            assert not last.has("smtp_gateway_queue_oldest_message_age_seconds",
                                category="transactional")
    finally:
        sink.stop()


async def test_reloads_are_counted_by_result(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port)
    good = config.read_text()
    try:
        async with running_gateway(config) as gw:
            before = scrape()
            assert gw.reload()
            config.write_text(good + "limits: {max_recipients: lots}\n")
            assert not gw.reload()
            config.write_text(good)
            after = scrape()
            assert after.delta(before, "smtp_gateway_reloads_total", kind="config",
                               result="success") == 1
            assert after.delta(before, "smtp_gateway_reloads_total", kind="config",
                               result="failure") == 1
    finally:
        sink.stop()


async def test_breaker_state_shows_an_open_circuit(tmp_path: Path) -> None:
    """A smarthost that refuses connections opens its circuit after `failures` attempts."""
    sink = Sink().start()
    dead_port = sink.port
    sink.stop()  # nothing listens there any more: connection refused
    config = write_config(tmp_path, dead_port, extra=textwrap.dedent("""\
        """), route=textwrap.dedent(f"""\
        routes:
          - name: sink
            type: smarthost
            smarthosts:
              - name: dead
                host: 127.0.0.1
                port: {dead_port}
                tls: none
            circuit_breaker: {{failures: 1, recovery: 5m}}
        """))
    async with running_gateway(config, ManualClock()) as gw:
        result = await smtp_session(gw.ports["relay"], ["guest@example.net"])
        await events_of_type(gw, queue_id_of(result.data), EventType.DEFERRED, 1)
        got = scrape()
        assert got.get("smtp_gateway_smarthost_circuit_state", route="sink", smarthost="dead",
                       state="open") == 1
        assert got.get("smtp_gateway_smarthost_circuit_state", route="sink", smarthost="dead",
                       state="closed") == 0


@asynccontextmanager
async def master_with_workers(config: Path) -> AsyncIterator[Gateway]:
    """The master in this process (so its exposition can be read), intake in 2 workers."""
    gw = Gateway(load_config(config))
    await gw.start(spawn_workers=True)
    try:
        yield gw
    finally:
        await gw.stop()


async def wait_scrape(predicate: object, timeout: float = 15.0) -> Scrape:
    """Scrape until `predicate(scrape)` holds: workers report once a second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = scrape()
        if predicate(got) or loop.time() > deadline:  # type: ignore[operator]
            return got
        await asyncio.sleep(0.1)


async def test_worker_processes_report_to_the_master(tmp_path: Path) -> None:
    write_policy(tmp_path, "suppression.yaml", SUPPRESSION)
    sink = Sink().start()
    sink.replies["later@example.net"] = "451 4.2.0 Mailbox busy, try later"
    config = write_config(tmp_path, sink.port, extra="intake_workers: 2\n")
    try:
        async with master_with_workers(config) as gw:
            before = scrape()
            port = gw.ports["relay"]
            for n in range(6):  # spread over the workers by the kernel (SO_REUSEPORT)
                result = await smtp_session(port, [f"g{n}@example.net", "blocked@example.net"])
                assert result.data is not None and result.data[0] == 250
            deferred = await smtp_session(port, ["later@example.net"])
            queue_id = queue_id_of(deferred.data)
            await sink.await_for(6)
            await events_of_type(gw, queue_id, EventType.DEFERRED, 1)

            def received(s: Scrape) -> float:
                return s.delta(before, "smtp_gateway_messages_received_total", listener="relay")

            after = await wait_scrape(lambda s: received(s) == 7)
            promtool_check_metrics(after.text)
            assert received(after) == 7
            assert after.delta(before, "smtp_gateway_messages_accepted_total",
                               listener="relay") == 7
            assert after.delta(before, "smtp_gateway_messages_rejected_total",
                               rule="suppression:manual", stage="rcpt") == 6
            assert after.delta(before, "smtp_gateway_intake_latency_seconds_count") == 7
            assert after.delta(before, "smtp_gateway_recipients_total", outcome="suppressed") == 6
            # Delivery is the master's own: recorded directly.
            assert after.delta(before, "smtp_gateway_recipients_total", outcome="delivered",
                               route="sink") == 6
            # (>= 1: the route retries after 1 s on the real clock, and 451s again)
            assert after.delta(before, "smtp_gateway_recipients_total", outcome="deferred",
                               route="sink") >= 1
            pids = worker_pids(config)
            assert len(pids) == 2

            # A worker killed outright: what it reported stays counted, and its
            # replacement's counts (from zero) add to it.
            os.kill(pids[0], signal.SIGKILL)
            for _ in range(300):
                now = worker_pids(config)
                if len(now) == 2 and pids[0] not in now:
                    break
                await asyncio.sleep(0.05)
            assert received(scrape()) == 7
            for n in range(4):
                await smtp_session(port, [f"h{n}@example.net"])
            final = await wait_scrape(lambda s: received(s) == 11)
            assert received(final) == 11
            promtool_check_metrics(final.text)
    finally:
        sink.stop()
