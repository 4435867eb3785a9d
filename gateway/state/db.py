"""The policy state file (policy.db): quick questions inline, the rest batched on
one thread.

Policy reads must see the latest rows at once — a suppression the CLI added a
second ago. Intake asks for every RCPT. Measured (BENCHMARKS.md), the SQL is
the small part: an indexed lookup takes ~5 µs, but a round trip to a database
thread (as aiosqlite makes one per statement) costs far more CPU than that.
(Rate counters, once written here per RCPT, are in gateway.state.ratelimits.)

So a `quick` request runs right on the event loop, on a connection that never
waits for a lock (busy timeout 0). It checkpoints the WAL itself, as SQLite
does by default (every ~1000 pages written, a pause of a few milliseconds),
which keeps the WAL file small however constant the writes.
If another process holds the write lock, SQLite says so at once and the
request goes to the thread instead. There, requests made while the thread is
busy are queued and run together, in one transaction: the thread takes
everything waiting, runs it, and hands each caller its own result or error,
waiting up to 10 s for the other processes' locks.

Why not aiosqlite here: it has no way to run a statement on the caller's
thread, nor several in one hop; the event store and spool index, which batch
writes only, keep using it (gateway.core.sqlite).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.core.sqlite import Row
from gateway.state.migrations import Migration, migrate_sqlite

__all__ = ["StateDb"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Row | dict[str, object]
WAL_ATTEMPTS = 500  # tries 10 ms apart: how long opening waits for another process's switch to WAL
_Request = tuple[Callable[[sqlite3.Connection], Any], bool, "asyncio.Future[Any]"]


class StateDb:
    def __init__(self, path: Path, migrations: Sequence[Migration]) -> None:
        self.path = path
        self._migrations = migrations
        self._conn: sqlite3.Connection | None = None  # the thread's; waits for locks
        self._quick: sqlite3.Connection | None = None  # the event loop's; never waits
        self.handed_over = 0  # quick requests that met a lock and went to the thread
        self._thread: ThreadPoolExecutor | None = None
        self._queue: list[_Request] = []
        self._busy = False
        self._opening: asyncio.Lock | None = None
        self.batches = 0  # batches run (a request count / batches ratio shows the batching)

    async def open(self) -> None:
        """Open now (otherwise the first request opens it: a gateway without policy
        files never creates or opens these files)."""
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._conn is None:
                await self._open()

    async def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-db")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._thread, self._connect)
        except BaseException:
            # Locked past the timeout or not a database: the next request tries again,
            # with a thread of its own; this one must not linger.
            self._thread.shutdown(wait=False)
            self._thread = None
            raise
        quick = sqlite3.connect(self.path, timeout=0.0, isolation_level=None,
                                check_same_thread=False)
        quick.execute("PRAGMA synchronous=NORMAL")
        self._quick = quick

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                               check_same_thread=False)
        _set_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            migrate_sqlite(conn, str(self.path), self._migrations)
        except BaseException:
            conn.close()
            raise
        return conn

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False,
                   quick: bool = False) -> T:
        """Run `fn(connection)` in a transaction; return its result.

        `quick`: a few indexed statements, run on the event loop unless a lock is
        held elsewhere. Otherwise on the database thread, batched with other callers'.
        """
        if self._conn is None:
            await self.open()
        if quick and self._quick is not None:
            done, result = self._try_quick(self._quick, fn, write)
            if done:
                return result  # type: ignore[return-value]
            self.handed_over += 1
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, write, fut))
        if not self._busy:
            self._busy = True
            # Two loop turns: tasks that the current one starts (asyncio.gather of
            # several checks) get to add their requests to this batch too.
            loop.call_soon(loop.call_soon, self._start_batch)
        return await fut

    @staticmethod
    def _try_quick(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T],
                   write: bool) -> tuple[bool, T | None]:
        """(True, result), or (False, None) when a lock is held elsewhere (nothing done)."""
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")  # the write lock first, or SQLITE_BUSY now
            result = fn(conn)
            if write:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if "locked" in str(exc) or "busy" in str(exc):
                return False, None
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return True, result

    def _start_batch(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            self._busy = False
            return
        assert self._thread is not None
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._thread, self._run_batch, batch)
        done.add_done_callback(lambda f: self._finish(batch, f))

    def _run_batch(self, batch: list[_Request]) -> list[tuple[bool, Any]]:
        conn = self._conn
        assert conn is not None
        self.batches += 1
        writes = any(write for _, write, _ in batch)
        out: list[tuple[bool, Any]] = []
        try:
            # A batch with a write takes the write lock at once: a deferred transaction
            # that upgrades later can fail with SQLITE_BUSY without waiting. Reads alone
            # need no transaction (each statement reads a consistent snapshot).
            if writes:
                conn.execute("BEGIN IMMEDIATE")
            for fn, _, _ in batch:
                try:
                    out.append((True, fn(conn)))
                except sqlite3.Error as exc:  # this caller's statement failed; others go on
                    out.append((False, exc))
            if writes:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(False, exc)] * len(batch)
        return out

    def _finish(self, batch: list[_Request], done: asyncio.Future[list[tuple[bool, Any]]]
                ) -> None:
        try:
            results = done.result()
        except BaseException as exc:  # the executor itself failed (shut down)
            results = [(False, exc)] * len(batch)
        for (_, _, fut), (ok, value) in zip(batch, results, strict=True):
            if fut.done():
                continue  # the caller went away (cancelled)
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        self._start_batch()  # what queued meanwhile goes next, as one batch

    # -- conveniences for single statements ---------------------------------------------------
    async def fetchall(self, sql: str, params: Params = (), *, quick: bool = False
                       ) -> list[Row]:
        return await self.call(lambda c: [tuple(r) for r in c.execute(sql, params)],
                               quick=quick)

    async def fetchone(self, sql: str, params: Params = (), *, write: bool = False,
                       quick: bool = False) -> Row | None:
        def one(c: sqlite3.Connection) -> Row | None:
            rows = c.execute(sql, params).fetchall()  # all: the statement must finish
            return tuple(rows[0]) if rows else None
        return await self.call(one, write=write, quick=quick)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write; return the number of rows it changed."""
        return await self.call(lambda c: c.execute(sql, params).rowcount, write=True)

    async def transaction(self, statements: Iterable[tuple[str, Iterable[Row]]]) -> None:
        """Several writes that stand or fall together (imports; a change with its audit row)."""
        items = [(sql, list(rows)) for sql, rows in statements]

        def run(c: sqlite3.Connection) -> None:
            c.execute("SAVEPOINT change")
            try:
                for sql, rows in items:
                    c.executemany(sql, rows)
            except BaseException:
                c.execute("ROLLBACK TO change")
                c.execute("RELEASE change")
                raise
            c.execute("RELEASE change")
        await self.call(run, write=True)

    async def close(self) -> None:
        while self._busy:  # let the batch in flight (and what queued behind it) finish
            await asyncio.sleep(0.001)
        if self._quick is not None:
            self._quick.close()
            self._quick = None
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            if self._conn is not None:
                await loop.run_in_executor(self._thread, self._conn.close)
            self._thread.shutdown(wait=True)
        self._conn = None
        self._thread = None

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return (f"<StateDb {self.path} {state} queued={len(self._queue)} batches={self.batches}"
                f" handed_over={self.handed_over}>")


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes opening a new file at once (both intake workers at
    their first message) can meet here, and SQLite answers "database is locked" to this
    pragma at once, without its busy timeout: the first message got 451. So wait here,
    on the database thread, a bounded time."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.01)
