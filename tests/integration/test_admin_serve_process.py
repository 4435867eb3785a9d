"""The admin API in a real `smtp-gateway serve` with intake worker processes: the
master serves it, a correlation header recorded by a worker is traceable, a
SIGHUP applies a new token, and SIGTERM stops everything cleanly. Requests go
through urllib (another HTTP client than the other admin tests)."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures.admin import TOKEN, admin_section
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.net import free_port, wait_listening
from tests.fixtures.sink import Sink
from tests.integration.test_signals import wait_for, worker_pids


def request(port: int, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_admin_api_in_the_master_with_intake_workers(tmp_path: Path) -> None:
    sink = Sink().start()
    admin_port = free_port()
    config = write_config(tmp_path, sink.port, extra="intake_workers: 2\n" + admin_section(
        tmp_path, port=admin_port, extra="correlation_headers: [X-Booking-Id]\n"))
    gw = GatewayProcess(config).start()
    try:
        wait_listening(admin_port)
        wait_for(lambda: request(admin_port, "/readyz", None)[0] == 200)
        assert len(worker_pids(config)) == 2
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
            s.sendmail("app@example.com", ["guest@example.net"],
                       "Subject: Booking\r\nX-Booking-Id: B-77\r\n\r\nSee you.\r\n")
        sink.wait_for(1)

        def delivered() -> bool:
            status, body = request(admin_port, "/v1/trace?header=X-Booking-Id&value=B-77")
            return status == 200 and [e["type"] for e in
                                      body["messages"][0]["recipients"][0]["events"]] == [
                "accepted", "delivered"]

        wait_for(delivered)  # in time order, though a worker wrote `accepted`

        new_token = "rotated-token-0123456789abcdef"
        (tmp_path / "admin.token").write_text(new_token + "\n")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: request(admin_port, "/v1/queue")[0] == 401)
        assert request(admin_port, "/v1/queue", new_token) == (200, {"items": [],
                                                                      "next": None})
        gw.signal(signal.SIGTERM)
        assert gw.wait(60) == 0
        assert "admin API on 127.0.0.1" in gw.output()
        assert TOKEN not in gw.output() and new_token not in gw.output()
    finally:
        gw.stop_hard()
        for pid in worker_pids(config):
            os.kill(pid, signal.SIGKILL)
        sink.stop()


def test_admin_port_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    sink = Sink().start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, sink.port, extra=f"admin:\n  port: {port}\n")
        try:
            run = subprocess.run([sys.executable, "-m", "gateway", "serve", "-c", str(config)],
                                 capture_output=True, text=True, timeout=60, cwd=tmp_path)
        finally:
            sink.stop()
    assert run.returncode == 1
    assert (f"cannot start: [Errno 98] admin listener on 127.0.0.1:{port}: Address already "
            "in use") in run.stderr
    assert "Traceback" not in run.stderr
