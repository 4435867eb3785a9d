"""DSNs to the sender: off by default, on per route; RFC 3464, queued through the spool
like any message; never for null-sender mail, never in reply to a report."""

from __future__ import annotations

from pathlib import Path

from gateway.bounces import parse_bytes
from gateway.model import EventType
from tests.fixtures.bounces import bounce_config, wait_events
from tests.fixtures.gateway import running_gateway
from tests.fixtures.policy import message, smtp_session
from tests.fixtures.sink import Sink

REPORT = ("From: App <app@example.com>\r\nTo: gone@example.net\r\nSubject: report\r\n"
          "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;"
          ' boundary="R"\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nx\r\n--R--\r\n')


async def _relay(port: int, rcpt: str, msg: str = "", sender: str = "app@example.com") -> str:
    result = await smtp_session(port, [rcpt], msg or message(), sender=sender)
    assert result.data is not None and result.data[0] == 250
    return result.data[1].rsplit(" ", 1)[1]


async def test_dsn_sent_on_routes_that_want_it(tmp_path: Path) -> None:
    sink = Sink().start()
    for user in ("gone", "gone2", "gone3"):
        sink.replies[f"{user}@example.net"] = f"550 5.1.1 <{user}@example.net>: no such user"
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port,
                                                 route_extra="dsn: true\n")) as gw:
            port = gw.ports["relay"]
            queue_id = await _relay(port, "gone@example.net")
            (dsn,) = await sink.await_for(1)
            assert dsn.mail_from == "<>"  # null sender: no VERP, no loops
            assert dsn.rcpt_tos == ["app@example.com"]
            report = parse_bytes(dsn.data)
            assert report.detector == "dsn"
            (line,) = report.recipients
            assert (line.address, line.status, str(line.kind)) == (
                "gone@example.net", "5.1.1", "hard")
            assert b"Content-Type: text/rfc822-headers" in dsn.data
            assert b"Subject: Hello" in dsn.data  # the original's header is returned
            (sent,) = await wait_events(gw, queue_id, EventType.DSN_SENT)
            assert sent.recipient == "gone@example.net"
            dsn_id = (sent.detail or "").rsplit(" ", 1)[1]
            accepted = await wait_events(gw, dsn_id, EventType.ACCEPTED)
            assert [e.recipient for e in accepted] == ["app@example.com"]
            # A null-sender message and a report bounce too: no DSN for either.
            null_id = await _relay(port, "gone2@example.net", sender="")
            report_id = await _relay(port, "gone3@example.net", REPORT)
            await wait_events(gw, null_id, EventType.BOUNCED)
            await wait_events(gw, report_id, EventType.BOUNCED)
            await gw.bounces.actions.drain()  # a DSN would be queued by now
            assert gw.bounces.counters.dsns_sent == 1
            for qid in (null_id, report_id):
                events = await gw.state.events.by_queue_id(qid)
                assert EventType.DSN_SENT not in {e.type for e in events}
    finally:
        sink.stop()


async def test_no_dsn_by_default(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies["gone@example.net"] = "550 5.1.1 no such user"
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            queue_id = await _relay(gw.ports["relay"], "gone@example.net")
            await wait_events(gw, queue_id, EventType.SUPPRESSED)
            await gw.bounces.actions.drain()  # a DSN would be queued by now
            assert gw.bounces.counters.dsns_sent == 0
            assert sink.count() == 0
    finally:
        sink.stop()
