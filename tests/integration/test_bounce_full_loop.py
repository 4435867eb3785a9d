"""The whole loop over real SMTP: relay → the destination refuses (550 5.1.1) or a DSN
comes back to the VERP address → the address is suppressed → the next message to
it is refused at RCPT with 550 5.7.1. Forged VERP tokens change nothing."""

from __future__ import annotations

from pathlib import Path

from gateway.bounces.maildir import Maildir
from gateway.bounces.verp import VerpCodec
from gateway.model import EventType
from tests.fixtures.bounces import (
    BOUNCE_DOMAIN,
    KEY,
    bounce_config,
    dsn_text,
    wait_counter,
    wait_events,
)
from tests.fixtures.gateway import running_gateway
from tests.fixtures.policy import message, smtp_session
from tests.fixtures.sink import Sink

SUPPRESSED = (550, "5.7.1 Recipient address is suppressed (hard_bounce)")


def _queue_id(reply: tuple[int, str] | None) -> str:
    assert reply is not None and reply[0] == 250, reply
    return reply[1].rsplit(" ", 1)[1]


async def test_synchronous_550_suppresses_then_rcpt_refused(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies["gone@example.net"] = "550 5.1.1 <gone@example.net>: no such user"
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            first = await smtp_session(port, ["gone@example.net"])
            queue_id = _queue_id(first.data)
            (bounced,) = await wait_events(gw, queue_id, EventType.BOUNCED)
            assert bounced.reply is not None and bounced.reply.code == 550
            (suppressed,) = await wait_events(gw, queue_id, EventType.SUPPRESSED)
            assert suppressed.recipient == "gone@example.net"
            assert "reason=hard_bounce scope=all" in (suppressed.detail or "")
            assert "status=5.1.1 reason=userunknown" in (suppressed.detail or "")
            again = await smtp_session(port, ["gone@example.net", "fine@example.net"])
            assert again.rcpt["gone@example.net"] == SUPPRESSED
            assert again.rcpt["fine@example.net"][0] == 250
            (entry,) = await gw.state.suppressions.lookup(("gone@example.net",), 0.0)
            assert entry.added_by == "bounces" and entry.expires is None
    finally:
        sink.stop()


async def test_policy_block_and_greylisting_suppress_nothing(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies["listed@example.net"] = "554 5.7.1 Service unavailable; client host blocked"
    sink.replies["grey@example.net"] = "451 4.7.1 Greylisted, try again later"
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            blocked = _queue_id((await smtp_session(port, ["listed@example.net"])).data)
            grey = _queue_id((await smtp_session(port, ["grey@example.net"])).data)
            await wait_events(gw, blocked, EventType.BOUNCED)
            await wait_events(gw, grey, EventType.DEFERRED)
            await gw.bounces.actions.drain()
            assert await gw.state.suppressions.all() == []
            events = await gw.state.events.by_queue_id(grey)
            assert not [e for e in events if e.type is EventType.SOFT_BOUNCED]
    finally:
        sink.stop()


async def test_verp_envelope_sender_visible_from_untouched(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            result = await smtp_session(gw.ports["relay"], ["a@example.net", "b@example.net"])
            queue_id = _queue_id(result.data)
            got = await sink.await_for(2)
            codec = VerpCodec(KEY.encode(), BOUNCE_DOMAIN)
            by_rcpt = {r.rcpt_tos[0]: r for r in got}
            assert set(by_rcpt) == {"a@example.net", "b@example.net"}  # one transaction each
            for index, rcpt in enumerate(["a@example.net", "b@example.net"]):
                sender = by_rcpt[rcpt].mail_from
                assert sender.startswith("b+") and sender.endswith("@" + BOUNCE_DOMAIN)
                ref = codec.decode(sender)
                assert (ref.queue_id, ref.recipient_index) == (queue_id, index)
                assert b"From: App <app@example.com>\r\n" in by_rcpt[rcpt].data
    finally:
        sink.stop()


async def test_route_with_verp_false_keeps_the_app_sender(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        config = bounce_config(tmp_path, sink.port, route_extra="verp: false\n")
        async with running_gateway(config) as gw:
            await smtp_session(gw.ports["relay"], ["a@example.net"])
            (got,) = await sink.await_for(1)
            assert got.mail_from == "app@example.com"
    finally:
        sink.stop()


async def test_async_dsn_over_smtp_with_valid_verp_suppresses(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            relay, mx = gw.ports["relay"], gw.ports["mx"]
            queue_id = _queue_id((await smtp_session(relay, ["later@example.net"])).data)
            (got,) = await sink.await_for(1)
            verp = got.mail_from
            (accepted,) = await wait_events(gw, queue_id, EventType.ACCEPTED)
            # The remote MX accepted it, then bounced it later, to the return path. The
            # DSN comes from a host that may not relay (the `mx` listener's networks
            # exclude loopback): mail for the bounce domain is taken from anyone.
            denied = await smtp_session(mx, ["someone@example.org"], sender="")
            assert denied.rcpt["someone@example.org"][0] == 554
            dsn = dsn_text(verp, "later@example.net", "5.1.1", "<unrelated@example.com>")
            result = await smtp_session(mx, [verp], dsn, sender="")
            assert result.rcpt[verp][0] == 250
            assert result.data == (250, "2.0.0 Ok: bounce received")
            assert await wait_counter(gw, "processed", 1) == 1
            (suppressed,) = await wait_events(gw, queue_id, EventType.SUPPRESSED)
            assert suppressed.recipient == "later@example.net"
            assert "source=smtp" in (suppressed.detail or "")
            (bounced,) = await wait_events(gw, queue_id, EventType.BOUNCED)
            assert "matched_by=verp" in (bounced.detail or "")
            assert bounced.message_id == accepted.message_id
            again = await smtp_session(relay, ["later@example.net"])
            assert again.rcpt["later@example.net"] == SUPPRESSED
            assert sink.count() == 1  # the bounce never went to the queue or the sink
            for sub in ("new", "cur", "tmp"):  # processed, then removed
                assert list((gw.config.data_dir / "bounces" / sub).iterdir()) == []
    finally:
        sink.stop()


async def test_forged_verp_token_is_ignored_and_counted(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            relay, mx = gw.ports["relay"], gw.ports["mx"]
            queue_id = _queue_id((await smtp_session(relay, ["victim@example.net"])).data)
            (got,) = await sink.await_for(1)
            token = got.mail_from
            forged = token[: token.index("@") - 4] + "aaaa" + token[token.index("@"):]
            assert forged != token
            dsn = dsn_text(forged, "victim@example.net", "5.1.1", "<x@example.com>")
            result = await smtp_session(mx, [forged], dsn, sender="")
            assert result.data == (250, "2.0.0 Ok: bounce received")
            assert await wait_counter(gw, "processed", 1) == 1  # counted last
            assert gw.bounces.counters.forged == 1
            assert await gw.state.suppressions.all() == []
            events = await gw.state.events.by_queue_id(queue_id)
            assert {e.type for e in events} == {EventType.ACCEPTED, EventType.DELIVERED}
            ingested = await gw.bounces.store.ingested()
            assert [outcome for _, _, outcome in ingested] == ["forged"]
            fine = await smtp_session(relay, ["victim@example.net"])
            assert fine.rcpt["victim@example.net"][0] == 250
    finally:
        sink.stop()


async def test_bounce_domain_and_relay_recipients_do_not_mix(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            verp = f"b+whatever@{BOUNCE_DOMAIN}"
            mixed = await smtp_session(gw.ports["relay"], [verp, "guest@example.net"],
                                       message(), sender="")
            assert mixed.rcpt[verp][0] == 250
            assert mixed.rcpt["guest@example.net"] == (
                452, "4.5.3 Send mail for the bounce domain in its own transaction")
    finally:
        sink.stop()


async def test_three_soft_bounces_by_dsn_suppress_for_a_while(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            relay, mx = gw.ports["relay"], gw.ports["mx"]
            queue_ids = []
            for n in range(3):
                queue_ids.append(_queue_id((await smtp_session(relay, ["full@example.net"]))
                                           .data))
                got = await sink.await_for(n + 1)
                verp = got[n].mail_from
                dsn = dsn_text(verp, "full@example.net", "4.2.2", "<x@example.com>",
                               action="delayed")
                # Reported twice: still one soft bounce for this message.
                for _ in range(2):
                    assert (await smtp_session(mx, [verp], dsn, sender="")).data == (
                        250, "2.0.0 Ok: bounce received")
                assert await wait_counter(gw, "processed", 2 * (n + 1)) == 2 * (n + 1)
                if n < 2:
                    assert await gw.state.suppressions.all() == []
            (soft,) = await wait_events(gw, queue_ids[0], EventType.SOFT_BOUNCED)
            assert "status=4.2.2 reason=mailboxfull" in (soft.detail or "")
            (suppressed,) = await wait_events(gw, queue_ids[2], EventType.SUPPRESSED)
            assert "reason=soft_bounce scope=all until=" in (suppressed.detail or "")
            (entry,) = await gw.state.suppressions.all()
            assert entry.expires is not None
            assert 7 * 86400 - 60 < entry.expires - entry.created <= 7 * 86400
            again = await smtp_session(relay, ["full@example.net"])
            assert again.rcpt["full@example.net"] == (
                550, "5.7.1 Recipient address is suppressed (soft_bounce)")
    finally:
        sink.stop()


async def test_bounce_stored_before_a_crash_is_processed_at_start(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        config = bounce_config(tmp_path, sink.port)
        async with running_gateway(config) as gw:
            queue_id = _queue_id((await smtp_session(gw.ports["relay"], ["gone@example.net"]))
                                 .data)
            (got,) = await sink.await_for(1)
            data_dir = gw.config.data_dir
        # What the SMTP inbox wrote before its 250, with the process killed before
        # processing it.
        dsn = dsn_text(got.mail_from, "gone@example.net", "5.1.1", "<x@example.com>")
        Maildir(data_dir / "bounces").deliver(
            f"Delivered-To: {got.mail_from}\r\n{dsn}".encode())
        async with running_gateway(config) as gw:
            assert await wait_counter(gw, "processed", 1) == 1
            (suppressed,) = await wait_events(gw, queue_id, EventType.SUPPRESSED)
            assert "source=smtp" in (suppressed.detail or "")
            assert list((data_dir / "bounces" / "new").iterdir()) == []
    finally:
        sink.stop()
