"""Relay listener: trusted networks relay without AUTH; everyone else gets 554 5.7.1."""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.fixtures import tls
from tests.fixtures.intake import (
    PASSWORD,
    USER,
    IntakeHarness,
    RawClient,
    relay_listener,
    users,
)


def test_trusted_client_relays_and_message_lands_in_incoming(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port, local_hostname="app.example") as client:
        client.ehlo()
        assert client.mail("sender@example.com") == (250, b"2.1.0 Sender OK")
        assert client.rcpt("rcpt@example.org") == (250, b"2.1.5 Recipient OK")
        code, text = client.data(b"Subject: hello\r\n\r\nHi there.\r\n")
        assert code == 250
        queue_id = text.decode().removeprefix("2.0.0 Ok: queued as ")
        [(qm, content)] = gw.stored()
        assert (gw.spool_root / "incoming" / queue_id).is_file()
        assert qm.id == queue_id
        assert [q.id for q in gw.queued] == [queue_id]
        env = qm.envelope
        assert env.mail_from == "sender@example.com"
        assert env.recipients == ("rcpt@example.org",)
        assert (env.client.listener, env.client.address, env.client.helo) == (
            "relay", "127.0.0.1", "app.example")
        assert env.client.auth_user is None and not env.client.tls
        assert content.startswith(b"Received: from app.example ([127.0.0.1])\r\n\tby gateway.test"
                                  b" with ESMTP id " + queue_id.encode())
        assert content.endswith(b"Subject: hello\r\n\r\nHi there.\r\n")


def test_client_outside_networks_is_not_an_open_relay(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(networks=("10.0.0.0/8",))) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        assert client.mail("sender@example.com")[0] == 250
        assert client.rcpt("rcpt@example.org") == (554, b"5.7.1 Relay access denied")
        assert client.rcpt("postmaster@example.net") == (554, b"5.7.1 Relay access denied")
        assert client.docmd("DATA") == (503, b"5.5.1 Error: need RCPT command")
        assert gw.stored() == []


def test_relay_listener_does_not_offer_auth_without_tls(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(networks=("10.0.0.0/8",)), users=users()) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        assert "AUTH" not in raw.command("EHLO app.example")
        assert raw.command("AUTH PLAIN AGFwcABwdw==").startswith("538 5.7.11 ")


def test_authenticated_client_outside_networks_may_relay(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    listener = relay_listener(networks=("10.0.0.0/8",), tls="starttls", certs=certs)
    with IntakeHarness(tmp_path, listener, users=users()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.starttls(context=certs.client_context())
        client.login(USER, PASSWORD)
        assert client.sendmail("a@example.com", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n") == {}
        [(qm, _)] = gw.stored()
        assert qm.envelope.client.auth_user == USER and qm.envelope.client.tls


def test_duplicate_recipients_are_stored_once(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        rcpts = ["b@example.org", "b@example.org", "c@example.org"]
        client.sendmail("a@example.com", rcpts, b"Subject: x\r\n\r\nx\r\n")
        [(qm, _)] = gw.stored()
        assert qm.envelope.recipients == ("b@example.org", "c@example.org")
