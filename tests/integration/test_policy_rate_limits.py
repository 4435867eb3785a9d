"""Rate limits over real SMTP with an injected clock (no sleeping): 451 4.7.1 at RCPT
once the burst is used, 250 again when the clock has moved on."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import EventType
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import events_of_type, message, smtp_session, write_policy
from tests.fixtures.sink import Sink

LIMITS = """\
    limits:
      - name: per-guest
        key: [recipient]
        rate: 20/m
        burst: 2
        action: tempfail
      - name: marketing-per-domain
        key: [recipient_domain]
        categories: [marketing]
        rate: 1/h
        burst: 1
    """


async def test_tempfail_until_the_clock_moves(tmp_path: Path) -> None:
    write_policy(tmp_path, "ratelimits.yaml", LIMITS)
    clock = ManualClock()
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port), clock) as gw:
            port = gw.ports["relay"]
            for _ in range(2):
                ok = await smtp_session(port, ["Guest@example.net"])
                assert ok.data is not None and ok.data[0] == 250
            over = await smtp_session(port, ["guest@EXAMPLE.net", "other@example.net"])
            assert over.rcpt["guest@EXAMPLE.net"] == (
                451, "4.7.1 Rate limit 'per-guest' exceeded, try again later")
            assert over.rcpt["other@example.net"][0] == 250
            clock.advance(2.9)
            again = await smtp_session(port, ["guest@example.net"])
            assert again.rcpt["guest@example.net"][0] == 451
            clock.advance(0.1)  # 20/m: one token every 3 s
            later = await smtp_session(port, ["guest@example.net"])
            assert later.rcpt["guest@example.net"][0] == 250
            (event, *_) = await events_of_type(gw, "", EventType.REJECTED, 1)
            assert event.detail == "rule=limit:per-guest at=RCPT"
    finally:
        sink.stop()


async def test_limit_keyed_by_category_is_checked_at_data(tmp_path: Path) -> None:
    write_policy(tmp_path, "ratelimits.yaml", LIMITS)
    write_policy(tmp_path, "consent.yaml", """\
        categories:
          transactional: {basis: contract}
          marketing: {basis: legitimate_interest}
        """)
    clock = ManualClock()
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port), clock) as gw:
            port = gw.ports["relay"]
            first = await smtp_session(port, ["a@example.org"], message("marketing"))
            assert first.data is not None and first.data[0] == 250
            second = await smtp_session(port, ["b@example.org"], message("marketing"))
            assert second.data == (
                451, "4.7.1 Rate limit 'marketing-per-domain' exceeded, try again later")
            receipt = await smtp_session(port, ["b@example.org"], message("transactional"))
            assert receipt.data is not None and receipt.data[0] == 250
    finally:
        sink.stop()
