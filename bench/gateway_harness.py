"""Shared by bench/priority_latency.py, bench/soak.py and bench/two_nodes.py: a gateway subprocess
configured as in production (durable spool, intake workers), a timing sink, an
SMTP client, and RSS sampling of the gateway's processes from /proc.

The sink is aiosmtpd in a thread of the bench process; it notes when each
message arrived (time.monotonic) under its `X-Bench-Id:` header, and can answer
recipients by their local part: `defer*@` gets 451 until the message has been
tried `defer_attempts` times, `bounce*@` gets 550.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.net import free_port, wait_listening  # noqa: E402

__all__ = ["TimingSink", "children", "free_port", "percentile", "rss_kib", "send", "start_gateway",
           "stop_gateway", "write_config"]


class TimingSink:
    def __init__(self, data_delay: float = 0.0, defer_attempts: int = 2) -> None:
        self.data_delay = data_delay
        self.defer_attempts = defer_attempts
        self.arrivals: dict[str, float] = {}  # X-Bench-Id → monotonic arrival time
        self.count = 0
        self.rejected = 0
        self._tries: dict[str, int] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      ready_timeout=10)

    def start(self) -> TimingSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        local = address.split("@", 1)[0]
        if local.startswith("bounce"):
            with self.lock:
                self.rejected += 1
            return "550 5.1.1 No such user"
        if local.startswith("defer"):
            with self.lock:
                tries = self._tries[address] = self._tries.get(address, 0) + 1
            if tries <= self.defer_attempts:
                return "451 4.2.0 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        now = time.monotonic()
        data = envelope.original_content or b""
        start = data.find(b"X-Bench-Id: ")
        bench_id = data[start + 12:data.find(b"\r\n", start)].decode() if start >= 0 else ""
        with self.lock:
            self.count += 1
            if bench_id:
                self.arrivals[bench_id] = now
        return "250 2.0.0 OK"


def write_config(directory: Path, port: int, sink_port: int, *, extra: str = "",
                 consent: str | None = None, sink_connections: int = 20,
                 breaker_failures: int = 3, workers: int | str = "auto") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if consent is not None:
        (directory / "policies").mkdir(exist_ok=True)
        (directory / "policies" / "consent.yaml").write_text(textwrap.dedent(consent))
    path = directory / "config.yaml"
    path.write_text(textwrap.dedent(f"""\
        hostname: gateway.bench
        data_dir: ./var
        log_level: warning
        intake_workers: {workers}
        listeners:
          - {{name: relay, kind: relay, address: 127.0.0.1, port: {port},
              networks: [127.0.0.0/8]}}
        limits:
          max_sessions: 500
          max_sessions_per_ip: 500
        delivery:
          helo_name: gateway.bench
        routes:
          - name: sink
            type: smarthost
            smarthosts:
              - {{name: sink, host: 127.0.0.1, port: {sink_port}, tls: none,
                  max_connections: {sink_connections}}}
            retry:
              delays: [5s, 10s]
              repeat: 10s
            circuit_breaker: {{failures: {breaker_failures}}}
        """) + textwrap.dedent(extra))
    return path


def start_gateway(config: Path, port: int) -> subprocess.Popen[bytes]:
    log = open(config.parent / "gateway.log", "ab")  # noqa: SIM115 (lives with the process)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "-c", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=config.parent,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wait_listening(port, timeout=60)
    return proc


def stop_gateway(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(30)


def send(port: int, bench_id: str, rcpts: list[str], *, category: str | None = None,
         size: int = 0, conn: smtplib.SMTP | None = None) -> str:
    """One message; returns the 250 reply text. `conn` reuses an open session."""
    head = (f"From: App <app@example.com>\r\nTo: {rcpts[0]}\r\nSubject: {bench_id}\r\n"
            f"Message-ID: <{bench_id}@bench.example>\r\nX-Bench-Id: {bench_id}\r\n")
    if category:
        head += f"X-Gateway-Category: {category}\r\n"
    body = ("x" * 76 + "\r\n") * (size // 78) + "end\r\n"
    message = (head + "\r\n" + body).encode()
    own = conn is None
    smtp = conn or smtplib.SMTP("127.0.0.1", port, timeout=60)
    try:
        if own:
            smtp.ehlo("bench.example")
        refused = smtp.sendmail("app@example.com", rcpts, message)
        assert not refused, refused
        return "250"
    finally:
        if own:
            smtp.quit()


def children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(c) for c in text.split())
    except OSError:
        pass
    return out


def rss_kib(pid: int) -> dict[int, int]:
    """VmRSS of `pid` and its children (the intake workers), KiB by pid."""
    out = {}
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[p] = int(line.split()[1])
        except OSError:
            continue
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
