"""AUTH brute force: failures are counted per client address and per user name
across sessions; answers slow down, then AUTH is locked out (454 4.7.0) — even
for the right password — until the lockout ends. And AUTH is never offered or
accepted in plaintext on a submission listener.
"""

from __future__ import annotations

import base64
import smtplib
import time
from pathlib import Path

from gateway.intake.auth import AuthThrottle, ThrottleSettings
from tests.fixtures import tls
from tests.fixtures.intake import (
    PASSWORD,
    USER,
    IntakeHarness,
    RawClient,
    submission_listener,
    users,
)

LOCKED = (454, b"4.7.0 Too many failed authentication attempts, try again later")
INVALID = (535, b"5.7.8 Authentication credentials invalid")
OK = (235, b"2.7.0 Authentication successful")


def attempt(port: int, certs: tls.TestCerts, user: str, password: str,
            source: str = "127.0.0.1") -> tuple[int, bytes]:
    """One session, one AUTH PLAIN over STARTTLS."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=10) as client:
        client.starttls(context=certs.client_context())
        client.ehlo()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return client.docmd("AUTH", f"PLAIN {token}")


def test_failures_across_sessions_lead_to_a_lockout(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    clock = [1000.0]
    settings = ThrottleSettings(per_address=6, per_user=3, window=60, lockout=120,
                                delay=0.05, max_delay=0.15)
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw:
        assert gw.server is not None
        gw.server.auth_throttle = AuthThrottle(settings, now=lambda: clock[0])
        # Three wrong passwords for one user, each in its own session, each slower.
        took = []
        for _ in range(3):
            started = time.monotonic()
            assert attempt(gw.port, certs, USER, "guess") == INVALID
            took.append(time.monotonic() - started)
        assert took[2] >= 0.15
        # The user is locked out now: the right password does not get through either.
        assert attempt(gw.port, certs, USER, PASSWORD) == LOCKED
        assert attempt(gw.port, certs, USER, PASSWORD, source="127.0.0.2") == LOCKED
        # Other user names from the address: three more failures lock the address too.
        for name in ("root", "admin", "test"):
            assert attempt(gw.port, certs, name, "guess") == INVALID
        assert attempt(gw.port, certs, "someone", "guess") == LOCKED
        # Another address is not affected by this one's lockout.
        assert attempt(gw.port, certs, "someone", "guess", source="127.0.0.3") == INVALID
        # The lockout ends.
        clock[0] += 121
        assert attempt(gw.port, certs, USER, PASSWORD) == OK


def test_one_session_gets_three_tries_then_421(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw:
        assert gw.server is not None
        gw.server.auth_throttle = AuthThrottle(ThrottleSettings(delay=0.01))
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
            client.starttls(context=certs.client_context())
            client.ehlo()
            token = base64.b64encode(b"\0app\0wrong").decode()
            for _ in range(3):
                assert client.docmd("AUTH", f"PLAIN {token}") == INVALID
            code, _ = client.docmd("AUTH", f"PLAIN {token}")
            assert code == 421


def test_auth_is_never_offered_or_accepted_in_plaintext_on_submission(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        ehlo = raw.command("EHLO client.example")
        assert "AUTH" not in ehlo and "STARTTLS" in ehlo
        token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
        must = "530 5.7.0 Must issue a STARTTLS command first"
        assert raw.command(f"AUTH PLAIN {token}") == must
        assert raw.command("AUTH LOGIN") == must
        assert raw.command("MAIL FROM:<a@example.com>") == must
        assert gw.server is not None
        assert "addresses=0" in repr(gw.server.auth_throttle)  # nothing was even checked
