"""Retention and erasure: old events are purged; an address can be erased (GDPR art. 17).

- `RetentionJob` deletes events older than `retention.events` (default 90
  days) at start and then every `retention.purge_interval`, on the injected
  clock, in bounded batches. Events a webhook has not sent yet are purged too
  once that old: a receiver down for 90 days cannot hold personal data past
  its time. With PostgreSQL every node runs the job; one purges at a time.
- `erase_address()` (the `smtp-gateway erase` command and the admin API)
  replaces the address by its keyed hash in events, suppressions, consent
  records and the audit log, so a suppression of the address still holds;
  the erasure is audited under the hash, never the address. The spool is not
  touched: a message still queued to the address keeps it until it is
  delivered or deleted (`queue delete`).

What differs between the backends is behind two small Protocols, EventPurger
and AddressScrubber: SQLite (gateway.state.erasure: the files, rewritten and
checkpointed) and PostgreSQL (gateway.state.erasure_postgres: one transaction,
then VACUUM). `purger_for()` and `scrubber_for()` pick by the state store.

Security: the address is untrusted input (API); it is normalized and only used
as a bound parameter or escaped pattern.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.clock import Clock, SystemClock
from gateway.core.tasks import cancel
from gateway.policy.addresses import normalize_address
from gateway.state.db import StateDb
from gateway.state.erasure import (
    AddressMatcher,
    checkpoint_file,
    erase_files,
    erase_node_counters,
    purge_events,
)
from gateway.state.erasure_postgres import (
    check_erasure_key,
    erase_in_postgres,
    purge_events_in_postgres,
    vacuum_tables,
)
from gateway.state.postgres import PostgresPool
from gateway.state.settings import RetentionConfig
from gateway.state.store import StateStore

__all__ = ["AddressScrubber", "ErasureReport", "EventPurger", "RetentionConfig",
           "RetentionJob", "erase_address", "purge_older_than", "purger_for", "scrubber_for"]

log = logging.getLogger(__name__)

DAY = 86400.0


class EventPurger(Protocol):
    async def purge(self, before: float, limit: int) -> int:
        """Delete up to `limit` events older than `before` (the oldest first) and the tags
        of messages left without events, in one transaction; return how many events went
        (fewer than `limit`: nothing older is left, or another node is purging)."""


class SqlitePurger:
    """state.db, on the StateDb beside the batched event writer (gateway.state.db)."""

    def __init__(self, events_db: StateDb) -> None:
        self._db = events_db

    async def purge(self, before: float, limit: int) -> int:
        return await self._db.call(lambda c: purge_events(c, before, limit), write=True)


class PostgresPurger:
    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def purge(self, before: float, limit: int) -> int:
        return await purge_events_in_postgres(self._pool, before, limit)


def purger_for(state: StateStore, events_db: StateDb) -> EventPurger:
    if state.postgres is not None:
        return PostgresPurger(state.postgres)
    return SqlitePurger(events_db)


async def purge_older_than(purger: EventPurger, before: float, chunk: int = 5000) -> int:
    """Delete events older than `before`, `chunk` per write transaction (so the batched
    event writers wait for one chunk at most); return how many went."""
    total = 0
    for _ in range(100_000):  # bounded: 500 million events per run
        count = await purger.purge(before, chunk)
        total += count
        if count < chunk:
            break
    return total


class RetentionJob:
    """The periodic purge. `run_once()` is the job; `start()` runs it on the clock."""

    def __init__(self, purger: EventPurger, config: RetentionConfig, clock: Clock) -> None:
        self._purger = purger
        self.config = config
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.purged = 0  # events deleted since start
        self.runs = 0

    async def run_once(self) -> int:
        before = self._clock.now() - self.config.events
        count = await purge_older_than(self._purger, before)
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

    @property
    def loops(self) -> tuple[asyncio.Task[None], ...]:
        return () if self._task is None else (self._task,)

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
    # False: a WAL could not be emptied yet (SQLite) or a table not vacuumed (PostgreSQL)
    # — the old bytes go later; see the log.
    checkpointed: bool = True

    def as_dict(self) -> dict[str, object]:
        return {"token": self.token, "changed": dict(self.changed),
                "checkpointed": self.checkpointed}


class AddressScrubber(Protocol):
    async def scrub(self, matcher: AddressMatcher, actor: str, now: float
                    ) -> tuple[dict[str, int], bool]:
        """Replace the address everywhere and audit it (`erase`, under the hash); return
        the rows changed per table, and whether the old bytes have left storage yet."""


class SqliteScrubber:
    """The data directory's files, each rewritten in one transaction, then checkpointed."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    async def scrub(self, matcher: AddressMatcher, actor: str, now: float
                    ) -> tuple[dict[str, int], bool]:
        state = self._state
        await state.audit.entries(limit=1)  # opens policy.db (made if new): audited there
        # ratelimits.db: the SQLite rate counters of earlier versions, if still there (the
        # shared table that replaced them keeps 64-bit hashes of its keys, no addresses).
        files = (state.path, state.policy_path, state.path.with_name("ratelimits.db"),
                 state.path.with_name("bounces.db"))  # gateway.state.bounces
        changed = await asyncio.to_thread(erase_files, files, matcher, actor, now)
        return changed, await _checkpoint(files)


class PostgresScrubber:
    """The shared database: one transaction on every table, then VACUUM; and this
    node's own files (ratelimits.db of earlier versions; bounces.db, from before the
    node used PostgreSQL, where soft bounces are now counted)."""

    def __init__(self, pool: PostgresPool, state: StateStore) -> None:
        self._pool = pool
        self._state = state

    async def scrub(self, matcher: AddressMatcher, actor: str, now: float
                    ) -> tuple[dict[str, int], bool]:
        path, hasher = self._state.path, self._state.hasher
        # The key first: with another node's key nothing may change, not even here.
        await self._pool.run(lambda c: check_erasure_key(c, hasher, now), transaction=True)
        node = await asyncio.to_thread(erase_node_counters, (
            path.with_name("ratelimits.db"), path.with_name("bounces.db")), matcher)
        changed = await erase_in_postgres(self._pool, hasher, matcher, actor, now, node)
        vacuumed = await vacuum_tables(self._pool, [t for t, n in changed.items() if n])
        vacuumed = await _checkpoint((path.with_name("bounces.db"),)) and vacuumed
        return {**node, **changed}, vacuumed


def scrubber_for(state: StateStore) -> AddressScrubber:
    if state.postgres is not None:
        return PostgresScrubber(state.postgres, state)
    return SqliteScrubber(state)


async def erase_address(state: StateStore, address: str, actor: str,
                        now: float | None = None) -> ErasureReport:
    """Remove `address` (and its +tag variants) from the state store, keeping its keyed
    hash; audited as `erase` under the hash. Raises ValueError for a non-address, and
    ConfigError (PostgreSQL) if this node's erasure key is not the other nodes'."""
    normalized = normalize_address(address)
    local, at, domain = normalized.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in normalized):
        raise ValueError(f"not an address: {address!r}")
    hasher = state.hasher
    matcher = AddressMatcher(normalized, hasher.token)
    token = hasher.token(normalized)
    await state.events.flush()  # our own process's events still in memory are stored first
    when = SystemClock().now() if now is None else now
    state.consent.generation += 1  # this process's cached consent answers go (consent.py)
    changed, checkpointed = await scrubber_for(state).scrub(matcher, actor, when)
    state.consent.generation += 1
    if not checkpointed:
        log.warning("erase: the old bytes could not be cleared yet (a busy WAL file, a"
                    " failed VACUUM); they go at the next checkpoint or autovacuum")
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
