"""Open SMTP sessions kept for reuse, and a connection limit per destination.

Postfix counterparts: scache(8), the connection cache (an idle session is
kept a few seconds, `smtp_connection_cache_time_limit`, and reused for the
same destination), and qmgr's per-destination concurrency limit. KumoMTA's
ready queue does both for a site.

`acquire(key, limit)` hands out a Lease: an idle connection to reuse (the
caller sends RSET first), or a free slot to open one in. At most `limit`
connections per key exist at once, idle ones included; callers beyond that
wait for a release. A lease goes back with `release()`, which keeps the
connection idle if it is still good and has room for more messages.

Idle time is measured on the event loop's monotonic clock: it is socket
hygiene, not a scheduling decision, and no test needs to jump over it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from gateway.delivery.smtp_client import SmtpConnection

__all__ = ["ConnectionPool", "Lease"]


class Lease:
    """One connection slot of a destination; `connection` is None until one is opened."""

    def __init__(self, key: Hashable, connection: SmtpConnection | None) -> None:
        self.key = key
        self.connection = connection
        self.reused = connection is not None
        self.released = False

    def discard(self) -> None:
        """Drop the connection (broken, or its host failed) but keep the slot."""
        if self.connection is not None:
            if self.connection.usable:
                self.connection.close()  # intact, just not wanted: say QUIT
            else:
                self.connection.abort()
            self.connection = None
        self.reused = False

    def __repr__(self) -> str:
        return f"<Lease {self.key!r} {self.connection!r} reused={self.reused}>"


@dataclass
class _Destination:
    count: int = 0  # connections existing or being opened, idle ones included
    idle: list[tuple[float, SmtpConnection]] = field(default_factory=list)
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class ConnectionPool:
    def __init__(self, idle_timeout: float = 5.0) -> None:
        self.idle_timeout = idle_timeout
        self._destinations: dict[Hashable, _Destination] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def acquire(self, key: Hashable, limit: int) -> Lease:
        loop = asyncio.get_running_loop()
        while True:
            # Looked up again after each wait: an emptied destination may have been dropped.
            dest = self._destinations.get(key)
            if dest is None:
                dest = self._destinations[key] = _Destination()
            conn = self._take_idle(dest, loop.time())
            if conn is not None:
                return Lease(key, conn)
            if dest.count < limit:
                dest.count += 1
                return Lease(key, None)
            await self._wait(dest, loop)

    def release(self, lease: Lease, max_messages: int) -> None:
        """Give the slot back, keeping the connection idle if it can take more mail."""
        if lease.released:
            return
        lease.released = True
        dest = self._destinations[lease.key]
        conn = lease.connection
        loop = asyncio.get_running_loop()
        if conn is not None and self._reusable(conn, max_messages):
            dest.idle.append((loop.time(), conn))
            self._arm_sweeper(loop)
        else:
            if conn is not None:
                conn.close()
            dest.count -= 1
        self._wake(dest)
        self._forget_if_empty(lease.key, dest)

    def close(self) -> list[SmtpConnection]:
        """Close every idle connection (returned, to wait for); connections in use close
        when released."""
        self._closed = True
        closed: list[SmtpConnection] = []
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for dest in self._destinations.values():
            for _, conn in dest.idle:
                conn.close()
                closed.append(conn)
                dest.count -= 1
            dest.idle.clear()
        return closed

    def stats(self) -> tuple[int, int]:
        """(connections open or opening, of which idle), over all destinations."""
        dests = self._destinations.values()
        return sum(d.count for d in dests), sum(len(d.idle) for d in dests)

    def _reusable(self, conn: SmtpConnection, max_messages: int) -> bool:
        return (not self._closed and conn.usable and not conn.is_closing
                and conn.messages < max_messages)

    def _take_idle(self, dest: _Destination, now: float) -> SmtpConnection | None:
        # Most recently used first: the least likely to have been dropped by the server.
        while dest.idle:
            since, conn = dest.idle.pop()
            if conn.usable and not conn.is_closing and now - since <= self.idle_timeout:
                return conn
            conn.close()
            dest.count -= 1
        return None

    async def _wait(self, dest: _Destination, loop: asyncio.AbstractEventLoop) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        dest.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake(dest)  # we were woken but will not use the turn: pass it on
            raise
        finally:
            if waiter in dest.waiters:
                dest.waiters.remove(waiter)

    def _wake(self, dest: _Destination) -> None:
        while dest.waiters:
            waiter = dest.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget_if_empty(self, key: Hashable, dest: _Destination) -> None:
        # One entry per destination domain ever seen would grow without bound.
        if dest.count == 0 and not dest.waiters:
            self._destinations.pop(key, None)

    def _arm_sweeper(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None and not self._closed:
            self._sweeper = loop.call_later(self.idle_timeout, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle longer than idle_timeout; re-arm while any stay idle."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for key, dest in list(self._destinations.items()):
            expired = [conn for since, conn in dest.idle if now - since >= self.idle_timeout]
            if not expired:
                continue
            dest.idle = [(s, c) for s, c in dest.idle if now - s < self.idle_timeout]
            for conn in expired:
                conn.close()
                dest.count -= 1
                self._wake(dest)
            self._forget_if_empty(key, dest)
        if any(d.idle for d in self._destinations.values()):
            self._arm_sweeper(loop)

    def __repr__(self) -> str:
        total, idle = self.stats()
        return f"<ConnectionPool destinations={len(self._destinations)} open={total} idle={idle}>"
