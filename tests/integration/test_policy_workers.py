"""Policies with intake worker processes: rate counters and suppressions are shared
through state.db (not process memory), and SIGHUP reloads policy files in every
process, a broken one changing nothing."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_signals import wait_for, worker_pids


def rcpt(port: int, address: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.test")
        s.mail("app@example.com")
        code, text = s.rcpt(address)
        s.rset()
    return code, text.decode()


def test_shared_counters_suppressions_and_sighup(tmp_path: Path) -> None:
    write_policy(tmp_path, "ratelimits.yaml", """\
        limits:
          - name: per-guest
            key: [recipient]
            rate: 1/h
            burst: 4
        """)
    suppression = write_policy(tmp_path, "suppression.yaml", "entries: []\n")
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra="intake_workers: 2\n")
    gw = GatewayProcess(config).start()
    try:
        wait_for(lambda: "smtp-gateway ready" in gw.output())  # the workers serve SMTP
        # Each session is a new connection, spread over both workers by the kernel:
        # the burst of 4 holds in total, not per process.
        codes = [rcpt(gw.port, "guest@limited.example")[0] for _ in range(10)]
        assert codes == [250] * 4 + [451] * 6
        # A suppression added by the CLI while running applies in every worker at once.
        done = subprocess.run([sys.executable, "-m", "gateway", "suppress", "add",
                               "blocked@example.net", "-c", str(config)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert {rcpt(gw.port, "blocked@example.net")[0] for _ in range(3)} == {550}
        # A broken edit + SIGHUP: logged, the old policy stays everywhere.
        suppression.write_text("entries:\n  - domain: other.example\n    scope: [\n")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: gw.output().count("policy reload refused") >= 3)  # master + 2
        assert {rcpt(gw.port, f"a{i}@other.example")[0] for i in range(6)} == {250}
        # A worker restarted meanwhile starts with the last good policy, not at all
        # (no SMTP service) or with none (suppressed mail let through).
        victim = worker_pids(config)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(config)) == 2 and victim not in worker_pids(config))
        wait_for(lambda: "running the last good policy" in gw.output())
        assert {rcpt(gw.port, "blocked@example.net")[0] for _ in range(3)} == {550}
        assert {rcpt(gw.port, "guest@limited.example")[0] for _ in range(6)} == {451}
        # A good edit + SIGHUP: applies in every worker.
        suppression.write_text("entries:\n  - domain: other.example\n")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: gw.output().count("policies reloaded") >= 3)
        assert {rcpt(gw.port, f"b{i}@other.example")[0] for i in range(6)} == {550}
    finally:
        gw.stop_hard()
        for pid in worker_pids(config):
            os.kill(pid, signal.SIGKILL)
        sink.stop()
