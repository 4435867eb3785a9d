"""The same scenarios through swaks, an independent SMTP client (subprocess).

swaks exit codes: 0 ok, 23 MAIL refused, 24 no RCPT accepted, 26 message refused
after DATA, 28 AUTH failed or not offered.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gateway.intake.settings import Limits
from tests.fixtures import tls
from tests.fixtures.intake import (
    PASSWORD,
    USER,
    IntakeHarness,
    relay_listener,
    submission_listener,
    users,
)

# Installed by .ci/install-deps; a missing swaks fails these tests rather than skipping them.
assert shutil.which("swaks"), "swaks is not installed: run `sudo bash .ci/install-deps`"


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--from", "app@example.com",
         "--to", "user@example.org", "--ehlo", "swaks.example", "--timeout", "10", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_relay(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw:
        result = swaks(gw.port, "--header", "Subject: via swaks")
        assert result.returncode == 0, result.stdout
        assert "<-  250 2.0.0 Ok: queued as " in result.stdout
        [(qm, content)] = gw.stored()
        assert qm.envelope.client.helo == "swaks.example"
        assert b"Subject: via swaks\r\n" in content


def test_pipelining(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw:
        result = swaks(gw.port, "--pipeline", "--to", "a@example.org,b@example.org")
        assert result.returncode == 0, result.stdout
        [(qm, _)] = gw.stored()
        assert qm.envelope.recipients == ("a@example.org", "b@example.org")


def test_open_relay_refused(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(networks=("10.0.0.0/8",))) as gw:
        result = swaks(gw.port)
        assert result.returncode == 24, result.stdout
        assert "<** 554 5.7.1 Relay access denied" in result.stdout
        assert gw.stored() == []


def test_auth_over_starttls(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw:
        for mechanism in ("PLAIN", "LOGIN"):
            result = swaks(gw.port, "--tls", "--auth", mechanism, "--auth-user", USER,
                           "--auth-password", PASSWORD)
            assert result.returncode == 0, result.stdout
            assert "<~  235 2.7.0 Authentication successful" in result.stdout
            assert "<~  250 2.0.0 Ok: queued as " in result.stdout
        assert [qm.envelope.client.auth_user for qm, _ in gw.stored()] == [USER, USER]


def test_auth_over_implicit_tls(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    listener = submission_listener(certs, tls="implicit")
    with IntakeHarness(tmp_path, listener, users=users()) as gw:
        result = swaks(gw.port, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", USER,
                       "--auth-password", PASSWORD)
        assert result.returncode == 0, result.stdout
        assert len(gw.stored()) == 1


def test_auth_not_offered_without_tls(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw:
        result = swaks(gw.port, "--auth", "PLAIN", "--auth-user", USER,
                       "--auth-password", PASSWORD)
        assert result.returncode == 28, result.stdout
        assert "Host did not advertise authentication" in result.stdout + result.stderr
        assert "250-AUTH" not in result.stdout and "250 AUTH" not in result.stdout
        assert gw.stored() == []


def test_wrong_password(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users=users()) as gw:
        result = swaks(gw.port, "--tls", "--auth", "PLAIN", "--auth-user", USER,
                       "--auth-password", "wrong")
        assert result.returncode == 28, result.stdout
        assert "<~* 535 5.7.8 Authentication credentials invalid" in result.stdout
        assert gw.stored() == []


def test_size_limit(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(), limits=Limits(max_message_size=1000)) as gw:
        result = swaks(gw.port, "--body", "x" * 70 + "\n" * 30)
        assert result.returncode == 0, result.stdout  # fits
        result = swaks(gw.port, "--body", ("x" * 70 + "\n") * 30)
        assert result.returncode == 26, result.stdout
        assert "552 5.3.4 Message size exceeds fixed maximum message size" in result.stdout
        assert len(gw.stored()) == 1
