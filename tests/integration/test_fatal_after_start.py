"""A fatal error after a good start ends the process (issue 20): a loop of the gateway's
that ends before SIGTERM (here the delivery journal's keeper, whose directory was
removed under it) stops everything and exits 1 within seconds, so systemd restarts it
— never a process that looks alive and has stopped working."""

from __future__ import annotations

import shutil
import signal
import smtplib
import time
from pathlib import Path

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink


def test_a_loop_that_dies_after_start_ends_the_process(tmp_path: Path) -> None:
    sink = Sink().start()
    gw = GatewayProcess(write_config(tmp_path, sink.port)).start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
            client.sendmail("app@example.com", ["guest@example.net"],
                            "Subject: one\r\n\r\nbody\r\n")
        sink.wait_for(1)
        # The journal's current segment holds the delivery; its next cut (every
        # second) cannot open a new segment in a directory that is gone.
        shutil.rmtree(tmp_path / "var" / "spool" / "journal")
        started = time.monotonic()
        assert gw.wait(timeout=30) == 1, gw.output()[-3000:]
        assert time.monotonic() - started < 15
        output = gw.output()
        assert "fatal: Scheduler._keep_journal stopped" in output, output[-3000:]
        assert "Traceback" not in output
    finally:
        gw.stop_hard()
        sink.stop()


def test_sigterm_still_exits_0(tmp_path: Path) -> None:
    sink = Sink().start()
    gw = GatewayProcess(write_config(tmp_path, sink.port)).start()
    try:
        gw.signal(signal.SIGTERM)
        assert gw.wait(timeout=30) == 0, gw.output()[-3000:]
        assert "fatal" not in gw.output()
    finally:
        gw.stop_hard()
        sink.stop()
