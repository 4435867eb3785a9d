"""Starts and stops the stages, reloads on SIGHUP, drains on SIGTERM (Postfix's master(8)).

Start order follows the message: state and spool first (start-up repairs the
queue before anything is accepted), then delivery and the scheduler, then the
listeners. Stop order is the reverse: listeners close first so nothing new is
accepted, in-flight deliveries get `shutdown_timeout`, then files are closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sqlite3
from collections.abc import Awaitable, Callable

from gateway import metrics
from gateway.admin.server import AdminServer
from gateway.api.server import ApiServer
from gateway.bounces.service import BounceService
from gateway.clock import Clock, SystemClock
from gateway.config import Config, load_config
from gateway.delivery.deliver import Delivery
from gateway.delivery.mta_sts import MtaSts
from gateway.delivery.mx import make_resolver
from gateway.delivery.router import Router
from gateway.delivery.tlsrpt import TlsReporter
from gateway.errors import ConfigError, GatewayError, StateUnavailable
from gateway.intake.accept import Acceptor, configure_intake
from gateway.intake.idempotency import settle_claims
from gateway.intake.processes import IntakeWorkers
from gateway.intake.smtpd import IntakeServer
from gateway.metrics.queue import BreakerCollector, QueueSampler
from gateway.model import Envelope, QueuedMessage, QueueState
from gateway.policy.runtime import PolicyRuntime
from gateway.policy.stage import PolicyStage
from gateway.scheduler.qmgr import Scheduler
from gateway.signing.signer import SigningCounters, SignOutcome, signer_for
from gateway.spool import Spool
from gateway.state.db import StateDb
from gateway.state.erasure_postgres import check_erasure_key
from gateway.state.migrations.sqlite import EVENTS
from gateway.state.retention import RetentionJob, purger_for
from gateway.state.store import STATE_ERRORS, StateStore, open_state
from gateway.tracking.listener import TrackingListener
from gateway.webhooks.dispatcher import WebhookDispatcher
from gateway.webhooks.outbox import Outbox, SqliteOutbox
from gateway.webhooks.outbox_postgres import PostgresOutbox

__all__ = ["Gateway", "serve"]

log = logging.getLogger(__name__)

_ABORT_TIMEOUT = 10.0  # seconds a failed start may spend closing what it opened


class Gateway:
    """One running gateway: every stage, wired together."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.state = open_state(config)
        self.spool = Spool(config.spool_dir, self.clock)
        # MTA-STS policies and TLS reports (issue 17), both kept in the state store.
        self.mta_sts = _mta_sts(config, self.state, self.clock)
        self.tls_reports = _tls_reports(config, self.state, self.clock, self._enqueue,
                                        self._sign_own)
        self._tls_jobs: list[asyncio.Task[None]] = []
        self.delivery = Delivery(config.delivery, self.clock, breaker_store=self.state.breakers,
                                 node=config.node_name, sts=self.mta_sts,
                                 outcomes=self.tls_reports)
        self.router = Router(config.routes)
        self.scheduler = Scheduler(self.spool, self.delivery, self.router, self.state.events,
                                   self.clock, config.delivery)
        self.signing_counters = SigningCounters()  # survive reloads: they only grow
        self.acceptor = Acceptor(self.spool, config.hostname, self.clock, self._on_queued,
                                 signer=signer_for(config.dkim, self.signing_counters))
        configure_intake(self.acceptor, config, self.state, self.clock)
        self.listeners = [IntakeServer(lst, config, self.acceptor, self.clock)
                          for lst in config.listeners]
        self.admin = AdminServer(self, config.admin) if config.admin is not None else None
        self.api = ApiServer(self, config.api) if config.api is not None else None
        self.tracking = (TrackingListener(config.tracking, self.state.events,
                                          self.state.consent, self.clock)
                         if config.tracking is not None else None)
        self.workers: IntakeWorkers | None = None
        self.queue_metrics = QueueSampler(self.spool, self.clock,
                                          config.metrics_sample_interval)
        self._collectors = (self.queue_metrics,
                            BreakerCollector(lambda: self.config.routes, self.delivery.breakers))
        # state.db beside the batched event writer, for what is off the hot path: the
        # webhook outbox and the retention purge (opened on first use; with PostgreSQL
        # both read the shared database instead, and state.db is not made).
        self.events_db = StateDb(config.state_path, EVENTS)
        self.webhooks = WebhookDispatcher(config.webhooks, _outbox(self.state, self.events_db,
                                                                   self.clock),
                                          self.clock, on_delivery=metrics.record_webhook_delivery)
        self.retention = RetentionJob(purger_for(self.state, self.events_db),
                                      config.retention, self.clock)
        self._reconfiguring: asyncio.Task[None] | None = None
        self.bounces = BounceService(config, self.state, self.spool, self.clock, self._enqueue)
        self.scheduler.on_filed = self.bounces.filed
        self.delivery.return_paths = self.bounces.return_paths
        self.acceptor.bounce_inbox = self.bounces.inbox
        # Policy files are read now, so a bad one stops the start like a bad config.
        self.policy = PolicyRuntime(config.policies_dir, self.state, self.clock,
                                    self._apply_policies, config.policy_snapshot_path)
        self.policy.load()

    def __repr__(self) -> str:
        ports = ", ".join(f"{n}={p}" for n, p in self.ports.items())
        return f"<Gateway {self.config.path} {ports} {self.scheduler!r}>"

    @property
    def ports(self) -> dict[str, int]:
        return {lst.listener.name: lst.port for lst in self.listeners}

    async def start(self, *, spawn_workers: bool = False) -> None:
        """Open state and spool, start delivery and listeners. With `spawn_workers` and
        intake_workers ≥ 2, SMTP runs in that many worker processes instead; we only
        reserve the ports (see _reserve_ports) until they listen."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.state.open()
        # Made now, before intake workers start, so every process hashes with it.
        self.state.hasher.ensure_key()
        try:
            await self._check_erasure_key()
        except ConfigError:
            await self.state.close()  # refused: nothing else has started yet
            raise
        self.policy.start()
        recovery = await self.spool.open()
        log.info("spool %s: %s", self.config.spool_dir, recovery)
        await self._settle_idempotency_claims()
        self.scheduler.start()
        self.queue_metrics.start()
        metrics.RUNNING.attach(self._collectors)
        if self.admin is not None:
            await self.admin.start()  # before the listeners: /readyz says when they are up
        if self.tracking is not None:
            await self.tracking.start()
        await self.webhooks.start()
        self.retention.start()
        self._start_tls_jobs()
        await self.bounces.start()
        if self.api is not None:
            await self.api.start()
        count = self.config.intake_workers if spawn_workers else 1
        if count == 1:
            for listener in self.listeners:
                await listener.start()
            return
        reserved = self._reserve_ports()
        try:
            self.workers = IntakeWorkers(count, self.config.path, self.ports,
                                         self.scheduler.notify_id, metrics.WORKERS)
            await self.workers.start()
        finally:
            for sock in reserved:
                sock.close()

    async def _settle_idempotency_claims(self) -> None:
        """Claims a killed process left between spool.put() and its reply
        (gateway.intake.idempotency.settle_claims); a store that is away is settled by
        the claims' STALE_AFTER instead."""
        if not self.config.idempotency.enabled:
            return  # its file is not even made
        files = self.spool.files
        in_spool = {qid for state in QueueState for qid in files.ids(state)}
        try:
            await settle_claims(self.state.idempotency, in_spool, self.clock.now(),
                                release_others=self.state.postgres is None)
        except STATE_ERRORS as exc:
            log.warning("idempotency claims not settled at start: %s", exc)

    async def _check_erasure_key(self) -> None:
        """With shared state, every node must hash erased addresses with the same key:
        refuse to start with another (ConfigError). A server that is away now is
        checked again at the next erase."""
        pool = self.state.postgres
        if pool is None:
            return
        try:
            await pool.run(lambda c: check_erasure_key(c, self.state.hasher, self.clock.now()),
                           transaction=True)
        except StateUnavailable as exc:
            log.warning("erasure key not compared with the other nodes' yet: %s", exc)

    def _reserve_ports(self) -> list[socket.socket]:
        """Bind each listener's port with SO_REUSEPORT but never listen on it.

        The bound socket gives `port: 0` its number for the workers and holds the
        port while they start. It must not listen: the kernel would queue some
        connections on it, and closing it once the workers are up would reset them.
        """
        out = []
        for server in self.listeners:
            lst = server.listener
            family = socket.AF_INET6 if ":" in lst.address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((lst.address, lst.port))
            server.port = int(sock.getsockname()[1])
            out.append(sock)
        return out

    async def stop(self) -> None:
        if self.workers is not None:
            await self.workers.stop()  # they finish their sessions and report their ids
        for listener in self.listeners:
            await listener.stop()
        if self.api is not None:
            await self.api.stop()
        await self.scheduler.stop(self.config.shutdown_timeout)
        if self.admin is not None:
            await self.admin.stop()
        if self.tracking is not None:
            await self.tracking.stop()
        await self.queue_metrics.stop()
        metrics.RUNNING.detach(self._collectors)
        await self.bounces.stop()
        await self._stop_tls_jobs()
        await self.delivery.close()
        if self._reconfiguring is not None:
            await self._reconfiguring
        # Whatever the senders had not sent waits in state.db for the next start.
        await self.webhooks.stop()
        await self.retention.stop()
        await self.events_db.close()
        await self.spool.close()
        await self.policy.stop()
        await self.state.close()

    async def stop_all_quietly(self) -> None:
        """stop() for a start that failed part-way: every part in stop()'s order, each
        on its own, errors logged (a part that never started may fail to stop)."""
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if self.workers is not None:
            steps.append(("intake workers", self.workers.stop))
        steps += [(f"listener {lst.listener.name}", lst.stop) for lst in self.listeners]
        if self.api is not None:
            steps.append(("api", self.api.stop))
        steps.append(("scheduler", lambda: self.scheduler.stop(0.0)))
        if self.admin is not None:
            steps.append(("admin", self.admin.stop))
        if self.tracking is not None:
            steps.append(("tracking", self.tracking.stop))
        steps += [("queue metrics", self.queue_metrics.stop), ("bounces", self.bounces.stop),
                  ("delivery", self.delivery.close), ("webhooks", self.webhooks.stop),
                  ("retention", self.retention.stop), ("events db", self.events_db.close),
                  ("spool", self.spool.close), ("policy", self.policy.stop),
                  ("state", self.state.close)]
        steps.append(("metrics", self._detach_collectors))
        for name, step in steps:
            try:
                await step()
            except Exception as exc:  # each part on its own (see the docstring)
                log.debug("stopping %s after a failed start: %s", name, exc)

    async def _detach_collectors(self) -> None:
        metrics.RUNNING.detach(self._collectors)

    def reload(self) -> bool:
        """Re-read the config file; a bad file changes nothing and is logged."""
        # Policy files first, on their own: each keeps its old version when bad.
        self.policy.reload()
        try:
            new = load_config(self.config.path)  # reads the DKIM keys too
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays:\n%s", exc)
            metrics.record_reload("config", False)
            return False
        # Built in full before anything changes; the swap below is one assignment, so
        # each message is signed with the old keys or the new ones, never with none.
        signer = signer_for(new.dkim, self.signing_counters)
        changed = _restart_only_changes(self.config, new)
        if changed:
            log.warning("reload: %s change only on restart", ", ".join(changed))
        self.config = new
        self.router = Router(new.routes)
        self.delivery.reconfigure(new.delivery)
        if self.mta_sts is not None:
            self.mta_sts.config = new.delivery.mta_sts
        if self.tls_reports is not None:
            self.tls_reports.config = new.delivery.tls_reports
        self.scheduler.reconfigure(self.router, new.delivery)
        self.acceptor.signer = signer
        configure_intake(self.acceptor, new, self.state, self.clock)
        self.bounces.reconfigure(new)
        for listener in self.listeners:
            listener.reconfigure(new)
        self.retention.config = new.retention
        if new.webhooks != self.webhooks.configs or any(
                s.paused for s in self.webhooks.senders.values()):
            self._reconfiguring = asyncio.get_running_loop().create_task(
                self._reconfigure_webhooks(self._reconfiguring, new))
        log.info("configuration reloaded from %s", new.path)
        metrics.record_reload("config", True)
        return True

    def listener_problems(self) -> list[str]:
        """Why intake is not up, for /readyz (empty: every listener accepts)."""
        if self.workers is not None:
            running = self.workers.running
            if running < self.workers.count:
                return [f"{running} of {self.workers.count} intake workers are running"]
            return []
        return [f"listener {lst.listener.name} is not listening"
                for lst in self.listeners if not lst.serving]
    async def _reconfigure_webhooks(self, previous: asyncio.Task[None] | None,
                                    new: Config) -> None:
        if previous is not None:
            await previous  # reloads in quick succession apply in order
        try:
            await self.webhooks.reconfigure(new.webhooks)
        except Exception:
            log.exception("reload: webhooks could not be restarted")

    def loops(self) -> tuple[asyncio.Task[None], ...]:
        """The background tasks that run as long as the gateway does."""
        return (*self.scheduler.loops, *self.retention.loops, *self._tls_jobs)

    def _start_tls_jobs(self) -> None:
        """The MTA-STS refresh and the TLS report counters' flush and daily send."""
        loop = asyncio.get_running_loop()
        jobs = [j for j in (self.mta_sts, self.tls_reports) if j is not None]
        self._tls_jobs = [loop.create_task(job.run()) for job in jobs]

    async def _stop_tls_jobs(self) -> None:
        for task in self._tls_jobs:
            task.cancel()
        await asyncio.gather(*self._tls_jobs, return_exceptions=True)
        self._tls_jobs = []
        if self.mta_sts is not None:
            await self.mta_sts.close()
        if self.tls_reports is not None:
            await self.tls_reports.close()  # the last counters go to the store

    def _sign_own(self, content: bytes) -> bytes:
        """Mail the gateway writes itself (TLS reports), signed with its DKIM keys like
        relayed mail; unsigned (and logged) when no key signs for the sender."""
        signer = self.acceptor.signer
        if signer is None:
            return content
        result = signer.sign(content)
        if result.outcome is not SignOutcome.SIGNED:
            log.warning("own message not DKIM-signed: %s", result.reason or result.outcome)
            return content
        return result.content

    def _apply_policies(self, stage: PolicyStage | None) -> None:
        self.acceptor.policies = stage
        self.bounces.apply_policies(stage.policies if stage is not None else None)

    async def _enqueue(self, envelope: Envelope, content: bytes) -> QueuedMessage:
        """Queue mail the gateway writes itself (DSNs) like any accepted message."""
        qm = await self.spool.put(envelope, content)
        self._on_queued(qm)
        return qm

    def _on_queued(self, qm: QueuedMessage) -> None:
        self.state.events.record_accepted(qm, self.clock.now())
        self.scheduler.notify(qm)


def _mta_sts(config: Config, state: StateStore, clock: Clock) -> MtaSts | None:
    d = config.delivery
    return MtaSts(d.mta_sts, d.dns, d.ca_file, state.tls, clock) if d.mta_sts.enabled else None


def _tls_reports(config: Config, state: StateStore, clock: Clock,
                 enqueue: Callable[[Envelope, bytes], Awaitable[QueuedMessage]],
                 sign: Callable[[bytes], bytes]) -> TlsReporter | None:
    d = config.delivery
    if not d.tls_reports.enabled:
        return None
    return TlsReporter(d.tls_reports, state.tls, clock, hostname=config.hostname,
                       node=config.node_name, resolver=make_resolver(d.dns), enqueue=enqueue,
                       sign=sign, ca_file=d.ca_file)


def _outbox(state: StateStore, events_db: StateDb, clock: Clock) -> Outbox:
    if state.postgres is not None:
        return PostgresOutbox(state.postgres, clock)
    return SqliteOutbox(events_db)


def _restart_only_changes(old: Config, new: Config) -> list[str]:
    out = []
    if old.listeners != new.listeners:
        out.append("listeners")
    if old.data_dir != new.data_dir:
        out.append("data_dir")
    if old.policies_dir != new.policies_dir:
        out.append("policies_dir")
    old_admin = (old.admin.address, old.admin.port) if old.admin else None
    if old_admin != ((new.admin.address, new.admin.port) if new.admin else None):
        out.append("admin listener")
    if old.api != new.api:
        out.append("api listener")
    if old.bounces != new.bounces:
        out.append("bounces")
    if old.state != new.state:
        out.append("state")
    if old.node_name != new.node_name:
        out.append("node_name")
    return out


async def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads. Returns the process exit code.

    `config` has passed preflight(). A start that fails after that (a port in use, a
    database away, a worker that dies) closes whatever had started — threads and
    worker processes included — and returns 1 within seconds, so a supervisor such
    as systemd sees the failure and restarts; a ConfigError is raised again for
    main() to print, the same lines check-config prints."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Before start(): a SIGTERM that comes while workers start is a stop, not a kill.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    gateway: Gateway | None = None
    try:
        gateway = Gateway(config)
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload_all(gateway))
        await gateway.start(spawn_workers=True)
    except Exception as exc:
        await _abort(gateway)
        if isinstance(exc, ConfigError):
            raise
        if isinstance(exc, OSError | GatewayError | ValueError | sqlite3.Error):
            log.error("cannot start: %s", _one_line(exc))  # a port in use, a disk, …
        else:
            log.exception("cannot start: %s", _one_line(exc))  # a bug: keep its traceback
        return 1
    log.info("smtp-gateway ready: %r", gateway)
    if await _until_stopped(stop, gateway.loops()):
        await _abort(gateway)
        return 1
    log.info("stopping: no new sessions; waiting up to %.0fs for deliveries",
             gateway.config.shutdown_timeout)
    await gateway.stop()
    log.info("stopped")
    return 0


async def _until_stopped(stop: asyncio.Event, loops: tuple[asyncio.Task[None], ...]) -> bool:
    """Wait for SIGTERM/SIGINT — or for one of the gateway's loops to end first, which
    nothing recovers from (each loop retries what can fail; one that ends met a bug
    or a broken spool): logged, and True, so the process exits 1 and systemd's
    Restart=on-failure starts it again, which repairs the spool or refuses with a
    clear line, instead of a process that looks alive and no longer works."""
    stopped: asyncio.Task[None] = asyncio.ensure_future(_wait(stop))
    done, _ = await asyncio.wait({stopped, *loops}, return_when=asyncio.FIRST_COMPLETED)
    if stopped in done:
        return False
    stopped.cancel()
    for task in done:
        exc = None if task.cancelled() else task.exception()
        reason = _one_line(exc) if exc is not None else "it ended"
        name = getattr(task.get_coro(), "__qualname__", "a background task")
        log.error("fatal: %s stopped (%s); exiting", name, reason)
    return True


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


async def _abort(gateway: Gateway | None) -> None:
    """Close what a failed start opened. Each part is stopped on its own, so a part that
    never started (and fails to stop) does not keep the others running; bounded, so a
    part that hangs cannot hold the exit."""
    if gateway is None:
        return
    try:
        await asyncio.wait_for(gateway.stop_all_quietly(), _ABORT_TIMEOUT)
    except TimeoutError:
        log.error("cannot start: parts still stopping after %.0fs; exiting anyway",
                  _ABORT_TIMEOUT)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


def _reload_all(gateway: Gateway) -> None:
    if gateway.reload() and gateway.workers is not None:
        gateway.workers.signal(signal.SIGHUP)
