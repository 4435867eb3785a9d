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


def scrape(port: int) -> dict[str, float]:
    """GET /metrics over HTTP; every sample as `name{labels}` → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def test_metrics_scraped_over_http_from_a_serve_with_workers(tmp_path: Path) -> None:
    # What Prometheus sees: the master's /metrics after real SMTP traffic that the
    # intake worker processes took in, and promtool's verdict on the exposition.
    sink = Sink().start()
    admin_port = free_port()
    config = write_config(tmp_path, sink.port,
                          extra="intake_workers: 2\n" + admin_section(tmp_path, port=admin_port))
    gw = GatewayProcess(config).start()
    try:
        wait_listening(admin_port)
        wait_for(lambda: request(admin_port, "/readyz", None)[0] == 200)
        for i in range(6):
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
                s.sendmail("app@example.com", [f"guest{i}@example.net"],
                           f"Subject: Booking {i}\r\n\r\nSee you.\r\n")
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
            s.ehlo("app.test")
            s.mail("app@example.com")
            assert s.rcpt("someone@elsewhere.test")[0] == 250
            assert s.rcpt("not an address")[0] // 100 == 5
            assert s.data(b"Subject: Booking 6\r\n\r\nSee you.\r\n")[0] == 250
        sink.wait_for(7)

        accepted = 'smtp_gateway_messages_accepted_total{listener="relay"}'
        delivered = ('smtp_gateway_recipients_total{category="none",outcome="delivered",'
                     'route="sink"}')

        def moved() -> bool:
            samples = scrape(admin_port)
            return samples.get(accepted) == 7 and samples.get(delivered) == 7

        wait_for(moved)  # workers report once a second
        samples = scrape(admin_port)
        assert samples['smtp_gateway_delivery_latency_seconds_count{category="none",'
                       'route="sink"}'] == 7
        assert samples['smtp_gateway_intake_latency_seconds_count{listener="relay"}'] == 7
        rejected = [v for s, v in samples.items()
                    if s.startswith("smtp_gateway_messages_rejected_total{")]
        assert sum(rejected) == 1, rejected
        assert not [s for s in samples if "@" in s or "example.net" in s]  # no addresses
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics",
                                    timeout=10) as resp:
            body = resp.read()
        check = subprocess.run(["promtool", "check", "metrics"], input=body,
                               capture_output=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        gw.stop_hard()
        for pid in worker_pids(config):
            os.kill(pid, signal.SIGKILL)
        sink.stop()
