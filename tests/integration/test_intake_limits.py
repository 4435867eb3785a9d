"""Limits: message size, recipients, sessions (total and per IP), idle and session timeouts."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

from gateway.intake.settings import Limits
from tests.fixtures.intake import IntakeHarness, RawClient, relay_listener

TOO_BIG = (552, b"5.3.4 Message size exceeds fixed maximum message size")


def test_size_is_advertised_and_a_declared_size_over_it_is_refused(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(), limits=Limits(max_message_size=2000)) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "2000"
        assert client.mail("a@example.com", ["SIZE=2001"]) == TOO_BIG
        assert client.mail("a@example.com", ["SIZE=1999"]) == (250, b"2.1.0 Sender OK")


def test_a_message_over_the_size_limit_is_refused_after_data(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(), limits=Limits(max_message_size=2000)) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        client.mail("a@example.com")
        client.rcpt("b@example.org")
        assert client.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40) == TOO_BIG
        # The session goes on, and a message that fits still goes through.
        assert client.noop() == (250, b"2.0.0 OK")
        assert client.sendmail("a@example.com", ["b@example.org"], b"Subject: ok\r\n\r\nok\r\n") \
            == {}
        assert len(gw.stored()) == 1


def test_a_huge_single_line_counts_as_too_big_not_as_a_crash(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(), limits=Limits(max_message_size=5000)) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        raw.command("MAIL FROM:<a@example.com>")
        raw.command("RCPT TO:<b@example.org>")
        assert raw.command("DATA").startswith("354")
        raw.send(b"Subject: one line\r\n\r\n" + b"z" * 20_000 + b"\r\n.\r\n")
        assert raw.reply() == "552 5.3.4 Message size exceeds fixed maximum message size"
        assert raw.command("NOOP") == "250 2.0.0 OK"
        assert gw.stored() == []


def test_recipient_limit(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(), limits=Limits(max_recipients=2)) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        client.mail("a@example.com")
        assert client.rcpt("one@example.org")[0] == 250
        assert client.rcpt("two@example.org")[0] == 250
        assert client.rcpt("three@example.org") == (452, b"4.5.3 Too many recipients")
        assert client.data(b"Subject: x\r\n\r\nx\r\n")[0] == 250
        [(qm, _)] = gw.stored()
        assert qm.envelope.recipients == ("one@example.org", "two@example.org")


def test_max_sessions(tmp_path: Path) -> None:
    limits = Limits(max_sessions=2)
    with IntakeHarness(tmp_path, relay_listener(), limits=limits) as gw:
        first, second = RawClient(gw.port), RawClient(gw.port)
        assert first.greeting().startswith("220 ")
        assert second.greeting().startswith("220 ")
        with RawClient(gw.port) as third:
            assert third.reply() == "421 4.7.0 Too many connections, try again later"
            assert third.closed_by_server()
        first.command("QUIT")
        first.sock.close()
        deadline = time.monotonic() + 5
        while gw.server is not None and gw.server.session_count > 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with RawClient(gw.port) as fourth:
            assert fourth.greeting().startswith("220 ")
        second.sock.close()


def test_max_sessions_per_ip(tmp_path: Path) -> None:
    limits = Limits(max_sessions_per_ip=1)
    with IntakeHarness(tmp_path, relay_listener(), limits=limits) as gw, \
            RawClient(gw.port) as first:
        assert first.greeting().startswith("220 ")
        with RawClient(gw.port) as again:
            assert again.reply() == (
                "421 4.7.0 Too many connections from your address, try again later")
            assert again.closed_by_server()
        with RawClient(gw.port, source="127.0.0.2") as elsewhere:
            assert elsewhere.greeting().startswith("220 ")


def test_idle_client_is_disconnected_with_421(tmp_path: Path) -> None:
    limits = Limits(command_timeout=0.3)
    with IntakeHarness(tmp_path, relay_listener(), limits=limits) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        assert raw.command("EHLO app.example").startswith("250-")
        started = time.monotonic()
        assert raw.reply() == "421 4.4.2 Error: timeout exceeded, closing connection"
        assert 0.25 < time.monotonic() - started < 3
        assert raw.closed_by_server()


def test_stalling_in_data_also_times_out(tmp_path: Path) -> None:
    limits = Limits(command_timeout=0.3)
    with IntakeHarness(tmp_path, relay_listener(), limits=limits) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        raw.command("MAIL FROM:<a@example.com>")
        raw.command("RCPT TO:<b@example.org>")
        raw.command("DATA")
        raw.send(b"Subject: slow\r\n\r\n")
        for _ in range(4):  # slow but steady input keeps the session alive...
            time.sleep(0.15)
            raw.send(b"more\r\n")
        # ...silence does not.
        assert raw.reply().startswith("421 4.4.2 ")
        assert gw.stored() == []


def test_busy_session_still_ends_at_the_session_timeout(tmp_path: Path) -> None:
    limits = Limits(command_timeout=0.4, session_timeout=0.8)
    with IntakeHarness(tmp_path, relay_listener(), limits=limits) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        started = time.monotonic()
        replies = []
        while time.monotonic() - started < 5:
            reply = raw.command("NOOP")
            replies.append(reply)
            if not reply.startswith("250"):
                break
            time.sleep(0.05)
        assert replies[-1] == "421 4.4.2 Error: timeout exceeded, closing connection"
        assert len(replies) > 5  # it was not idle
        assert 0.7 < time.monotonic() - started < 3
        assert raw.closed_by_server()
