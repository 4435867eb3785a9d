"""The queue manager: moves messages from incoming/ and deferred/ into active/,
hands their recipients to delivery, and files the outcome (Postfix's qmgr(8)).

Strategies, as in qmgr.c:
- bounded active set: at most `max_active` messages in active/ (memory stays flat
  whatever the backlog; the rest wait on disk);
- fairness: new mail (incoming) and due retries (deferred) are both taken every
  round, so a retry storm cannot starve fresh mail or the reverse;
- per-destination concurrency: each (route, domain) has its own limit, taken
  before the global one, so one slow destination cannot hold every session;
- priorities (lanes.py): new mail, due retries, the active set and every
  concurrency limit are served highest priority first, and each priority may
  hold only its share of them, so a critical message overtakes a newsletter;
- the index answers "what is due now?"; nothing here scans the whole queue.

A message's state changes by renaming its file (one os.replace). The index and
events are written after the rename; if we crash in between, start-up
reconciliation trusts the directory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway import metrics
from gateway.clock import Clock
from gateway.delivery.settings import DeliveryConfig
from gateway.model import (
    Attempt,
    DeliveryJob,
    Event,
    EventType,
    Priority,
    QueuedMessage,
    QueueId,
    QueueState,
    RecipientResult,
    RecipientState,
    Reply,
    Route,
)
from gateway.scheduler.incoming import IncomingQueue
from gateway.scheduler.journal import ROTATE_EVERY, DeliveryJournal, read_segments
from gateway.scheduler.lanes import PriorityGate, RateBucket
from gateway.scheduler.retry import next_attempt_at
from gateway.spool import Spool
from gateway.spool.store import CorruptQueueFile
from gateway.state.events import EventStore

__all__ = ["Deliverer", "RouterPort", "Scheduler"]

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between looks at the deferred queue
INCOMING_SCAN_EVERY = 10.0  # seconds between directory scans of incoming/
EVENT_FLUSH_TIMEOUT = 5.0  # seconds the journal keeper waits for the event store's flush


class Deliverer(Protocol):
    async def deliver(self, job: DeliveryJob, content: bytes) -> Attempt: ...


class RouterPort(Protocol):
    def split(
        self, message: QueuedMessage, recipients: Sequence[str]
    ) -> list[tuple[Route, str, tuple[str, ...]]]: ...


@dataclass
class _Pending:
    """One message's recipients still to be delivered in this attempt."""

    qm: QueuedMessage
    attempts: int  # attempts made before this one
    todo: list[tuple[int, str]]  # (recipient index, address)
    indexed: bool  # the index has a row (it waited before, or an operator touched it)


@dataclass
class _Outcome:
    updates: list[tuple[int, RecipientState, str | None, Reply | None]] = field(
        default_factory=list)
    events: list[Event] = field(default_factory=list)
    next_attempts: list[float] = field(default_factory=list)


class Scheduler:
    def __init__(self, spool: Spool, delivery: Deliverer, router: RouterPort,
                 events: EventStore, clock: Clock, config: DeliveryConfig) -> None:
        self.spool = spool
        self.delivery = delivery
        self.router = router
        self.events = events
        self.clock = clock
        self.config = config
        self._incoming = IncomingQueue(spool, config.max_active)
        self._active: dict[QueueId, asyncio.Task[None]] = {}
        self._active_by = dict.fromkeys(Priority, 0)
        self._global = PriorityGate(config.max_concurrency, config.priority_lanes)
        self._destinations: dict[tuple[str, str], PriorityGate] = {}
        self._rates = self._rate_buckets(config)
        self._wake = asyncio.Event()
        self._stopping = False
        self._scan_incoming_at = 0.0  # scan at once on start: files left by a crash
        self._due_at = 0.0  # when to look at deferred/ next
        self._due_checked_at = 0.0
        self._loop_task: asyncio.Task[None] | None = None
        # Final events go here before a queue file is removed (journal.py says why).
        self.journal = DeliveryJournal(spool.root / "journal")
        self._keeper: asyncio.Task[None] | None = None
        # Told of each attempt's recipient outcomes once filed (gateway.bounces); it must
        # neither block nor raise.
        self.on_filed: Callable[[QueuedMessage, Sequence[Event]], None] | None = None

    def __repr__(self) -> str:
        return (f"<Scheduler active={len(self._active)} incoming={len(self._incoming)}"
                f" destinations={len(self._destinations)}>")

    # -- inputs ----------------------------------------------------------------------------
    def notify(self, qm: QueuedMessage) -> None:
        """Intake's fast path: a message just landed in incoming/."""
        self._incoming.add(qm)
        self._wake.set()

    def notify_id(self, queue_id: QueueId, priority: Priority | None = None) -> None:
        """An intake worker process stored this message in incoming/ (not indexed yet);
        `priority`: as it said (else read from the file)."""
        placed = (self._incoming.add_id(queue_id, fresh=True) if priority is None
                  else self._incoming.add_fresh(queue_id, priority))
        if not placed:
            self._scan_incoming_at = 0.0
        self._wake.set()

    def reconfigure(self, router: RouterPort, config: DeliveryConfig) -> None:
        self.router = router
        if (config.max_concurrency != self.config.max_concurrency
                or config.priority_lanes != self.config.priority_lanes):
            self._global = PriorityGate(config.max_concurrency, config.priority_lanes)
            self._rates = self._rate_buckets(config)
        self.config = config
        self._destinations.clear()

    def _rate_buckets(self, config: DeliveryConfig) -> dict[Priority, RateBucket]:
        return {p: RateBucket(lane.rate, self.clock)
                for p, lane in config.priority_lanes.items() if lane.rate}

    def poke(self) -> None:
        """Look at the queue now (an operator asked for a retry)."""
        self._scan_incoming_at = 0.0
        self._due_at = 0.0
        self._wake.set()

    @property
    def active_count(self) -> int:
        return len(self._active)

    # -- main loop -------------------------------------------------------------------------
    def start(self) -> None:
        left = self.journal.open()
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._run(left))
        self._keeper = loop.create_task(self._keep_journal())

    async def stop(self, timeout: float) -> None:
        """Stop taking work; give in-flight deliveries `timeout` seconds, then cancel them.

        Cancelled messages stay in active/ and are requeued by the next start-up.
        """
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._active:
            _, late = await asyncio.wait(list(self._active.values()), timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning("shutdown: %d deliveries interrupted; requeued at next start",
                            len(late))
                await asyncio.wait(late)
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.wait([self._keeper])
            self._keeper = None
        await self._settle_journal()
        self.journal.close()

    # -- the delivery journal --------------------------------------------------------------
    @property
    def loops(self) -> tuple[asyncio.Task[None], ...]:
        """Its tasks that run until stop(): one that ends before is a fatal error
        (gateway.supervisor.serve stops the process)."""
        return tuple(t for t in (self._loop_task, self._keeper) if t is not None)

    async def _keep_journal(self) -> None:
        while True:
            await self.clock.sleep(ROTATE_EVERY)
            await self._settle_journal()

    async def _settle_journal(self) -> None:
        """Cut the journal, let the event store store what it holds, then drop the
        segments it now has (kept, and tried again, when the store is behind)."""
        if not self.journal.cut() and not self.journal.closed:
            return
        try:
            # Only the wait is bounded: the store finishes its write whatever happens here.
            async with asyncio.timeout(EVENT_FLUSH_TIMEOUT):
                await self.events.flush()
        except Exception as exc:  # the segments stay; the next round tries again
            log.warning("event store behind (%s): journal segments kept",
                        exc.__class__.__name__)
            return
        if self.events.unwritten() == 0:
            self.journal.drop_closed()

    async def _replay_journal(self, segments: list[Path]) -> None:
        """Events a crash left in the journal and not in the event store: store them."""
        if not segments:
            return
        events = read_segments(segments)
        by_id: dict[QueueId, list[Event]] = {}
        for event in events:
            by_id.setdefault(event.queue_id, []).append(event)
        missing: list[Event] = []
        try:
            for queue_id, journaled in by_id.items():
                have = {(e.type, e.recipient, e.time)
                        for e in await self.events.by_queue_id(queue_id)}
                missing.extend(e for e in journaled if (e.type, e.recipient, e.time) not in have)
            self.events.record(missing)
            await self.events.flush()
        except Exception:
            log.exception("journal replay failed: segments kept for the next start")
            return
        if self.events.unwritten():
            log.warning("journal replay: event store behind; segments kept for the next start")
            return
        for path in segments:
            path.unlink(missing_ok=True)
        log.info("journal: %d events of %d messages replayed (%d were stored already)",
                 len(missing), len(by_id), len(events) - len(missing))

    async def _run(self, journal_left: list[Path]) -> None:
        await self._replay_journal(journal_left)
        while not self._stopping:
            try:
                await self._round()
            except Exception:
                log.exception("scheduler round failed; retrying")
            # Sleep until the next deferred message is due, but look at least every TICK
            # (an operator's retry, a clock step) — and at once when intake notifies.
            delay = min(TICK, max(0.0, self._due_at - self.clock.now()))
            sleeper = asyncio.ensure_future(self.clock.sleep(delay))
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            waker.cancel()
            self._wake.clear()

    async def _round(self) -> None:
        now = self.clock.now()
        if now >= self._scan_incoming_at or now < self._scan_incoming_at - INCOMING_SCAN_EVERY:
            # (the second test catches a clock stepped backwards)
            await self._incoming.scan(self._active)
            self._scan_incoming_at = now + INCOMING_SCAN_EVERY
        for priority in Priority:  # highest first
            room = self._room_for(priority)
            if room > 0:
                for queue_id, fresh in await self._incoming.take(priority, room, self._active):
                    self._activate(queue_id, QueueState.INCOMING, fresh, priority)
        if self._room() and (now >= self._due_at or now < self._due_checked_at):
            await self._take_due(now)

    async def _take_due(self, now: float) -> None:
        """Due retries, highest priority first, each priority up to its room."""
        limits = {p: self._room_for(p) for p in Priority}
        for queue_id, priority in await self.spool.index.due_by_priority(now, limits):
            if queue_id not in self._active:
                self._activate(queue_id, QueueState.DEFERRED, False, priority)
        self._due_checked_at = now
        next_due = await self.spool.index.next_due_time()
        self._due_at = min(now + TICK, next_due if next_due is not None else now + TICK)

    def _room(self) -> bool:
        return any(self._room_for(p) > 0 for p in Priority)

    def _room_for(self, priority: Priority) -> int:
        """How many more messages of `priority` the active set may take now."""
        if self._stopping:
            return 0
        limit = self.config.max_active
        lane = self.config.priority_lanes.get(priority)
        cap = lane.cap(limit) if lane is not None else limit
        return max(0, min(limit - len(self._active), cap - self._active_by[priority]))

    def _activate(self, queue_id: QueueId, src: QueueState, fresh: bool,
                  priority: Priority) -> None:
        if not self.spool.files.move(queue_id, src, QueueState.ACTIVE):
            self._resync_index(queue_id)
            return
        if not fresh:
            self.spool.index.set_state(queue_id, QueueState.ACTIVE)  # no-op if not indexed
        task = asyncio.get_running_loop().create_task(self._process(queue_id, fresh))
        self._active[queue_id] = task
        self._active_by[priority] += 1
        task.add_done_callback(lambda _: self._finished(queue_id, priority))

    def _finished(self, queue_id: QueueId, priority: Priority) -> None:
        self._active.pop(queue_id, None)
        self._active_by[priority] -= 1
        self._wake.set()

    def _resync_index(self, queue_id: QueueId) -> None:
        """The file was not where the index said: an operator moved it. Believe the disk."""
        state = self.spool.files.find(queue_id)
        if state is None:
            self.spool.index.remove(queue_id)
        elif state is not QueueState.ACTIVE:
            self.spool.index.set_state(queue_id, state)

    # -- one message -----------------------------------------------------------------------
    async def _process(self, queue_id: QueueId, fresh: bool) -> None:
        try:
            qm, content = self.spool.files.read(queue_id, QueueState.ACTIVE)
        except (CorruptQueueFile, OSError) as exc:
            log.error("queue file %s unreadable (%s): moved to corrupt/", queue_id, exc)
            self.spool.files.quarantine(queue_id, QueueState.ACTIVE)
            self.spool.index.remove(queue_id)
            return
        pending = await self._pending(qm, fresh=fresh)
        not_before = qm.envelope.not_before
        if not_before is not None and pending.attempts == 0 and not_before > self.clock.now():
            self._hold_until(pending, not_before)
            return
        if not pending.todo:
            self._complete(qm, indexed=True)
            return
        jobs = self._jobs(pending)
        attempts = await asyncio.gather(*(self._deliver(job, content) for job in jobs))
        for job, attempt in zip(jobs, attempts, strict=True):
            _count_attempt(job.route, attempt)
        await self._file(pending, [
            (job.route, attempt, result)
            for job, attempt in zip(jobs, attempts, strict=True)
            for result in attempt.results
        ])

    def _hold_until(self, pending: _Pending, when: float) -> None:
        """A `delay` rate limit shaped this message: file it in deferred/ due at `when`
        before any attempt (the queue file carries `when`, so a restart keeps it)."""
        qm = pending.qm
        self._due_at = min(self._due_at, when)
        if not pending.indexed:
            self.spool.index.add(qm, QueueState.DEFERRED)
        if self.spool.files.move(qm.id, QueueState.ACTIVE, QueueState.DEFERRED):
            self.spool.index.set_state(qm.id, QueueState.DEFERRED, next_attempt_at=when,
                                       attempts=0)
        else:
            self._resync_index(qm.id)

    async def _pending(self, qm: QueuedMessage, *, fresh: bool) -> _Pending:
        all_recipients = list(enumerate(qm.envelope.recipients))
        if fresh:
            return _Pending(qm, 0, all_recipients, indexed=False)
        info = await self.spool.index.message(qm.id)
        rows = await self.spool.index.recipients(qm.id)
        if info is None or not rows:
            return _Pending(qm, 0, all_recipients, indexed=False)  # new mail: not indexed
        todo = [(r.idx, r.address) for r in rows if not r.state.is_final]
        return _Pending(qm, info.attempts, todo, indexed=True)

    def _jobs(self, pending: _Pending) -> list[DeliveryJob]:
        addresses = [address for _, address in pending.todo]
        return [
            DeliveryJob(pending.qm, recipients, route, domain, pending.attempts + 1)
            for route, domain, recipients in self.router.split(pending.qm, addresses)
        ]

    async def _deliver(self, job: DeliveryJob, content: bytes) -> Attempt:
        async with self._slots(job):
            started = self.clock.now()
            try:
                return await self.delivery.deliver(job, content)
            except Exception:
                # Delivery promises not to raise; if a bug makes it, defer rather than
                # leave the message stranded in active/.
                log.exception("delivery of %s raised; deferring", job.message.id)
                reply = Reply(451, "4.3.0", "Internal error during delivery")
                results = tuple(RecipientResult(r, reply) for r in job.recipients)
                return Attempt(job.route.name, "", results, started, self.clock.now())

    @asynccontextmanager
    async def _slots(self, job: DeliveryJob) -> AsyncIterator[None]:
        """A rate token (if the priority has a rate), a destination slot, a global slot:
        each served highest priority first."""
        priority = job.message.envelope.priority
        rate = self._rates.get(priority)
        if rate is not None:
            await rate.take()  # before the slots: a rate-limited lane holds none meanwhile
        key, gate = self._destination(job)
        try:
            async with gate.slot(priority), self._global.slot(priority):
                yield
        finally:
            # One gate per recipient domain on mx routes: drop idle ones, or a queue
            # that has mailed 100,000 domains keeps 100,000 gates.
            if gate.idle and self._destinations.get(key) is gate:
                del self._destinations[key]

    def _destination(self, job: DeliveryJob) -> tuple[tuple[str, str], PriorityGate]:
        route = job.route
        key = (route.name, job.domain if route.kind == "mx" else "")
        gate = self._destinations.get(key)
        if gate is None:
            limit = (route.max_connections_per_destination if route.kind == "mx"
                     else sum(s.max_connections for s in route.smarthosts))
            gate = self._destinations[key] = PriorityGate(limit, self.config.priority_lanes)
        return key, gate

    # -- filing the outcome ------------------------------------------------------------------
    async def _file(self, pending: _Pending,
                    results: list[tuple[Route, Attempt, RecipientResult]]) -> None:
        now = self.clock.now()
        qm = pending.qm
        attempt_no = pending.attempts + 1
        outcome = _Outcome()
        slots: dict[str, list[int]] = {}
        for idx, address in pending.todo:
            slots.setdefault(address, []).append(idx)
        for route, attempt, result in results:
            idx = slots[result.recipient].pop(0)
            self._file_recipient(qm, idx, route, attempt, result, attempt_no, now, outcome)
        self.events.record(outcome.events)
        if self.on_filed is not None:
            self.on_filed(qm, outcome.events)
        if outcome.next_attempts:
            when = min(outcome.next_attempts)
            self._due_at = min(self._due_at, when)
            moved = self.spool.files.move(qm.id, QueueState.ACTIVE, QueueState.DEFERRED)
            self._record(pending, outcome, now, QueueState.DEFERRED)
            if moved:
                self.spool.index.set_state(qm.id, QueueState.DEFERRED,
                                           next_attempt_at=when, attempts=attempt_no)
            else:
                self._resync_index(qm.id)
        else:
            # The queue file is the last trace of this message: its final events go to
            # the journal first (one write, no wait for the event store), then the file
            # goes at once, so that a kill -9 repeats only deliveries still in flight.
            self.journal.append(outcome.events)
            self._complete(qm, indexed=pending.indexed, pending=pending, outcome=outcome)

    def _record(self, pending: _Pending, outcome: _Outcome, now: float,
                state: QueueState) -> None:
        """Write this attempt's per-recipient results, indexing the message first if new."""
        if not pending.indexed:
            self.spool.index.add(pending.qm, state)
        self.spool.index.set_recipients(pending.qm.id, outcome.updates, now)

    def _file_recipient(self, qm: QueuedMessage, idx: int, route: Route, attempt: Attempt,
                        result: RecipientResult, attempt_no: int, now: float,
                        outcome: _Outcome) -> None:
        state = result.state
        event_type = {RecipientState.DELIVERED: EventType.DELIVERED,
                      RecipientState.BOUNCED: EventType.BOUNCED}.get(state, EventType.DEFERRED)
        detail = None
        if state is RecipientState.DEFERRED:
            when = next_attempt_at(attempt_no, route.retry, qm.envelope.received_at, now)
            if when is None:
                state, event_type = RecipientState.EXPIRED, EventType.EXPIRED
                detail = f"gave up after {attempt_no} attempts"
            else:
                outcome.next_attempts.append(when)
                detail = f"attempt {attempt_no}; next at {when:.3f}"
        elif state is RecipientState.DELIVERED and attempt.tls:
            detail = attempt.tls  # which TLS policy applied, TLS version and cipher
        category = qm.envelope.category
        metrics.record_recipient(state.value, route.name, category)
        if state is RecipientState.DELIVERED:
            metrics.observe_delivery_latency(route.name, category, now - qm.envelope.received_at)
        outcome.updates.append((idx, state, route.name, result.reply))
        outcome.events.append(Event(
            time=now, queue_id=qm.id, type=event_type, recipient=result.recipient,
            message_id=qm.envelope.message_id, route=route.name, host=attempt.host or None,
            reply=result.reply, detail=detail,
        ))

    def _complete(self, qm: QueuedMessage, *, indexed: bool, pending: _Pending | None = None,
                  outcome: _Outcome | None = None) -> None:
        """Every recipient has a final outcome: the queue file's job is done."""
        if self.spool.files.remove(qm.id, QueueState.ACTIVE):
            if indexed:
                self.spool.index.remove(qm.id)
            return
        # An operator held it mid-delivery: keep its results so release ends it.
        if pending is not None and outcome is not None:
            self._record(pending, outcome, self.clock.now(), QueueState.HOLD)
        self._resync_index(qm.id)


def _count_attempt(route: Route, attempt: Attempt) -> None:
    """One attempt: 2xx when every recipient was taken, else its first failure's class.
    MX host names are not bounded, so only smarthost names become a label."""
    if not attempt.results:
        return
    failed = next((r.reply for r in attempt.results if not r.reply.is_success), None)
    host = attempt.host if route.kind == "smarthost" else ""
    metrics.record_attempt(route.name, host, failed or attempt.results[0].reply)
