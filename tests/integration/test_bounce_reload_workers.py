"""Bounce rules reload like the other policy files; with intake worker processes a
worker stores the bounce (250) and the master processes it from the bounce Maildir."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

from gateway.bounces.verp import VerpCodec
from gateway.model import EventType
from tests.fixtures.bounces import BOUNCE_DOMAIN, KEY, bounce_config, dsn_text, wait_events
from tests.fixtures.gateway import GatewayProcess, running_gateway
from tests.fixtures.policy import smtp_session
from tests.fixtures.sink import Sink
from tests.integration.test_signals import wait_for


async def test_bounces_yaml_reload_changes_actions(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies["one@example.net"] = "550 5.1.1 no such user"
    sink.replies["two@example.net"] = "550 5.1.1 no such user"
    try:
        config = bounce_config(tmp_path, sink.port, bounces_yaml="hard: {action: ignore}\n")
        async with running_gateway(config) as gw:
            port = gw.ports["relay"]
            first = await smtp_session(port, ["one@example.net"])
            assert first.data is not None
            await wait_events(gw, first.data[1].rsplit(" ", 1)[1], EventType.BOUNCED)
            await gw.bounces.actions.drain()
            assert await gw.state.suppressions.all() == []
            (tmp_path / "policies" / "bounces.yaml").write_text("hard: {action: suppress}\n")
            assert gw.policy.reload()
            second = await smtp_session(port, ["two@example.net"])
            assert second.data is not None
            await wait_events(gw, second.data[1].rsplit(" ", 1)[1], EventType.SUPPRESSED)
            assert [s.target for s in await gw.state.suppressions.all()] == ["two@example.net"]
    finally:
        sink.stop()


def _send(port: int, sender: str, rcpt: str, data: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("mx.example.net")
        s.mail(sender)
        code, text = s.rcpt(rcpt)
        assert code == 250, (code, text)
        return s.data(data.encode())


def test_bounce_through_a_worker_process(tmp_path: Path) -> None:
    sink = Sink().start()
    config = bounce_config(tmp_path, sink.port)
    config.write_text(config.read_text() + "intake_workers: 2\n")
    gw = GatewayProcess(config).start()
    try:
        wait_for(lambda: "smtp-gateway ready" in gw.output())
        code, text = _send(gw.port, "app@example.com", "late@example.net",
                           "From: app@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
        assert code == 250
        (got,) = sink.wait_for(1)
        VerpCodec(KEY.encode(), BOUNCE_DOMAIN).decode(got.mail_from)  # verifies
        code, text = _send(gw.port, "", got.mail_from,
                           dsn_text(got.mail_from, "late@example.net", "5.1.1", "<x@y>"))
        assert (code, text) == (250, b"2.0.0 Ok: bounce received")
        deadline = time.monotonic() + 20
        refused = False
        while time.monotonic() < deadline and not refused:
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
                s.ehlo("app.test")
                s.mail("app@example.com")
                refused = s.rcpt("late@example.net")[0] == 550
            time.sleep(0.1)
        assert refused, gw.output()
    finally:
        gw.stop_hard()
        sink.stop()
