"""Submission listener: AUTH only over TLS (STARTTLS or implicit), always required."""

from __future__ import annotations

import base64
import smtplib
import ssl
from pathlib import Path

import pytest

from tests.fixtures import tls
from tests.fixtures.intake import (
    PASSWORD,
    USER,
    IntakeHarness,
    RawClient,
    relay_listener,
    submission_listener,
    users,
)

MESSAGE = b"Subject: submitted\r\n\r\nbody\r\n"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_over_starttls(tmp_path: Path, mechanism: str) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.starttls(context=certs.client_context())[0] == 220
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert not client.has_extn("starttls")
        client.user, client.password = USER, PASSWORD
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        assert client.auth(mechanism, auth) == (235, b"2.7.0 Authentication successful")
        assert client.sendmail("a@example.com", ["b@example.org"], MESSAGE) == {}
        [(qm, content)] = gw.stored()
        assert qm.envelope.client.auth_user == USER
        assert qm.envelope.client.tls
        assert b" with ESMTPSA id " in content


def test_auth_is_neither_offered_nor_accepted_before_starttls(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        assert "AUTH" not in raw.command("EHLO app.example")
        # base64("\0app\0" + password): the password is never even looked at.
        assert raw.command("AUTH PLAIN AGFwcABjb3JyZWN0IGhvcnNl") == (
            "530 5.7.0 Must issue a STARTTLS command first")
        assert raw.command("MAIL FROM:<a@example.com>") == (
            "530 5.7.0 Must issue a STARTTLS command first")
        assert raw.command("NOOP") == "250 2.0.0 OK"


def test_mail_without_auth_after_starttls_is_530(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.starttls(context=certs.client_context())
        client.ehlo()
        assert client.mail("a@example.com") == (530, b"5.7.0 Authentication required")
        assert gw.stored() == []


def test_auth_attempts_per_session_are_limited(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    wrong = base64.b64encode(b"\0" + USER.encode() + b"\0wrong").decode()
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.starttls(context=certs.client_context())
        client.ehlo()
        for _ in range(3):
            assert client.docmd("AUTH", f"PLAIN {wrong}") == (
                535, b"5.7.8 Authentication credentials invalid")
        assert client.docmd("AUTH", f"PLAIN {wrong}") == (421, b"4.7.0 AUTH sent too many times")


def test_wrong_password_reply(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.starttls(context=certs.client_context())
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.login(USER, "not the password")
        assert failed.value.smtp_code == 535
        assert failed.value.smtp_error == b"5.7.8 Authentication credentials invalid"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("nobody", PASSWORD)


def test_auth_over_implicit_tls(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    listener = submission_listener(certs, tls="implicit")
    with IntakeHarness(tmp_path, listener, users=users()) as gw, \
            smtplib.SMTP_SSL("127.0.0.1", gw.port, context=certs.client_context()) as client:
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS") == (503, b"5.5.1 TLS already active")
        assert client.mail("a@example.com") == (530, b"5.7.0 Authentication required")
        client.rset()
        client.login(USER, PASSWORD)
        assert client.sendmail("a@example.com", ["b@example.org"], MESSAGE) == {}
        [(qm, _)] = gw.stored()
        assert qm.envelope.client.tls and qm.envelope.client.auth_user == USER


def test_plaintext_client_on_implicit_tls_port_gets_nothing(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    listener = submission_listener(certs, tls="implicit")
    with IntakeHarness(tmp_path, listener, users=users()) as gw, \
            pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError)):
        plain = smtplib.SMTP(timeout=0.5)
        plain.connect("127.0.0.1", gw.port)
    with IntakeHarness(tmp_path / "again", listener, users=users()) as gw, \
            smtplib.SMTP_SSL("127.0.0.1", gw.port, context=certs.client_context()) as client:
        assert client.noop() == (250, b"2.0.0 OK")  # the listener survived it


def test_starttls_refused_where_there_is_no_tls(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS") == (454, b"4.7.0 TLS not available")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.starttls(context=ssl.create_default_context())
