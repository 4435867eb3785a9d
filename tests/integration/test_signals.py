"""SIGTERM drains and exits with nothing lost; SIGHUP reloads, and a bad file changes nothing."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink


def send(port: int, rcpts: list[str]) -> dict[str, tuple[int, bytes]]:
    """Send one message; return the recipients the gateway refused."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        return s.sendmail("app@example.com", rcpts, "Subject: t\r\n\r\nhello\r\n")


def wait_for(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "intake-workers"])
def test_sigterm_stops_accepting_and_exits_cleanly_keeping_the_queue(
    tmp_path: Path, workers: int
) -> None:
    sink = Sink().start()
    sink.replies["later@example.net"] = "451 4.3.0 come back later"
    config = write_config(tmp_path, sink.port, extra=f"intake_workers: {workers}\n")
    gw = GatewayProcess(config).start()
    try:
        send(gw.port, ["now@example.net", "later@example.net"])
        wait_for(lambda: sink.count() == 1)
        gw.signal(signal.SIGTERM)
        assert gw.wait(timeout=30) == 0
        assert "stopped" in gw.output()
        if workers > 1:
            wait_for(lambda: not worker_pids(config))
        with pytest.raises(OSError):
            send(gw.port, ["x@example.net"])
        # The deferred recipient is still queued and goes out after a restart.
        del sink.replies["later@example.net"]
        gw.start()
        wait_for(lambda: "later@example.net" in sink.recipients())
    finally:
        gw.stop_hard()
        sink.stop()


def worker_pids(config: Path) -> list[int]:
    """Live intake worker processes of the gateway using this config file."""
    out = subprocess.run(["pgrep", "-f", f"intake-worker -c {config}"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "intake-workers"])
def test_sighup_applies_a_good_config_and_refuses_a_bad_one(tmp_path: Path,
                                                            workers: int) -> None:
    """With intake workers the master forwards SIGHUP: the new limit holds in every process."""
    sink = Sink().start()
    path = write_config(tmp_path, sink.port, extra=f"intake_workers: {workers}\n")
    gw = GatewayProcess(path).start()
    good = path.read_text()
    try:
        assert send(gw.port, ["a@example.net", "b@example.net"]) == {}
        path.write_text(good + "limits:\n  max_recipients: 1\n")
        gw.signal(signal.SIGHUP)
        # The master reloads, then forwards SIGHUP: wait for every worker's line too.
        processes = 1 + (workers if workers > 1 else 0)
        wait_for(lambda: gw.output().count("configuration reloaded") >= processes)
        for _ in range(6):  # several sessions: the kernel spreads them over the workers
            refused = send(gw.port, ["a@example.net", "b@example.net"])
            assert list(refused) == ["b@example.net"]
            code, text = refused["b@example.net"]
            assert code == 452 and text.startswith(b"4.5.3")
        # A broken edit: logged with file:line, and the running config stays in force.
        path.write_text(good + "limits:\n  max_recipients: lots\n")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in gw.output())
        assert f"{path}:" in gw.output() and "max_recipients" in gw.output()
        assert gw.proc is not None and gw.proc.poll() is None
        send(gw.port, ["c@example.net"])
        wait_for(lambda: "c@example.net" in sink.recipients())
    finally:
        gw.stop_hard()
        sink.stop()
