"""The master's side of intake worker processes (Postfix master(8) and its smtpd children).

Starts `intake_workers` processes running gateway.intake.worker, reads the
queue ids (with priorities) they print and hands them to the scheduler (and their metrics lines
to gateway.metrics.workers), forwards SIGHUP, stops
them first on SIGTERM, and restarts one that dies (after a pause, so a worker
that crashes at start cannot spin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.intake.worker import READY
from gateway.metrics.workers import METRICS_PREFIX, WorkerMetrics
from gateway.model import Priority, QueueId
from gateway.spool.queue_id import is_queue_id

__all__ = ["IntakeWorkers"]

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0  # seconds before a dead worker is started again
STOP_TIMEOUT = 30.0  # seconds a worker gets to finish its sessions on SIGTERM
_LINE_LIMIT = 1 << 20  # a metrics line (gateway.metrics.workers) may pass 64 KiB


class IntakeWorkers:
    def __init__(self, count: int, config_path: Path, ports: dict[str, int],
                 on_queued: Callable[[QueueId, Priority | None], None],
                 metrics: WorkerMetrics | None = None) -> None:
        self.count = count
        self.metrics = metrics or WorkerMetrics()
        self.config_path = config_path
        self.ports = ports
        self.on_queued = on_queued
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._ready = asyncio.Semaphore(0)
        self._starting = True
        # Set by a worker that exits before it listens while start() waits: the start
        # fails at once (a broken worker is not restarted for start()'s whole timeout).
        self._start_failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        pids = ",".join(str(p.pid) for p in self._procs.values())
        return f"<IntakeWorkers {len(self._procs)}/{self.count} pids={pids}>"

    @property
    def running(self) -> int:
        """Worker processes alive now (for the admin API's /readyz)."""
        return sum(1 for proc in self._procs.values() if proc.returncode is None)

    async def start(self, timeout: float = 30.0) -> None:
        """Start every worker; return once each listens. ChildProcessError if one exits
        before it listens, TimeoutError after `timeout` (both OSErrors: serve exits)."""
        for slot in range(self.count):
            self._tasks.append(asyncio.get_running_loop().create_task(self._keep(slot)))
        ready: asyncio.Future[object] = asyncio.ensure_future(self._all_ready())
        failed: asyncio.Future[object] = self._start_failed  # type: ignore[assignment]
        try:
            done, _ = await asyncio.wait({ready, failed}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            self._starting = False
        if failed in done:
            raise ChildProcessError(self._start_failed.result())
        if ready not in done:
            raise TimeoutError(f"intake workers did not listen within {timeout:.0f}s")

    async def _all_ready(self) -> None:
        for _ in range(self.count):
            await self._ready.acquire()

    async def _keep(self, slot: int) -> None:
        """Run one worker slot: start it, relay its queue ids, restart it if it dies."""
        while not self._stopping:
            proc = await self._spawn()
            self._procs[slot] = proc
            listened = await self._relay(proc)
            code = await proc.wait()
            self.metrics.retire(proc.pid)  # what it counted stays in the sums
            self._procs.pop(slot, None)
            if self._stopping:
                return
            # Exited by itself before it listened, while start() waits: it cannot start
            # (killed by a signal instead: someone else's doing, so restarted below).
            if self._starting and not listened and code is not None and code >= 0:
                if not self._start_failed.done():
                    self._start_failed.set_result(
                        f"intake worker {proc.pid} exited with {code} before it listened")
                return
            log.error("intake worker %d exited with %s; restarting in %.0fs",
                      proc.pid, code, RESTART_PAUSE)
            await asyncio.sleep(RESTART_PAUSE)

    async def _spawn(self) -> asyncio.subprocess.Process:
        ports = ",".join(f"{name}={port}" for name, port in self.ports.items())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "intake-worker", "-c", str(self.config_path),
            "--ports", ports,
            # stdin is the lifeline (EOF = master gone); stdout carries queue ids
            # and, once a second, the worker's intake metrics (gateway.metrics.workers).
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        log.info("intake worker %d started", proc.pid)
        return proc

    async def _relay(self, proc: asyncio.subprocess.Process) -> bool:
        """Relay the worker's lines until it ends; whether it said it listens."""
        assert proc.stdout is not None
        listened = False
        while line := await proc.stdout.readline():
            word = line.strip()
            if word == READY:
                listened = True
                self._ready.release()
                continue
            if word.startswith(METRICS_PREFIX):
                self.metrics.update(proc.pid, word[len(METRICS_PREFIX):])
                continue
            queue_id, _, label = word.decode("ascii", "replace").partition(" ")
            if is_queue_id(queue_id):
                self.on_queued(queue_id, _priority(label))
        return listened

    def signal(self, sig: int) -> None:
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    async def stop(self) -> None:
        """SIGTERM every worker, wait for them (they finish sessions in DATA), then reap."""
        self._stopping = True
        self.signal(signal.SIGTERM)
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for proc in self._procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            if late:
                await asyncio.wait(late)


def _priority(label: str) -> Priority | None:
    """The priority a worker wrote after the queue id (None: the master reads the file)."""
    try:
        return Priority.parse(label) if label else None
    except ValueError:
        return None
