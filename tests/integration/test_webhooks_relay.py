"""Webhooks over real SMTP traffic: the gateway relays to the sink, and a receiver that
checks every signature hears delivered, deferred, bounced and dropped — each
webhook only the types and categories it asked for."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from gateway.model import ConsentRecord
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import message, smtp_session, write_policy
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
