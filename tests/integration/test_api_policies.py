"""The policies decide for the HTTP API exactly as for SMTP: the same message through
both, side by side in one gateway, gets the same reply (code, enhanced code, text) and
the same event — a suppressed recipient, marketing without consent, a rate limit; and
rate limits keyed on `auth_user` count the API key's name."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import ConsentRecord, Event, EventType, Suppression, SuppressionReason
from gateway.supervisor import Gateway
from tests.fixtures.api import ApiClient, ApiReply, add_key, api_section, booking
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import message, smtp_session, write_policy
from tests.fixtures.sink import Sink

LIMITS = """\
    limits:
      - name: per-guest
        key: [recipient]
        rate: 1/h
        burst: 1
    """
PER_APP = """\
    limits:
      - name: per-app
        key: [auth_user]
        rate: 1/h
        burst: 2
    """
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent}
    """


def smtp_reply(code: int, text: str) -> dict[str, object]:
    """An SMTP reply as smtplib gives it (code, "x.y.z text") in the API's JSON shape."""
    enhanced, _, rest = text.partition(" ")
    return {"code": code, "enhanced": enhanced, "text": rest}


def refused(reply: ApiReply, address: str) -> dict[str, object]:
    items = reply.json["recipients"] if reply.status == 202 else \
        reply.json["error"]["recipients"]
    (item,) = [r for r in items if r["address"] == address]
    assert item["status"] == "refused", reply.text
    return dict(item["smtp"])


async def events(gw: Gateway, kind: EventType, recipient: str, count: int,
                 queue_id: str = "") -> list[Event]:
    """`kind` events of `recipient` (refusals have no queue id), waiting (bounded) for
    `count` of them: events are written in batches."""
    found: list[Event] = []
    for _ in range(200):
        found = [e for e in await gw.state.events.by_queue_id(queue_id)
                 if e.type is kind and e.recipient == recipient]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{recipient}: {len(found)} {kind} events, wanted {count}")


async def test_suppression_consent_and_rate_limit_as_over_smtp(tmp_path: Path) -> None:
    write_policy(tmp_path, "suppression.yaml", """\
        entries:
          - address: blocked@example.net
            reason: manual
        """)
    write_policy(tmp_path, "consent.yaml", CONSENT)
    write_policy(tmp_path, "ratelimits.yaml", LIMITS)
    key = add_key(tmp_path, "booking-app")
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=api_section(tmp_path))
    try:
        async with running_gateway(config, ManualClock()) as gw:
            assert gw.api is not None
            port, api = gw.ports["relay"], ApiClient(gw.api.port, key)
            await gw.state.consent.record([ConsentRecord(
                "fan@example.net", "marketing", True, 1.0, "explicit", "form")], "test", 1.0)

            # A suppressed recipient: refused at RCPT, the others go.
            smtp = await smtp_session(port, ["blocked@example.net", "a1@example.net"])
            http = await api.send(booking(to=["blocked@example.net", "a2@example.net"]))
            assert http.status == 202, http.text
            assert refused(http, "blocked@example.net") == smtp_reply(
                *smtp.rcpt["blocked@example.net"])
            assert smtp.rcpt["blocked@example.net"][0] == 550
            rejected = await events(gw, EventType.REJECTED, "blocked@example.net", 2)
            assert {e.detail for e in rejected} == {"rule=suppression:manual at=RCPT"}

            # Marketing without consent: nobody left, the message is refused at DATA.
            smtp = await smtp_session(port, ["b1@example.net"], message("marketing"))
            http = await api.send(booking(to="b2@example.net", category="marketing"))
            assert smtp.data is not None and smtp.data[0] == 550
            assert (http.status, http.error_code) == (422, "rejected"), http.text
            assert http.json["error"]["smtp"] == smtp_reply(*smtp.data)
            for rcpt in ("b1@example.net", "b2@example.net"):
                (event,) = await events(gw, EventType.REJECTED, rcpt, 1)
                assert event.detail == "rule=consent:marketing:none at=DATA"
            # ... and with one recipient who consented: the other is dropped, reported.
            http = await api.send(booking(to=["fan@example.net", "c2@example.net"],
                                          category="marketing"))
            assert http.status == 202, http.text
            assert refused(http, "c2@example.net") == smtp_reply(*smtp.data)
            (dropped,) = await events(gw, EventType.DROPPED, "c2@example.net", 1,
                                      http.queue_id)
            assert dropped.detail == "rule=consent:marketing:none category=marketing"

            # A rate limit: the second message to one guest within the hour waits.
            await smtp_session(port, ["d1@example.net"])
            assert (await api.send(booking(to="d2@example.net"))).status == 202
            smtp = await smtp_session(port, ["d1@example.net"])
            http = await api.send(booking(to="d2@example.net"))
            assert smtp.rcpt["d1@example.net"][0] == 451
            assert (http.status, http.error_code) == (429, "rate_limited"), http.text
            assert http.json["error"]["smtp"] == smtp_reply(*smtp.rcpt["d1@example.net"])
            assert refused(http, "d2@example.net") == http.json["error"]["smtp"]
            assert int(http.headers["Retry-After"]) > 0
            for rcpt in ("d1@example.net", "d2@example.net"):
                (event,) = await events(gw, EventType.REJECTED, rcpt, 1)
                assert event.detail == "rule=limit:per-guest at=RCPT"
            await sink.await_for(5)
    finally:
        sink.stop()


async def test_rate_limits_on_auth_user_count_the_api_key_name(tmp_path: Path) -> None:
    write_policy(tmp_path, "ratelimits.yaml", PER_APP)
    key = add_key(tmp_path, "booking-app")
    other_key = add_key(tmp_path, "shop-app")
    sink = Sink().start()
    clock = ManualClock()
    config = write_config(tmp_path, sink.port, extra=api_section(tmp_path))
    try:
        async with running_gateway(config, clock) as gw:
            assert gw.api is not None
            api = ApiClient(gw.api.port, key)
            for i in range(2):
                assert (await api.send(booking(to=f"g{i}@example.net"))).status == 202
            over = await api.send(booking(to="e1@example.net"))
            assert (over.status, over.error_code) == (429, "rate_limited"), over.text
            (event,) = await events(gw, EventType.REJECTED, "e1@example.net", 1)
            assert event.detail == "rule=limit:per-app at=RCPT"
            # The limit is booking-app's, not the listener's: shop-app still sends.
            shop = await ApiClient(gw.api.port, other_key).send(booking(to="e1@example.net"))
            assert shop.status == 202, shop.text
            # Over SMTP (no authenticated user) the per-app limit does not apply at all.
            smtp = await smtp_session(gw.ports["relay"], ["e2@example.net"] * 1)
            assert smtp.data is not None and smtp.data[0] == 250
            clock.advance(3601)  # an hour on: booking-app may send again
            assert (await api.send(booking(to="e3@example.net"))).status == 202
            await sink.await_for(5)
    finally:
        sink.stop()


async def test_suppression_added_while_running_refuses_over_both(tmp_path: Path) -> None:
    write_policy(tmp_path, "suppression.yaml", "entries: []\n")
    key = add_key(tmp_path, "booking-app")
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port,
                                                extra=api_section(tmp_path))) as gw:
            assert gw.api is not None
            await gw.state.suppressions.add([Suppression(
                "gone@example.net", SuppressionReason.HARD_BOUNCE, "all", 1.0, "test")],
                "test", 1.0)
            smtp = await smtp_session(gw.ports["relay"], ["gone@example.net"])
            http = await ApiClient(gw.api.port, key).send(booking(to="gone@example.net"))
            assert (http.status, http.error_code) == (422, "rejected"), http.text
            assert http.json["error"]["smtp"] == smtp_reply(*smtp.rcpt["gone@example.net"])
            assert smtp.data is None and sink.count() == 0
    finally:
        sink.stop()
