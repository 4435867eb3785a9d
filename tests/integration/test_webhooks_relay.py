"""Webhooks over real SMTP traffic: the gateway relays to the sink, and a receiver that
checks every signature hears delivered, deferred, bounced and dropped — each
webhook only the types and categories it asked for; a 410 pauses a webhook
until SIGHUP; the retention job purges on the gateway's clock."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.model import ConsentRecord, EventType
from tests.fixtures.bounces import bounce_config
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import events_of_type, message, smtp_session, write_policy
from tests.fixtures.sink import Sink
from tests.fixtures.webhook_receiver import Receiver

SECRET = "webhook-secret-for-the-relay-test"
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent}
    """


def hooks(everything: Receiver, marketing: Receiver) -> str:
    return textwrap.dedent(f"""\
        webhooks:
          - name: everything
            url: {everything.url}
            secret_file: hook.secret
            poll_interval: 50ms
          - name: marketing-problems
            url: {marketing.url}
            secret_file: hook.secret
            events: [bounced, dropped, complained]
            categories: [marketing]
            poll_interval: 50ms
        """)


def summary(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["type"], e["recipient"]) for e in events}


async def test_relay_outcomes_reach_the_webhooks_signed_and_filtered(tmp_path: Path) -> None:
    everything = Receiver(SECRET).start()
    marketing = Receiver(SECRET).start()
    sink = Sink().start()
    sink.replies["later@example.net"] = "451 4.2.0 mailbox busy, try later"
    sink.replies["gone@example.net"] = "550 5.1.1 no such user"
    (tmp_path / "hook.secret").write_text(SECRET)
    (tmp_path / "hook.secret").chmod(0o600)  # secrets are refused when others may read them
    write_policy(tmp_path, "consent.yaml", CONSENT)
    config = write_config(tmp_path, sink.port, extra=hooks(everything, marketing))
    try:
        async with running_gateway(config) as gw:
            await gw.state.consent.record(
                [ConsentRecord("fan@example.net", "marketing", True, 1.0)], "test", 1.0)
            port = gw.ports["relay"]
            booking = await smtp_session(
                port, ["ok@example.net", "later@example.net", "gone@example.net"],
                message("transactional"))
            news = await smtp_session(port, ["fan@example.net", "nobody@example.net"],
                                      message("marketing"))
            assert booking.data is not None and booking.data[0] == 250
            assert news.data is not None and news.data[0] == 250
            booking_id = booking.data[1].rsplit(" ", 1)[1]
            expected = {("delivered", "ok@example.net"), ("deferred", "later@example.net"),
                        ("bounced", "gone@example.net"), ("dropped", "nobody@example.net"),
                        ("delivered", "fan@example.net")}
            got = await everything.await_events(lambda ev: expected <= summary(ev))
            await marketing.await_events(lambda ev: len(ev) >= 1)
        by_recipient = {e["recipient"]: e for e in got if e["type"] != "deferred"}
        bounced = by_recipient["gone@example.net"]
        assert bounced["queue_id"] == booking_id and bounced["route"] == "sink"
        assert bounced["reply"] == {"code": 550, "enhanced": "5.1.1", "text": "no such user"}
        assert bounced["message_id"] and bounced["time_iso"].endswith("+00:00")
        assert by_recipient["nobody@example.net"]["category"] == "marketing"
        assert "accepted" not in {e["type"] for e in got}  # not among the default types
        assert [(e["type"], e["recipient"]) for e in marketing.events()] == [
            ("dropped", "nobody@example.net")]
        assert everything.rejected == [] and marketing.rejected == []
        ids = [e["id"] for e in got]
        assert ids == sorted(ids)  # in the order they happened
    finally:
        sink.stop()
        everything.stop()
        marketing.stop()


async def test_gone_pauses_a_webhook_and_sighup_resumes_it(tmp_path: Path) -> None:
    receiver = Receiver(SECRET).start()
    receiver.statuses = [410]
    sink = Sink().start()
    (tmp_path / "hook.secret").write_text(SECRET)
    (tmp_path / "hook.secret").chmod(0o600)  # secrets are refused when others may read them
    config = write_config(tmp_path, sink.port, extra=textwrap.dedent(f"""\
        webhooks:
          - name: app
            url: {receiver.url}
            secret_file: hook.secret
            poll_interval: 50ms
        """))
    try:
        async with running_gateway(config) as gw:
            first = await smtp_session(gw.ports["relay"], ["one@example.net"], message())
            assert first.data is not None and first.data[0] == 250
            for _ in range(500):  # bounded: 10 s
                if gw.webhooks.senders["app"].paused:
                    break
                await asyncio.sleep(0.02)
            assert gw.webhooks.senders["app"].paused and receiver.events() == []
            await smtp_session(gw.ports["relay"], ["two@example.net"], message())
            assert gw.reload()  # what SIGHUP does
            got = await receiver.await_events(lambda ev: len(ev) == 2)
        assert [(e["type"], e["recipient"]) for e in got] == [
            ("delivered", "one@example.net"), ("delivered", "two@example.net")]
        assert sorted(receiver.ids().values()) == [1, 1]
    finally:
        sink.stop()
        receiver.stop()


async def test_the_gateway_purges_old_events_on_its_clock(tmp_path: Path) -> None:
    clock = ManualClock(start=time.time())
    sink = Sink().start()
    config = write_config(tmp_path, sink.port,
                          extra="retention:\n  events: 2d\n  purge_interval: 1h\n")
    try:
        async with running_gateway(config, clock) as gw:
            sent = await smtp_session(gw.ports["relay"], ["old@example.net"], message())
            assert sent.data is not None and sent.data[0] == 250
            queue_id = sent.data[1].rsplit(" ", 1)[1]
            await sink.await_for(1)
            assert len(await events_of_type(gw, queue_id, EventType.DELIVERED, 1)) == 1
            runs = gw.retention.runs
            clock.advance(2 * 86400 + 3600)  # the hourly job wakes past the 2-day age
            for _ in range(500):  # bounded: 10 s
                if gw.retention.runs > runs:
                    break
                await asyncio.sleep(0.02)
            assert await gw.state.events.by_queue_id(queue_id) == []
            assert gw.retention.purged == 2  # accepted, delivered
    finally:
        sink.stop()


async def test_bounce_handling_events_reach_the_webhook(tmp_path: Path) -> None:
    """A 550 5.1.1 at delivery: `bounced`, then bounce handling's `suppressed`."""
    receiver = Receiver(SECRET).start()
    sink = Sink().start()
    sink.replies["gone@example.net"] = "550 5.1.1 <gone@example.net>: no such user"
    (tmp_path / "hook.secret").write_text(SECRET)
    (tmp_path / "hook.secret").chmod(0o600)  # secrets are refused when others may read them
    config = bounce_config(tmp_path, sink.port)
    config.write_text(config.read_text() + textwrap.dedent(f"""\
        webhooks:
          - name: app
            url: {receiver.url}
            secret_file: hook.secret
            events: [bounced, suppressed]
            poll_interval: 50ms
        """))
    try:
        async with running_gateway(config) as gw:
            sent = await smtp_session(gw.ports["relay"], ["gone@example.net"], message())
            assert sent.data is not None and sent.data[0] == 250
            got = await receiver.await_events(lambda ev: len(ev) >= 2)
        assert [(e["type"], e["recipient"]) for e in got] == [
            ("bounced", "gone@example.net"), ("suppressed", "gone@example.net")]
        assert "reason=hard_bounce" in got[1]["detail"]
        assert receiver.rejected == []
    finally:
        sink.stop()
        receiver.stop()
