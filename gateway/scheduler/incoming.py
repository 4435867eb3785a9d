"""New mail waiting for room in the active set, by priority (Postfix's incoming queue).

Intake tells the scheduler about each message it stores; the message waits in
a bounded in-memory lane of its priority until the active set has room for
that priority. When a lane is full (a newsletter of 100,000 arrives faster
than it can go out), further messages of that priority are *parked*: indexed
in the queue index as `incoming` with their priority, and taken from there in
order once the lane has drained. Memory stays bounded whatever the backlog,
and a critical message is never behind a low one in any list.

Files nobody told us about (left by a crash, or written by a worker whose
notice was lost) are found by `scan()`, which reads each one's header once
for its priority; files already in a lane, active or parked are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Container

from gateway.model import Priority, QueuedMessage, QueueId, QueueState
from gateway.scheduler.lanes import IncomingLanes
from gateway.spool import Spool
from gateway.spool.store import CorruptQueueFile

__all__ = ["IncomingQueue"]

log = logging.getLogger(__name__)


class IncomingQueue:
    def __init__(self, spool: Spool, limit: int) -> None:
        self._spool = spool
        self._lanes = IncomingLanes(limit)
        # The index may hold parked mail from before a restart: look once per priority.
        self._parked = dict.fromkeys(Priority, True)
        self._parkings = dict.fromkeys(Priority, 0)  # messages parked so far, per priority

    def __len__(self) -> int:
        return len(self._lanes)

    def __contains__(self, queue_id: object) -> bool:
        return queue_id in self._lanes

    def add(self, qm: QueuedMessage, *, fresh: bool = True) -> None:
        """A message in incoming/. `fresh`: intake just stored it, so the index knows
        nothing of it and its delivery need not ask (one found by `scan` may be a
        crash's leftover with recipients already done)."""
        priority = qm.envelope.priority
        if self._parked[priority] or not self._lanes.add(qm.id, priority, fresh):
            self._park(qm)

    def add_fresh(self, queue_id: QueueId, priority: Priority) -> bool:
        """What an intake worker just stored, by id and priority (it said both): no read
        of the file unless its lane is full and it must be parked."""
        if not self._parked[priority] and self._lanes.add(queue_id, priority, True):
            return True
        return self.add_id(queue_id, fresh=True)

    def _park(self, qm: QueuedMessage) -> None:
        priority = qm.envelope.priority
        self._spool.index.add(qm, QueueState.INCOMING)
        self._parked[priority] = True
        self._parkings[priority] += 1

    def add_id(self, queue_id: QueueId, *, fresh: bool = False) -> bool:
        """A message in incoming/ known by its id: its priority is in the file's header
        (`fresh` as for `add`).
        False if it could not be placed (unreadable now and no room): scan later."""
        try:
            qm = self._spool.files.read_header(queue_id, QueueState.INCOMING)
        except (CorruptQueueFile, OSError):
            # Moved or bad: activation finds out which and deals with it.
            return self._lanes.add(queue_id, Priority.NORMAL, False)
        self.add(qm, fresh=fresh)
        return True

    async def scan(self, active: Container[QueueId]) -> None:
        parked = await self._spool.index.ids_in_state(QueueState.INCOMING)
        for queue_id in sorted(self._spool.files.ids(QueueState.INCOMING)):
            if queue_id in self._lanes or queue_id in active or queue_id in parked:
                continue
            self.add_id(queue_id)

    async def take(self, priority: Priority, count: int, active: Container[QueueId]
                   ) -> list[tuple[QueueId, bool]]:
        """Up to `count` messages of `priority` and whether each is fresh: the lane
        first, then parked ones."""
        out: list[tuple[QueueId, bool]] = []
        while len(out) < count and self._lanes.waiting(priority):
            out.append(self._lanes.pop(priority))
        wanted = count - len(out)
        if wanted > 0 and self._parked[priority]:
            parkings = self._parkings[priority]
            rows = await self._spool.index.due_by_priority(
                float("inf"), {priority: wanted}, state=QueueState.INCOMING)
            if len(rows) < wanted and parkings == self._parkings[priority]:
                # Drained, and nothing was parked while we asked: new mail goes to the lane.
                self._parked[priority] = False
            out.extend((queue_id, False) for queue_id, _ in rows if queue_id not in active)
        return out
