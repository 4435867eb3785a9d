"""Priority lanes: what lets a booking confirmation overtake a 100,000-message newsletter.

Three pieces, each used by the queue manager (qmgr.py):

- `PriorityGate`, a semaphore that serves its waiters highest priority first
  (FIFO within a priority) and lets each priority hold at most its share of
  the permits. The global delivery limit and every destination's limit are
  such gates: with low mail capped at 60%, 40% of each limit stays free for
  the other priorities however long the newsletter is; and when a slot frees
  up, a waiting critical message gets it before every waiting low one.
- `RateBucket`, an optional per-priority start rate (a token bucket on the
  injected clock; a clock stepped back neither refills nor blocks it).
- `IncomingLanes`, the scheduler's in-memory list of new mail, one bounded
  deque per priority, taken highest priority first.

Deferred mail is chosen the same way by the index (QueueIndex.due_by_priority).
Starvation is by design: while higher priorities have work ready, lower ones
wait; their share cap only keeps them from crowding the others out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager

from gateway.clock import Clock
from gateway.model import Priority, QueueId
from gateway.scheduler.settings import Lane

__all__ = ["IncomingLanes", "PriorityGate", "RateBucket"]

_RATE_POLL = 1.0  # longest single sleep while waiting for a token (clock steps)


class PriorityGate:
    def __init__(self, capacity: int, lanes: Mapping[Priority, Lane]) -> None:
        self.capacity = max(1, capacity)
        self._caps = {p: lanes[p].cap(self.capacity) if p in lanes else self.capacity
                      for p in Priority}
        self._held = dict.fromkeys(Priority, 0)
        self._total = 0
        self._waiters: dict[Priority, deque[asyncio.Future[None]]] = {
            p: deque() for p in Priority}

    def __repr__(self) -> str:
        held = " ".join(f"{p.label}={self._held[p]}/{self._caps[p]}" for p in Priority)
        waiting = sum(len(w) for w in self._waiters.values())
        return f"<PriorityGate {self._total}/{self.capacity} {held} waiting={waiting}>"

    def held(self, priority: Priority) -> int:
        return self._held[priority]

    @property
    def idle(self) -> bool:
        """Nothing held and nobody waiting: the gate can be forgotten."""
        return self._total == 0 and not any(self._waiters.values())

    def _free_for(self, priority: Priority) -> bool:
        return self._total < self.capacity and self._held[priority] < self._caps[priority]

    def _grant(self, priority: Priority) -> None:
        self._held[priority] += 1
        self._total += 1

    async def acquire(self, priority: Priority) -> None:
        # Nobody of the same or a higher priority may be overtaken.
        ahead = any(self._waiters[p] for p in Priority if p <= priority)
        if not ahead and self._free_for(priority):
            self._grant(priority)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[priority].append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(priority)  # granted, but the caller went away
            else:
                self._waiters[priority].remove(fut)
            raise

    def release(self, priority: Priority) -> None:
        self._held[priority] -= 1
        self._total -= 1
        self._wake()

    def _wake(self) -> None:
        for priority in Priority:  # highest first
            waiters = self._waiters[priority]
            while waiters and self._free_for(priority):
                fut = waiters.popleft()
                if not fut.done():
                    self._grant(priority)
                    fut.set_result(None)
            if self._total >= self.capacity:
                return

    @asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release(priority)


class RateBucket:
    """At most `rate` starts per second, bursts up to one second's worth."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.rate = rate
        self._clock = clock
        self._burst = max(1.0, rate)
        self._tokens = self._burst
        self._last = clock.now()

    async def take(self) -> None:
        while True:
            now = self._clock.now()
            # A clock stepped back: start counting from here (no refill, no penalty).
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(self._burst, self._tokens + elapsed * self.rate)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            await self._clock.sleep(min(_RATE_POLL, (1.0 - self._tokens) / self.rate))


class IncomingLanes:
    """New mail waiting for room in the active set: one bounded deque per priority."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # per priority: memory stays bounded whatever the backlog
        # (queue id, fresh): fresh mail is in no index yet (see IncomingQueue.add).
        self._lanes: dict[Priority, deque[tuple[QueueId, bool]]] = {
            p: deque() for p in Priority}
        self._ids: set[QueueId] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, queue_id: object) -> bool:
        return queue_id in self._ids

    def add(self, queue_id: QueueId, priority: Priority, fresh: bool) -> bool:
        """False when that priority's deque is full (the file waits on disk for a scan)."""
        lane = self._lanes[priority]
        if queue_id in self._ids:
            return True
        if len(lane) >= self.limit:
            return False
        lane.append((queue_id, fresh))
        self._ids.add(queue_id)
        return True

    def full(self, priority: Priority) -> bool:
        return len(self._lanes[priority]) >= self.limit

    def waiting(self, priority: Priority) -> bool:
        return bool(self._lanes[priority])

    def pop(self, priority: Priority) -> tuple[QueueId, bool]:
        queue_id, fresh = self._lanes[priority].popleft()
        self._ids.discard(queue_id)
        return queue_id, fresh

    def priorities(self) -> Iterator[Priority]:
        """Priorities with mail waiting, highest first."""
        return (p for p in Priority if self._lanes[p])
