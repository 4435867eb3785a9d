"""The spool: where an accepted message waits (Postfix's queue manager's disk side).

The index (spool/queue.db) has one writer, the process running the scheduler;
intake — in-process or in worker processes — only writes queue files.

`Spool.put()` is the only way in: it returns once the message is durable, and
intake answers 250 only after it returns. `reconcile()` runs at start-up and
puts the directories and the index back in agreement after any crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.clock import Clock
from gateway.model import Envelope, QueuedMessage, QueueId, QueueState
from gateway.spool.index import IndexedMessage, IndexedRecipient, QueueIndex
from gateway.spool.queue_id import new_queue_id
from gateway.spool.store import CorruptQueueFile, QueueFiles, encode_header

__all__ = ["IndexedMessage", "IndexedRecipient", "Recovery", "Spool"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """What start-up found: how much was queued and what had to be repaired."""

    queued: dict[QueueState, int]
    requeued_active: int
    reindexed: int
    dropped_rows: int
    corrupt: int


class Spool:
    def __init__(self, root: Path, clock: Clock, *, fsync: bool = True) -> None:
        self.root = root
        self.clock = clock
        self.files = QueueFiles(root, fsync=fsync)
        self.index = QueueIndex(root / "queue.db")
        self._index_open = False

    async def open(self) -> Recovery:
        self.files.prepare()
        await self.index.open()
        self._index_open = True
        return await self.reconcile()

    def open_for_intake(self) -> None:
        """An intake worker's view: only the directories; tmp/ and the index are the master's."""
        self.files.prepare(clean_tmp=False)

    async def close(self) -> None:
        if self._index_open:
            await self.index.close()
        self.files.close()

    def new_id(self) -> QueueId:
        return new_queue_id(self.clock.now())

    async def put(self, envelope: Envelope, content: bytes, *,
                  queue_id: QueueId | None = None) -> QueuedMessage:
        """Store a message durably in incoming/. Raises SpoolError.

        It is not indexed yet: most mail is delivered at the first attempt, and
        the index only has to know messages that wait (the scheduler adds them
        when they are deferred; incoming/ is listed from the directory).
        """
        qm = QueuedMessage(queue_id or self.new_id(), envelope, len(content))
        await self.files.write(qm.id, encode_header(qm) + content)
        return qm

    async def reconcile(self) -> Recovery:
        """Make the index agree with the directories, which are the truth."""
        requeued = 0
        for queue_id in self.files.ids(QueueState.ACTIVE):
            # Interrupted mid-delivery: deliver again (at-least-once), like Postfix.
            requeued += self.files.move(queue_id, QueueState.ACTIVE, QueueState.INCOMING)
        on_disk: dict[QueueId, QueueState] = {}
        for state in QueueState:
            for queue_id in self.files.ids(state):
                on_disk[queue_id] = state
        indexed = await self.index.states()
        dropped = 0
        for queue_id in indexed.keys() - on_disk.keys():
            self.index.remove(queue_id)
            dropped += 1
        reindexed = corrupt = 0
        found: list[tuple[QueuedMessage, QueueState]] = []
        for queue_id, state in on_disk.items():
            known = indexed.get(queue_id)
            if known == state or state is QueueState.CORRUPT:
                continue
            if known is None and state is QueueState.INCOMING:
                continue  # new mail is not indexed until it has to wait
            if known is not None:
                self.index.set_state(queue_id, state)
                continue
            try:
                found.append((self.files.read_header(queue_id, state), state))
            except (CorruptQueueFile, OSError) as exc:
                log.error("queue file %s/%s is unreadable (%s): moved to corrupt/",
                          state.value, queue_id, exc)
                self.files.quarantine(queue_id, state)
                corrupt += 1
        for start in range(0, len(found), 10_000):
            self.index.add_many(found[start:start + 10_000])
            await self.index.flush()
        reindexed = len(found)
        await self.index.flush()
        counts: dict[QueueState, int] = {}
        for state in on_disk.values():
            counts[state] = counts.get(state, 0) + 1
        return Recovery(counts, requeued, reindexed, dropped, corrupt)
