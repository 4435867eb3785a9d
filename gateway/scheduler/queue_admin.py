"""Operator actions on the queue: list, show, retry, hold, release, delete (postsuper(1)).

Used by the CLI (another process than the gateway) and, later, the admin API.
Every action is a rename or unlink in the spool followed by an index update;
the running scheduler believes the directory, so no signal is needed: a held
message is simply not where the scheduler expects it, and a retried one is
due in the index at its next look (within a second).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.config import Config
from gateway.delivery.router import Router
from gateway.model import Event, EventType, Priority, QueueId, QueueState, RecipientState
from gateway.spool.index import QueueIndex
from gateway.spool.queue_id import is_queue_id
from gateway.spool.store import CorruptQueueFile, QueueFiles
from gateway.state.events import EventStore
from gateway.state.store import StateStore, open_state

__all__ = ["QueueAdmin", "QueueAdminError", "QueueRow"]

T = TypeVar("T")


class QueueAdminError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class QueueRow:
    id: QueueId
    state: str
    size: int
    attempts: int
    created_at: float
    next_attempt_at: float
    sender: str
    message_id: str | None
    recipients: list[dict[str, Any]] = field(default_factory=list)
    priority: str = Priority.NORMAL.label  # critical, high, normal, low (config `priorities:`)


class QueueAdmin:
    def __init__(self, config: Config, now: Callable[[], float], *,
                 files: QueueFiles | None = None, index: QueueIndex | None = None,
                 events: EventStore | None = None) -> None:
        """Own connections by default (the CLI); the admin API passes the running
        gateway's spool and event store, already open, so its writes are ordered
        with the scheduler's."""
        self.config = config
        self.now = now
        self.files = files or QueueFiles(config.spool_dir)
        self.index = index or QueueIndex(config.spool_dir / "queue.db")
        # The CLI's own store, in SQLite or PostgreSQL as configured (opened by run()).
        self.state = open_state(config) if events is None else None
        self.events: EventStore = events or self._own_state().events
        self.router = Router(config.routes)

    @classmethod
    async def run(cls, config: Config, action: Callable[[QueueAdmin], Awaitable[T]]) -> T:
        import time

        if not config.spool_dir.is_dir():
            raise QueueAdminError("no_spool", f"no spool at {config.spool_dir}")
        admin = cls(config, time.time)
        state = admin._own_state()
        await admin.index.open()
        await state.open()
        try:
            return await action(admin)
        finally:
            await state.close()
            await admin.index.close()
            admin.files.close()

    def _own_state(self) -> StateStore:
        assert self.state is not None, "built with the gateway's own event store"
        return self.state

    # -- reading -----------------------------------------------------------------------------
    async def listing(self, *, state: str | None = None, route: str | None = None,
                   limit: int = 1000, after: str = "") -> list[QueueRow]:
        wanted = QueueState(state) if state else None
        rows = [row for row in await self._indexed_rows(wanted, limit, after)
                + self._unindexed_rows(wanted, after)
                if not route or any(r["route"] == route for r in row.recipients)]
        return sorted(rows, key=lambda r: r.id)[:limit]

    async def _indexed_rows(self, wanted: QueueState | None, limit: int,
                            after: str) -> list[QueueRow]:
        rows = []
        for m in await self.index.page(state=wanted, limit=limit, after=after):
            recipients = [
                {"address": r.address, "state": r.state.value, "route": r.route
                 or self.router.route_for(m.sender, r.address).name, "last_reply": r.last_reply}
                for r in await self.index.recipients(m.id)
            ]
            rows.append(QueueRow(m.id, m.state.value, m.size, m.attempts, m.created_at,
                                 m.next_attempt_at, m.sender, m.message_id, recipients,
                                 m.priority.label))
        return rows

    def _unindexed_rows(self, wanted: QueueState | None, after: str) -> list[QueueRow]:
        """New mail (incoming/, or active/ on its first attempt) is on disk, not indexed."""
        rows = []
        for state in (QueueState.INCOMING, QueueState.ACTIVE):
            if wanted not in (None, state):
                continue
            for queue_id in self.files.ids(state):
                if queue_id <= after:
                    continue
                try:
                    qm = self.files.read_header(queue_id, state)
                except (OSError, CorruptQueueFile):
                    continue  # delivered (or moved) while we looked
                env = qm.envelope
                recipients = [{"address": a, "state": RecipientState.QUEUED.value,
                               "route": self.router.route_for(env.mail_from, a).name,
                               "last_reply": None} for a in env.recipients]
                rows.append(QueueRow(qm.id, state.value, qm.size, 0, env.received_at,
                                     env.received_at, env.mail_from, env.message_id,
                                     recipients, env.priority.label))
        return rows

    async def show(self, queue_id: str) -> dict[str, Any]:
        state = self._locate(queue_id)
        info = await self.index.message(queue_id)
        try:
            qm = self.files.read_header(queue_id, state)
        except (OSError, CorruptQueueFile) as exc:
            raise QueueAdminError("unreadable", f"{queue_id}: {exc}") from exc
        by_idx = {r.idx: r for r in await self.index.recipients(queue_id)}
        recipients = []
        for i, address in enumerate(qm.envelope.recipients):
            r = by_idx.get(i)
            rstate = r.state.value if r else RecipientState.QUEUED.value
            if state is QueueState.HOLD and not (r and r.state.is_final):
                rstate = RecipientState.HELD.value
            recipients.append({
                "address": address, "state": rstate, "route": r.route if r else None,
                "last_reply": r.last_reply if r else None,
            })
        events = [
            {"time": e.time, "type": e.type.value, "recipient": e.recipient, "route": e.route,
             "host": e.host, "reply": str(e.reply) if e.reply else None, "detail": e.detail}
            for e in await self.events.by_queue_id(queue_id)
        ]
        return {
            "id": queue_id, "state": state.value, "mail_from": qm.envelope.mail_from,
            "message_id": qm.envelope.message_id, "received_at": qm.envelope.received_at,
            "size": qm.size, "client": qm.envelope.client.address,
            "listener": qm.envelope.client.listener,
            "attempts": info.attempts if info else 0,
            "next_attempt_at": info.next_attempt_at if info else None,
            "recipients": recipients, "events": events,
        }

    # -- changing ----------------------------------------------------------------------------
    async def retry(self, queue_id: str) -> str:
        state = self._locate(queue_id)
        if state is QueueState.HOLD:
            raise QueueAdminError("held", f"{queue_id} is on hold: release it instead")
        if state is QueueState.DEFERRED:
            self.index.set_state(queue_id, state, next_attempt_at=self.now())
            return f"{queue_id}: scheduled for immediate delivery"
        return f"{queue_id}: already {state.value}, nothing to do"

    async def hold(self, queue_id: str) -> str:
        state = self._locate(queue_id)
        if state is QueueState.HOLD:
            return f"{queue_id}: already on hold"
        await self._ensure_indexed(queue_id, state)
        if state is QueueState.CORRUPT or not self.files.move(queue_id, state, QueueState.HOLD):
            raise QueueAdminError("conflict", f"{queue_id} could not be held from {state.value}")
        self.index.set_state(queue_id, QueueState.HOLD)
        await self._event(queue_id, EventType.HELD, f"held by operator (was {state.value})")
        return f"{queue_id}: held"

    async def release(self, queue_id: str) -> str:
        state = self._locate(queue_id)
        if state is not QueueState.HOLD:
            raise QueueAdminError("not_held", f"{queue_id} is not on hold ({state.value})")
        # To deferred/, due now: the scheduler reads the recipients' progress from the index.
        # File first: until the index says "deferred" the scheduler does not look for it.
        if not self.files.move(queue_id, QueueState.HOLD, QueueState.DEFERRED):
            raise QueueAdminError("conflict", f"{queue_id} vanished while being released")
        self.index.set_state(queue_id, QueueState.DEFERRED, next_attempt_at=self.now())
        await self._event(queue_id, EventType.RELEASED, "released by operator")
        return f"{queue_id}: released"

    async def delete(self, queue_id: str) -> str:
        state = self._locate(queue_id)
        pending = [r.address for r in await self.index.recipients(queue_id)
                   if not r.state.is_final]
        if not self.files.remove(queue_id, state):
            raise QueueAdminError("conflict", f"{queue_id} vanished while being deleted")
        self.index.remove(queue_id)
        now = self.now()
        self.events.record(Event(time=now, queue_id=queue_id, type=EventType.DELETED,
                                 recipient=r, detail="deleted by operator") for r in pending)
        return f"{queue_id}: deleted"

    # -- helpers ---------------------------------------------------------------------------
    async def _ensure_indexed(self, queue_id: QueueId, state: QueueState) -> None:
        """New mail is not indexed; an operator's hold makes it a waiting message."""
        if await self.index.message(queue_id) is None:
            try:
                self.index.add(self.files.read_header(queue_id, state), state)
            except (OSError, CorruptQueueFile) as exc:
                raise QueueAdminError("unreadable", f"{queue_id}: {exc}") from exc

    def _locate(self, queue_id: str) -> QueueState:
        if not is_queue_id(queue_id):
            raise QueueAdminError("bad_id", f"'{queue_id}' is not a queue id")
        state = self.files.find(queue_id)
        if state is None:
            raise QueueAdminError("not_found", f"{queue_id}: no such message in the queue")
        return state

    async def _event(self, queue_id: QueueId, kind: EventType, detail: str) -> None:
        pending: list[str | None] = [r.address for r in await self.index.recipients(queue_id)
                                     if not r.state.is_final]
        now = self.now()
        self.events.record(Event(time=now, queue_id=queue_id, type=kind, recipient=r,
                                 detail=detail) for r in pending or [None])
