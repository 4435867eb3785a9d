"""Keeps the running policy current: first load, SIGHUP, and a cheap mtime poll.

Used the same way by the Gateway and by each intake worker process (each
serves SMTP, so each needs the policy; the state they check is shared in
the state store). A reload builds the whole new PolicySet before `apply()` swaps
it in; a bad file is logged, counted in `errors`, and the previous policy
stays in force — the gateway never stops over a policy edit.

Every good load is also written to a last-good snapshot (the files' texts, as
JSON, in the data directory). An intake worker that the master restarts while
a file is broken starts with that snapshot — the policy the other processes
still run — instead of failing to start. (The master itself refuses to start
on a bad policy file, as on a bad config file: check-config says why.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gateway import metrics
from gateway.clock import Clock
from gateway.core.tasks import cancel
from gateway.errors import ConfigError
from gateway.policy.rules_file import PolicyFiles, PolicySet, load_policies
from gateway.policy.stage import PolicyStage
from gateway.state.store import StateStore

__all__ = ["POLL_INTERVAL", "PolicyRuntime"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 2.0  # seconds between mtime checks of the policy files


class PolicyRuntime:
    def __init__(self, directory: Path | None, state: StateStore, clock: Clock,
                 apply: Callable[[PolicyStage | None], None],
                 snapshot: Path | None = None) -> None:
        self._files = PolicyFiles(directory) if directory is not None else None
        self._snapshot = snapshot
        self._snapshot_texts: dict[str, str] | None = None
        self._state = state
        self._clock = clock
        self._apply = apply
        self._task: asyncio.Task[None] | None = None
        self.stage: PolicyStage | None = None

    @property
    def errors(self) -> int:
        """Reloads refused because of a bad policy file (for the metrics exporter)."""
        return self._files.errors if self._files is not None else 0

    def load(self, *, fallback: bool = False) -> PolicyStage | None:
        """The first load. A ConfigError stops the start (as a bad config does) unless
        `fallback` (an intake worker) and a last-good snapshot exists."""
        if self._files is None:
            return None
        try:
            policies, texts = self._files.load()
        except ConfigError as exc:
            snapshot = self._read_snapshot() if fallback else None
            if snapshot is None:
                raise
            log.error("policy files have errors; running the last good policy from %s:\n%s",
                      self._snapshot, exc)
            policies = load_policies(self._files.directory, snapshot)
            texts = snapshot
        self._use(policies, texts)
        if self.stage is not None:
            log.info("policies loaded: %r", self.stage)
        return self.stage

    def _use(self, policies: PolicySet | None, texts: dict[str, str]) -> None:
        self.stage = PolicyStage(policies, self._state, self._clock) if policies else None
        self._apply(self.stage)
        self._write_snapshot(texts)

    def _read_snapshot(self) -> dict[str, str] | None:
        if self._snapshot is None:
            return None
        try:
            data = json.loads(self._snapshot.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return {str(k): str(v) for k, v in data.items()}

    def _write_snapshot(self, texts: dict[str, str]) -> None:
        if self._snapshot is None or texts == self._snapshot_texts:
            return
        # Several processes may write it: each writes its own temporary file and
        # renames it into place, so a reader sees one whole snapshot or another.
        tmp = self._snapshot.with_name(f"{self._snapshot.name}.{os.getpid()}.tmp")
        try:
            self._snapshot.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp.write_text(json.dumps(texts, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self._snapshot)
        except OSError as exc:
            log.warning("cannot write the policy snapshot %s: %s", self._snapshot, exc)
            return
        self._snapshot_texts = texts

    def reload(self) -> bool:
        if self._files is None:
            return True
        self._files.changed()  # the poll need not fire again for this edit
        try:
            policies, texts = self._files.load()
        except ConfigError as exc:
            log.error("policy reload refused (%d so far), the running policy stays:\n%s",
                      self._files.errors, exc)
            metrics.record_reload("policy", False)
            return False
        self._use(policies, texts)
        metrics.record_reload("policy", True)
        log.info("policies reloaded: %r", self.stage)
        return True

    def start(self, interval: float = POLL_INTERVAL) -> None:
        if self._files is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(interval))

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _watch(self, interval: float) -> None:
        # Real time, not the injected clock: this polls files, it schedules no mail.
        while True:
            await asyncio.sleep(interval)
            if self._files is not None and self._files.changed():
                self.reload()

    def __repr__(self) -> str:
        return f"<PolicyRuntime {self.stage!r} errors={self.errors}>"
