"""SQLite through aiosqlite, with writes batched into one transaction per flush.

Both the spool index and the event store write a few rows per message. A
commit per row would cost a thread hop and a WAL append each; instead writes
are queued in order and flushed together — by a timer, when the queue grows,
or before any read that must see them (read-your-writes within the process).

WAL + synchronous=NORMAL: a committed write survives the process being
killed (it is in the OS page cache); a power loss may drop the last
transactions, which the callers tolerate (the spool index is rebuilt from the
queue files; events are a record, not the truth of delivery).

A caller that stops waiting for a flush (a timeout) does not stop the flush:
it runs to its COMMIT or ROLLBACK in a task of its own.

A batch the database refuses for a reason that can pass (disk full, I/O error,
locked: sqlite3.OperationalError) is kept, in order, in front of newer writes
and tried again every RETRY_INTERVAL: a dropped "deferred, due at T" row would
leave a message unscheduled until the next restart. Any other error is a bug
in the statement; that batch is logged and dropped rather than retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import aiosqlite

__all__ = ["BatchedDb", "Row"]

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
RETRY_INTERVAL = 1.0  # seconds between tries of a batch the database refused
SLOW_COMMIT = 1.0  # seconds: a commit slower than this is logged (callers wait for it)


class BatchedDb:
    """One aiosqlite connection plus an ordered write queue."""

    def __init__(self, path: Path, schema: Sequence[str], *, flush_interval: float = 0.02,
                 max_pending: int = 2000, statements_commute: bool = False) -> None:
        """`statements_commute`: different statements of one batch may run in any order
        (each keeps its own rows' order). Then a batch costs one executemany per
        statement; otherwise one per run of the same statement, and writes that
        alternate (an event, a tag, an event …) cost a thread hop each (measured:
        BENCHMARKS.md, policies)."""
        self.path = path
        self._commute = statements_commute
        self._schema = schema
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._pending: list[tuple[str, Row]] = []
        self._db: aiosqlite.Connection | None = None
        self._flush_lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.failed_flushes = 0
        self._in_flight = 0  # rows of the batch being committed now

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000",
                           "temp_store=MEMORY", "cache_size=-65536"):
                await db.execute(f"PRAGMA {pragma}")
            await db.execute("BEGIN IMMEDIATE")
            for statement in self._schema:
                await db.execute(statement)
            await db.execute("COMMIT")
        except BaseException:
            await db.close()  # locked or not a database: the caller may try again
            raise
        self._db = db

    @property
    def unwritten(self) -> int:
        """Writes queued and not committed yet (a flush in progress counts them until its
        COMMIT; a batch the database refused stays here until a retry succeeds)."""
        return len(self._pending) + self._in_flight

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"{self.path} is not open")
        return self._db

    def write(self, sql: str, params: Row) -> None:
        """Queue a write; it is committed with the next flush, in order."""
        self._pending.append((sql, params))
        if len(self._pending) >= self._max_pending:
            self._start_flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._flush_interval, self._start_flush)

    def write_many(self, sql: str, rows: Iterable[Row]) -> None:
        for row in rows:
            self.write(sql, row)

    def _start_flush(self) -> None:
        self._timer = None
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Commit everything written so far (and wait for a commit under way)."""
        if not self._pending and not self._flush_lock.locked():
            return
        # A caller may stop waiting (a timeout, a cancelled task); the commit itself
        # must not stop: cut between BEGIN and COMMIT, it lost its batch and left the
        # connection inside the transaction, holding the write lock for good.
        await asyncio.shield(self._flush())

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._pending:
                batch, self._pending = self._pending, []
                self._in_flight = len(batch)
                try:
                    committed = await self._commit(batch)
                finally:
                    self._in_flight = 0
                if not committed:
                    self._pending[:0] = batch  # keep the order: retried before newer writes
                    self._schedule_retry()
                    return  # reads go on without these rows; the writer must not spin

    async def _commit(self, batch: list[tuple[str, Row]]) -> bool:
        """Commit one batch; False if it must be tried again later."""
        db = self.db
        started = time.monotonic()  # not scheduling: a duration for the log
        try:
            await db.execute("BEGIN IMMEDIATE")
            locked = time.monotonic()
            for sql, rows in _runs(batch, self._commute):
                await db.executemany(sql, rows)
            await db.execute("COMMIT")
            _log_if_slow(self.path, len(batch), started, locked)
            return True
        except sqlite3.OperationalError as exc:
            self.failed_flushes += 1
            if self.failed_flushes == 1 or self.failed_flushes % 60 == 0:
                log.error("write to %s failed (%s); %d rows kept, retrying every %.0fs",
                          self.path, exc, len(batch), RETRY_INTERVAL)
            await self._rollback()
            return False
        except Exception:
            log.exception("write to %s failed; %d rows dropped", self.path, len(batch))
            await self._rollback()
            return True

    async def _rollback(self) -> None:
        if self.db.in_transaction:
            await self.db.execute("ROLLBACK")

    def _schedule_retry(self) -> None:
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_INTERVAL, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._start_flush()

    async def fetchall(self, sql: str, params: Row = ()) -> list[Row]:
        await self.flush()
        async with self.db.execute(sql, params) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    async def close(self) -> None:
        for timer in (self._timer, self._retry):
            if timer is not None:
                timer.cancel()
        self._timer = self._retry = None
        if self._db is not None:
            await self.flush()
            await self._db.close()
            self._db = None


def _runs(batch: list[tuple[str, Row]], commute: bool) -> list[tuple[str, list[Row]]]:
    """The batch as (statement, rows) runs, one executemany each: consecutive writes
    of the same statement together, or, when statements commute, all of them."""
    if not commute:
        return [(sql, [params for _, params in group])
                for sql, group in groupby(batch, key=lambda item: item[0])]
    runs: dict[str, list[Row]] = {}
    for sql, params in batch:
        runs.setdefault(sql, []).append(params)
    return list(runs.items())


def _log_if_slow(path: Path, rows: int, started: float, locked: float) -> None:
    done = time.monotonic()
    if done - started >= SLOW_COMMIT:
        log.warning("slow write to %s: %.1fs for %d rows (%.1fs waiting for the write lock)",
                    path, done - started, rows, locked - started)
