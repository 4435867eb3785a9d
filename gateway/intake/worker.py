"""An intake worker process: SMTP sessions on more than one core (Postfix runs many smtpd(8)).

With `intake_workers: N` (N ≥ 2) the master (gateway.supervisor) starts N of
these; it only reserves the ports (bound, never listening) until they listen.
SMTP sessions run in the workers, the queue manager and delivery in the master (Postfix's smtpd(8)
versus qmgr(8) and smtp(8)). Each worker binds the same ports with
SO_REUSEPORT, so the kernel spreads connections across them; each stores what it accepts in the
shared spool's incoming/ through the same durable write path (the 250 still
waits for the fsync), records the `accepted` events, and writes the queue id
to its stdout, where the master reads it and schedules the message at once.
Once a second (when they changed) it also writes its intake metrics there
(gateway.metrics.workers), so the master's /metrics covers every process.
The master alone owns the queue index and delivery.

Lifeline: stdin is a pipe from the master. EOF — the master exited, even by
kill -9 — makes the worker stop accepting, finish sessions in DATA and exit;
whatever it accepted is in incoming/, where the master's next start finds it.

Security: as gateway.intake.smtpd (this process is where untrusted input is parsed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from gateway.bounces.service import inbox_for
from gateway.clock import SystemClock
from gateway.config import Config, load_config
from gateway.core import early_signals
from gateway.errors import ConfigError
from gateway.intake.accept import Acceptor, configure_intake
from gateway.intake.smtpd import IntakeServer
from gateway.metrics.workers import METRICS_PREFIX, snapshot
from gateway.model import QueuedMessage
from gateway.policy.runtime import PolicyRuntime
from gateway.policy.stage import PolicyStage
from gateway.signing.signer import SigningCounters, signer_for
from gateway.spool import Spool
from gateway.state.store import open_state

__all__ = ["READY", "parse_ports", "run_worker"]

READY = b"READY"
METRICS_INTERVAL = 1.0  # seconds between metrics lines to the master (when they changed)

log = logging.getLogger(__name__)


def parse_ports(text: str) -> dict[str, int]:
    """'relay=2525,submission=587' → {'relay': 2525, 'submission': 587}; ValueError
    naming the item that is not `name=port`."""
    out: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        name, _, port = item.partition("=")
        if not port.isdigit() or int(port) > 65535:
            raise ValueError(f"--ports: '{item}' is not listener=port")
        out[name] = int(port)
    return out


class _Worker:
    def __init__(self, config: Config, ports: dict[str, int]) -> None:
        self.config = config
        self.clock = SystemClock()
        self.state = open_state(config)
        self.spool = Spool(config.spool_dir, self.clock)
        self.counters = SigningCounters()
        self.acceptor = Acceptor(self.spool, config.hostname, self.clock, self._on_queued,
                                 signer=signer_for(config.dkim, self.counters))
        configure_intake(self.acceptor, config, self.state, self.clock)
        self.listeners = [
            IntakeServer(replace(lst, port=ports.get(lst.name, lst.port)), config,
                         self.acceptor, self.clock)
            for lst in config.listeners
        ]
        # Bounces are only stored here; the master's Maildir poller processes them.
        self.acceptor.bounce_inbox = inbox_for(config)
        self._out = sys.stdout.buffer
        self._last_metrics = b""
        self.policy = PolicyRuntime(config.policies_dir, self.state, self.clock,
                                    self._apply_policies, config.policy_snapshot_path)
        self.policy.load(fallback=True)

    def _apply_policies(self, stage: PolicyStage | None) -> None:
        self.acceptor.policies = stage

    def _on_queued(self, qm: QueuedMessage) -> None:
        self.state.events.record_accepted(qm, self.clock.now())
        try:
            # With its priority, so the master places it without reading the file.
            self._out.write(f"{qm.id} {qm.envelope.priority.label}\n".encode("ascii"))
            self._out.flush()
        except OSError:
            # The master is gone; the message is safe in incoming/ for its next start.
            log.warning("master unreachable; %s waits in incoming/", qm.id)

    async def start(self) -> None:
        await self.state.open()
        self.policy.start()
        self.spool.open_for_intake()
        for listener in self.listeners:
            await listener.start(reuse_port=True)
        self._out.write(READY + b"\n")  # the master releases its port reservations on this
        self._out.flush()  # OSError: the master died while we started (caller stops us)

    def send_metrics(self) -> None:
        """Our intake samples to the master (see gateway.metrics.workers), if changed."""
        payload = snapshot()
        if payload == self._last_metrics:
            return
        try:
            self._out.write(METRICS_PREFIX + payload + b"\n")
            self._out.flush()
        except OSError:
            return  # the master is gone; the lifeline stops us
        self._last_metrics = payload

    async def report_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_INTERVAL)
            self.send_metrics()

    async def stop(self) -> None:
        for listener in self.listeners:
            await listener.stop()
        self.send_metrics()  # the last word: what the sessions just finished counted
        await self.spool.close()
        await self.policy.stop()
        await self.state.close()

    def reload(self) -> None:
        # Policy files first, on their own: each keeps its old version when bad.
        self.policy.reload()
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            log.error("worker reload refused:\n%s", exc)
            return
        self.config = new
        self.acceptor.signer = signer_for(new.dkim, self.counters)
        configure_intake(self.acceptor, new, self.state, self.clock)
        for listener in self.listeners:
            listener.reconfigure(new)
        log.info("intake worker %d: configuration reloaded from %s", os.getpid(), new.path)


async def run_worker(config_path: Path, ports: dict[str, int]) -> int:
    worker = _Worker(load_config(config_path), ports)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, worker.reload)
    if early_signals.hup_pending:  # came while we started: the config we read may be old
        worker.reload()
    loop.add_reader(sys.stdin.fileno(), _watch_lifeline, stop)
    try:
        try:
            await worker.start()
        except OSError as exc:
            # Killed master (READY found no reader) or a port we could not bind.
            log.error("intake worker cannot start: %s", exc)
            return 1
        reporter = loop.create_task(worker.report_metrics())
        await stop.wait()
        reporter.cancel()
        return 0
    finally:
        # Always: an open state store keeps its thread, and the process would never exit.
        loop.remove_reader(sys.stdin.fileno())
        await worker.stop()


def _watch_lifeline(stop: asyncio.Event) -> None:
    import os

    if not os.read(sys.stdin.fileno(), 4096):
        log.info("master gone: intake worker stopping")
        stop.set()
