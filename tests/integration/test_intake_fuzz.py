"""Protocol fuzzing: random and mutated SMTP sessions (tests/fixtures/fuzz.py)
against a real listener. No crash, no hang, every reply well-formed, every
stored message sound, and the listener still serves a normal client afterwards.

A short run here (300 sessions); the long run sets SMTP_GATEWAY_FUZZ_SESSIONS
(e.g. 100000) or uses bench/fuzz_sessions.py — see README "Hostile input".
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from gateway.intake.settings import Limits
from tests.fixtures import tls
from tests.fixtures.fuzz import FuzzSession, check_transcript, run_session, sessions
from tests.fixtures.intake import IntakeHarness, RawClient, relay_listener

SESSIONS = int(os.environ.get("SMTP_GATEWAY_FUZZ_SESSIONS", "300"))
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
FUZZ_LIMITS = Limits(max_message_size=64 * 1024, max_recipients=20, command_timeout=3.0,
                     session_timeout=10.0)


@pytest.mark.parametrize("tls_mode, share", [("none", 1.0), ("starttls", 0.2)])
def test_random_sessions_get_well_formed_replies(tmp_path: Path, tls_mode: str, share: float,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """On a plain listener, and (fewer sessions) on one offering STARTTLS, where a
    fuzzed STARTTLS meets a handshake broken by the plaintext that follows."""
    caplog.set_level(logging.CRITICAL, logger="mail.log")  # aiosmtpd's chatter, per command
    started = time.monotonic()
    slow: list[float] = []
    count = max(1, int(SESSIONS * share))
    certs = tls.make_certs(tmp_path / "certs") if tls_mode == "starttls" else None
    listener = relay_listener(tls=tls_mode, certs=certs)
    # A STARTTLS whose pipelined remainder was discarded (CVE-2011-0411) waits for a
    # ClientHello that never comes: the idle timeout ends it, so keep that short there.
    limits = FUZZ_LIMITS if certs is None else replace(FUZZ_LIMITS, command_timeout=0.5)
    with IntakeHarness(tmp_path, listener, limits=limits) as gw:

        @settings(max_examples=count, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(sessions())
        def one_session(session: FuzzSession) -> None:
            began = time.monotonic()
            received, closed = run_session(gw.port, session, timeout=5.0)
            slow.append(time.monotonic() - began)
            assert closed, f"no close after QUIT: {session.lines!r}"
            problems = check_transcript(received)
            assert not problems, (problems, session.lines)

        one_session()
        for _, content in gw.stored():
            assert not BARE.search(content)
        with RawClient(gw.port) as raw:
            assert raw.greeting().startswith("220 ")
            assert raw.command("EHLO after.example").startswith("250-")
            assert raw.command("QUIT") == "221 2.0.0 Bye"
        assert not [r for r in caplog.records
                    if r.levelno >= logging.ERROR and r.name.startswith("gateway")]
        assert gw.server is not None
        deadline = time.monotonic() + 5
        while gw.server.session_count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gw.server.session_count == 0  # every fuzzed session ended and was released
    print(f"{count} sessions in {time.monotonic() - started:.1f}s, "
          f"slowest {max(slow):.2f}s")
