"""Suppression over real SMTP: 550 5.7.1 at RCPT for scope `all`; a scoped entry drops
the recipient from that category only (the booking confirmation still goes out)."""

from __future__ import annotations

from pathlib import Path

from gateway.model import EventType, Suppression, SuppressionReason
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import events_of_type, message, smtp_session, write_policy
from tests.fixtures.sink import Sink

SUPPRESSION = """\
    entries:
      - address: Blocked@Example.NET
        reason: manual
      - domain: complainers.example
        reason: complaint
      - address: unsubscribed@example.net
        reason: unsubscribe
        scope: marketing
    """
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: legitimate_interest}   # no grant needed: isolates the scope rule
    """


async def test_static_and_dynamic_entries_refused_at_rcpt(tmp_path: Path) -> None:
    write_policy(tmp_path, "suppression.yaml", SUPPRESSION)
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            await gw.state.suppressions.add([Suppression(
                "bounced@example.net", SuppressionReason.HARD_BOUNCE, "all", 1.0, "test")],
                "test", 1.0)
            port = gw.ports["relay"]
            result = await smtp_session(port, [
                "blocked@example.net", "BLOCKED@example.net", "anyone@complainers.example",
                "bounced@EXAMPLE.net", "fine@example.net"])
            assert result.rcpt["blocked@example.net"] == (
                550, "5.7.1 Recipient address is suppressed (manual)")
            assert result.rcpt["BLOCKED@example.net"][0] == 550
            assert result.rcpt["anyone@complainers.example"] == (
                550, "5.7.1 Recipient address is suppressed (complaint)")
            assert result.rcpt["bounced@EXAMPLE.net"] == (
                550, "5.7.1 Recipient address is suppressed (hard_bounce)")
            assert result.rcpt["fine@example.net"][0] == 250
            assert result.data is not None and result.data[0] == 250
            (got,) = await sink.await_for(1)
            assert got.rcpt_tos == ["fine@example.net"]
            rejected = await events_of_type(gw, "", EventType.REJECTED, 4)
            assert {e.detail for e in rejected} >= {
                "rule=suppression:manual at=RCPT", "rule=suppression:complaint at=RCPT",
                "rule=suppression:hard_bounce at=RCPT"}
    finally:
        sink.stop()


async def test_unsubscribed_guest_gets_booking_not_newsletter(tmp_path: Path) -> None:
    write_policy(tmp_path, "suppression.yaml", SUPPRESSION)
    write_policy(tmp_path, "consent.yaml", CONSENT)
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            booking = await smtp_session(port, ["unsubscribed@example.net"],
                                         message("transactional", subject="Booking"))
            assert booking.data is not None and booking.data[0] == 250
            newsletter = await smtp_session(port, ["unsubscribed@example.net"],
                                            message("marketing", subject="News"))
            assert newsletter.rcpt["unsubscribed@example.net"][0] == 250  # scope: at DATA
            assert newsletter.data == (
                550, "5.7.1 Recipient address is suppressed for marketing mail (unsubscribe)")
            both = await smtp_session(port, ["unsubscribed@example.net", "fan@example.net"],
                                      message("marketing", subject="News 2"))
            assert both.data is not None and both.data[0] == 250
            queue_id = both.data[1].rsplit(" ", 1)[1]
            got = await sink.await_for(2)
            assert [(m.rcpt_tos, b"Subject: Booking" in m.data) for m in got] == [
                (["unsubscribed@example.net"], True), (["fan@example.net"], False)]
            (dropped,) = await events_of_type(gw, queue_id, EventType.DROPPED, 1)
            assert dropped.recipient == "unsubscribed@example.net"
            assert dropped.detail == "rule=suppression:unsubscribe:marketing category=marketing"
    finally:
        sink.stop()
