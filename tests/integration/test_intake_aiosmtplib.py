"""Intake through a third, independent client: aiosmtplib (asyncio), over STARTTLS with AUTH.

smtplib and swaks cover the blocking clients; apps built on asyncio commonly use
aiosmtplib, so submission must work with it as it is: pipelined where it can,
STARTTLS, AUTH PLAIN/LOGIN.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from tests.fixtures import tls
from tests.fixtures.intake import PASSWORD, USER, IntakeHarness, submission_listener, users


@pytest.mark.parametrize("tls_mode", ["starttls", "implicit"])
def test_aiosmtplib_submits_with_auth_over_tls(tmp_path: Path, tls_mode: str) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "app@example.com", "guest@example.org", "Booking"
    msg.set_content("Your room is ready.\n")
    with IntakeHarness(tmp_path, submission_listener(certs, tls=tls_mode), users=users()) as gw:
        errors, reply = asyncio.run(aiosmtplib.send(
            msg, hostname="127.0.0.1", port=gw.port, username=USER, password=PASSWORD,
            use_tls=tls_mode == "implicit", start_tls=tls_mode == "starttls",
            tls_context=certs.client_context(), timeout=10,
        ))
        assert errors == {}
        assert reply.startswith("2.0.0 Ok: queued as ")
        [(qm, content)] = gw.stored()
        assert qm.envelope.client.auth_user == USER and qm.envelope.client.tls
        assert b"Your room is ready.\r\n" in content


def test_aiosmtplib_without_tls_cannot_authenticate(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw:
        async def attempt() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.port, start_tls=False,
                                     timeout=10)
            await client.connect()
            try:
                with pytest.raises(aiosmtplib.SMTPException):
                    await client.login(USER, PASSWORD)
            finally:
                client.close()

        asyncio.run(attempt())
        assert gw.stored() == []
