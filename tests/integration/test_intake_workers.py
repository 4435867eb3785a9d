"""Intake worker processes: the master restarts one that dies, and mail keeps flowing."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from pathlib import Path

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink
from tests.integration.test_signals import wait_for, worker_pids


def test_a_killed_worker_is_replaced_and_mail_still_flows(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra="intake_workers: 2\n")
    gw = GatewayProcess(config).start()
    try:
        wait_for(lambda: len(worker_pids(config)) == 2)
        victim = worker_pids(config)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(config)) == 2 and victim not in worker_pids(config))
        assert "exited with -9; restarting" in gw.output()
        deadline = time.monotonic() + 30
        sent = 0
        while sent < 20 and time.monotonic() < deadline:
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
                s.sendmail("app@example.com", [f"g{sent}@example.net"], "Subject: x\r\n\r\nx\r\n")
            sent += 1
        sink.wait_for(20)
        assert sorted(sink.recipients()) == sorted(f"g{i}@example.net" for i in range(20))
    finally:
        gw.stop_hard()
        for pid in worker_pids(config):
            os.kill(pid, signal.SIGKILL)
        sink.stop()
