#!/usr/bin/env python3
"""The long protocol-fuzzing run: N random and mutated SMTP sessions against a
real intake listener (tests/fixtures/fuzz.py), checking every reply.

    python3 bench/fuzz_sessions.py --sessions 100000           # own listener, temp spool
    python3 bench/fuzz_sessions.py --sessions 5000 --port 2525 # a running gateway

The same check runs in the test suite with 300 sessions
(tests/integration/test_intake_fuzz.py; SMTP_GATEWAY_FUZZ_SESSIONS=N there
does the long run under pytest). Exits 1 at the first problem, printing the
shrunk session that shows it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, settings

from gateway.intake.settings import Limits
from tests.fixtures.fuzz import FuzzSession, check_transcript, run_session, sessions
from tests.fixtures.intake import IntakeHarness, relay_listener


def fuzz(port: int, count: int, timeout: float) -> dict[str, float]:
    stats = {"sessions": 0.0, "slowest": 0.0}
    started = time.monotonic()

    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(sessions())
    def one(session: FuzzSession) -> None:
        began = time.monotonic()
        received, closed = run_session(port, session, timeout=timeout)
        stats["slowest"] = max(stats["slowest"], time.monotonic() - began)
        stats["sessions"] += 1
        if stats["sessions"] % 1000 == 0:
            rate = stats["sessions"] / (time.monotonic() - started)
            print(f"{stats['sessions']:.0f} sessions, {rate:.0f}/s", flush=True)
        assert closed, "the server did not close the session after QUIT"
        problems = check_transcript(received)
        assert not problems, problems

    one()
    stats["seconds"] = time.monotonic() - started
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--port", type=int, help="fuzz a running gateway instead")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per session")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    if args.port:
        stats = fuzz(args.port, args.sessions, args.timeout)
    else:
        limits = Limits(max_message_size=64 * 1024, max_recipients=20, command_timeout=3.0,
                        session_timeout=10.0)
        with tempfile.TemporaryDirectory() as tmp, \
                IntakeHarness(Path(tmp), relay_listener(), limits=limits) as gw:
            stats = fuzz(gw.port, args.sessions, args.timeout)
    print(f"{stats['sessions']:.0f} sessions in {stats['seconds']:.1f}s, all replies "
          f"well-formed; slowest session {stats['slowest']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
