"""Retention and erasure: old events are purged; an address can be erased (GDPR art. 17).

- `RetentionJob` deletes events older than `retention.events` (default 90
  days) at start and then every `retention.purge_interval`, on the injected
  clock. Events a webhook has not sent yet are purged too once that old: a
  receiver down for 90 days cannot hold personal data past its time.
- `erase_address()` (the `smtp-gateway erase` command and the admin API)
  replaces the address by its keyed hash in events, suppressions, consent
  records and the audit log (gateway.state.erasure), so a suppression of the
  address still holds; the erasure is audited under the hash, never the
  address. The spool is not touched: a message still queued to the address
  keeps it until it is delivered or deleted (`queue delete`).

Security: the address is untrusted input (API); it is normalized and only used
as a bound parameter or escaped pattern.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from gateway.clock import Clock, SystemClock
from gateway.policy.addresses import normalize_address
from gateway.retention_config import RetentionConfig
from gateway.state import StateStore
from gateway.state.db import StateDb
from gateway.state.erasure import AddressMatcher, checkpoint_file, erase_files, purge_events
from gateway.tasks import cancel

__all__ = ["ErasureReport", "RetentionConfig", "RetentionJob", "erase_address",
           "purge_older_than"]

log = logging.getLogger(__name__)

DAY = 86400.0


async def purge_older_than(events_db: StateDb, before: float, chunk: int = 5000) -> int:
    """Delete events older than `before`, `chunk` per write transaction (so the batched
    event writers wait for one chunk at most); return how many went."""
    total = 0
    for _ in range(100_000):  # bounded: 500 million events per run
        count = await events_db.call(lambda c: purge_events(c, before, chunk), write=True)
        total += count
        if count < chunk:
            break
    return total


class RetentionJob:
    """The periodic purge. `run_once()` is the job; `start()` runs it on the clock.
    `events_db`: state.db, beside the batched event writer (gateway.state.db)."""

    def __init__(self, events_db: StateDb, config: RetentionConfig, clock: Clock) -> None:
        self._db = events_db
        self.config = config
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.purged = 0  # events deleted since start
        self.runs = 0

    async def run_once(self) -> int:
        before = self._clock.now() - self.config.events
        count = await purge_older_than(self._db, before)
        self.purged += count
        self.runs += 1
        if count:
            log.info("retention: purged %d events older than %.0f days", count,
                     self.config.events / DAY)
        return count

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a locked or full disk: try again next time
                log.exception("retention: purge failed")
            await self._clock.sleep(self.config.purge_interval)

    def __repr__(self) -> str:
        return (f"<RetentionJob events={self.config.events / DAY:.0f}d runs={self.runs}"
                f" purged={self.purged}>")


@dataclass(frozen=True)
class ErasureReport:
    token: str  # the keyed hash now standing for the address
    changed: dict[str, int] = field(default_factory=dict)  # rows rewritten, per table
    checkpointed: bool = True  # False: a WAL could not be emptied yet (see the log)

    def as_dict(self) -> dict[str, object]:
        return {"token": self.token, "changed": dict(self.changed),
                "checkpointed": self.checkpointed}


async def erase_address(state: StateStore, address: str, actor: str,
                        now: float | None = None) -> ErasureReport:
    """Remove `address` (and its +tag variants) from the state files, keeping its keyed
    hash; audited as `erase` under the hash. Raises ValueError for a non-address, and
    NotImplementedError with the PostgreSQL state backend (not done yet)."""
    if state.backend != "sqlite":
        raise NotImplementedError("erasure rewrites the embedded SQLite files; with "
                                  "state: postgresql it is not available yet")
    normalized = normalize_address(address)
    local, at, domain = normalized.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in normalized):
        raise ValueError(f"not an address: {address!r}")
    hasher = state.hasher
    matcher = AddressMatcher(normalized, hasher.token)
    token = hasher.token(normalized)
    flush = getattr(state.events, "flush", None)
    if flush is not None:
        await flush()  # our own process's events still in memory go to the file first
    when = SystemClock().now() if now is None else now
    await state.audit.entries(limit=1)  # opens policy.db (made if new): the erasure is audited
    # ratelimits.db: the SQLite rate counters of earlier versions, if still there (the
    # shared table that replaced them keeps 64-bit hashes of its keys, no addresses).
    files = (state.path, state.policy_path, state.path.with_name("ratelimits.db"),
             state.path.with_name("bounces.db"))  # gateway.state.bounces, beside state.db
    changed = await asyncio.to_thread(erase_files, files, matcher, actor, when)
    checkpointed = await _checkpoint(files)
    if not checkpointed:
        log.warning("erase: a WAL file stayed busy; the address leaves the file bytes at the"
                    " next checkpoint")
    log.info("erased an address (now %s): %s", token, changed)
    return ErasureReport(token, changed, checkpointed)


async def _checkpoint(files: tuple[Path, ...], tries: int = 20) -> bool:
    """Empty each file's WAL into it, so the rewritten pages replace the old ones on
    disk; False if a reader in another process kept one busy throughout."""
    done = True
    for path in files:
        for _ in range(tries):  # bounded: about a second per file
            if await asyncio.to_thread(checkpoint_file, path):
                break
            await asyncio.sleep(0.05)  # not scheduling: a reader elsewhere ends soon
        else:
            done = False
    return done
