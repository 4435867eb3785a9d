"""What a bounce does: suppression by the rules of policies/bounces.yaml, and events.

Postfix counterpart: none (Postfix only reports); Mailman's bounce runner
acting on a member's bounce score. Two ways in, one set of rules:

- `filed(qm, events)`: the scheduler has filed one attempt's recipient outcomes
  (the one hook in gateway/scheduler/qmgr.py). A `bounced` 5xx is classified
  by `classify_reply()`: hard → suppress; soft (552 5.2.2 mailbox full) →
  counts; a policy block (our IP listed, content refused) says nothing about
  the address and does nothing. A 4xx counts as a soft bounce only when it is
  about the mailbox (full, disabled, unknown) — greylisting and rate limits
  are not the address's fault — and a recipient that expired after repeated
  4xx counts as one soft bounce.
- `act(finding)`: an asynchronous bounce or complaint, matched to its message
  and recipient by gateway.bounces.ingest.

Rules (BounceRules; without bounces.yaml asynchronous bounces are only
recorded as events, and delivery replies only by the scheduler's own events):
hard → suppress permanently (hard_bounce, scope all); complaint → suppress
`complaint.scope` (default marketing); soft → once an address has
`soft.count` soft bounces (one per message) within `soft.window`, suppress
it for `soft.suppress_for`. Every step is an event on the original message
and recipient: bounced / soft_bounced / complained, then suppressed.

Decide, then act: `decide()` is pure; `act()` does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass

from gateway.bounces.classify import ReplyKind, classify_reply
from gateway.bounces.rules import BounceRules
from gateway.clock import Clock
from gateway.model import (
    Event,
    EventType,
    QueuedMessage,
    Reply,
    Suppression,
    SuppressionReason,
)
from gateway.policy.addresses import normalize_address
from gateway.policy.rules_file import PolicySet
from gateway.state.bounces import BounceStore
from gateway.state.store import StateStore

__all__ = ["ADDRESS_SOFT_REASONS", "BounceActions", "BounceCounters", "Finding"]

log = logging.getLogger(__name__)

ADDRESS_SOFT_REASONS = frozenset({"mailbox_full", "suspended", "user_unknown"})
ACTOR = "bounces"


@dataclass
class BounceCounters:
    """Plain counters for the metrics exporter (they only grow)."""

    processed: int = 0  # returned messages processed (any outcome)
    duplicates: int = 0  # already processed (a retry after a crash): skipped
    forged: int = 0  # VERP address that does not verify: ignored
    unmatched: int = 0  # no message of ours found for a reported recipient
    not_bounces: int = 0  # plain mail, auto-replies
    unclassified: int = 0  # bounces of unknown kind (neither hard nor soft): no action
    errors: int = 0  # could not be processed (left for the next try)
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    suppressed: int = 0
    dsns_sent: int = 0


@dataclass(frozen=True)
class Finding:
    """One recipient's bounce or complaint, matched to the message it is about."""

    queue_id: str
    recipient: str
    kind: str  # hard | soft | complaint
    status: str | None
    reason: str
    source: str  # smtp-reply, smtp, imap, maildir, file
    message_id: str | None = None
    route: str | None = None
    reply: Reply | None = None
    detail: str = ""
    # False when the scheduler already wrote the `bounced` event for this reply.
    record_bounce: bool = True


@dataclass(frozen=True)
class Decision:
    events: tuple[EventType, ...]
    suppress_scope: str | None = None  # None: no suppression (for soft: maybe, by count)
    reason: SuppressionReason | None = None
    count_soft: bool = False


def decide(finding: Finding, rules: BounceRules | None) -> Decision:
    """Which events to write and what to suppress, before any I/O."""
    if finding.kind == "complaint":
        on = rules is not None and rules.complaint_suppress
        return Decision((EventType.COMPLAINED,),
                        rules.complaint_scope if on and rules else None,
                        SuppressionReason.COMPLAINT)
    if finding.kind == "hard":
        on = rules is not None and rules.hard_suppress
        events = (EventType.BOUNCED,) if finding.record_bounce else ()
        return Decision(events, "all" if on else None, SuppressionReason.HARD_BOUNCE)
    return Decision((EventType.SOFT_BOUNCED,), None, SuppressionReason.SOFT_BOUNCE,
                    count_soft=rules is not None and rules.soft_suppress)


class BounceActions:
    def __init__(self, state: StateStore, store: BounceStore, clock: Clock,
                 counters: BounceCounters | None = None,
                 policies: PolicySet | None = None) -> None:
        self.state = state
        self.store = store
        self.clock = clock
        self.counters = counters or BounceCounters()
        self.policies = policies  # swapped on policy reload (Gateway._apply_policies)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def rules(self) -> BounceRules | None:
        return self.policies.bounces if self.policies is not None else None

    def __repr__(self) -> str:
        return f"<BounceActions rules={self.rules!r} pending={len(self._tasks)}>"

    # -- synchronous failures (the scheduler's hook) --------------------------------------
    def filed(self, qm: QueuedMessage, events: Iterable[Event]) -> None:
        """Called by the scheduler with one attempt's events; never raises, never blocks.
        Without bounces.yaml nothing happens: the scheduler's own events tell it all."""
        if self.rules is None:
            return
        findings = [f for e in events if (f := _from_delivery(qm, e)) is not None]
        if findings:
            self.spawn(self._act_all(findings))

    def spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.counters.errors += 1
            log.error("bounce action failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for actions in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _act_all(self, findings: list[Finding]) -> None:
        for finding in findings:
            await self.act(finding)

    # -- every bounce ----------------------------------------------------------------------
    async def act(self, finding: Finding) -> None:
        """Apply the rules to one finding. Idempotent: suppressions are upserts and a
        soft bounce counts once per (address, message), so a retry after a crash is
        harmless."""
        now = self.clock.now()
        rules = self.rules
        decision = decide(finding, rules)
        _count(self.counters, finding.kind)
        events = [self._event(finding, t, now, finding.detail) for t in decision.events]
        scope = decision.suppress_scope
        expires: float | None = None
        address = self._normalized(finding.recipient)
        if decision.count_soft and rules is not None:
            count, new = await self.store.add_soft(address, finding.queue_id, now,
                                                   rules.soft_window)
            if not new:  # this message's soft bounce was reported before
                events = [e for e in events if e.type is not EventType.SOFT_BOUNCED]
            if count >= rules.soft_count:
                scope, expires = "all", now + rules.soft_suppress_for
        if scope is not None and await self._covered(address, scope, expires, now):
            scope = None  # suppressed already, at least as long: keep that entry as it is
        if scope is not None and decision.reason is not None:
            note = (f"{finding.kind} {finding.status or '-'} {finding.reason} "
                    f"queue id {finding.queue_id} via {finding.source}")
            await self.state.suppressions.add(
                [Suppression(address, decision.reason, scope, now, ACTOR, expires, note)],
                ACTOR, now)
            if decision.count_soft:
                await self.store.clear_soft(address)
            self.counters.suppressed += 1
            until = f" until={expires:.0f}" if expires is not None else ""
            events.append(self._event(finding, EventType.SUPPRESSED, now,
                                      f"reason={decision.reason.value} scope={scope}{until}"))
            log.info("%s: suppressed %s (%s, scope %s) after %s %s", finding.queue_id,
                     address, decision.reason.value, scope, finding.kind, finding.source)
        self.state.events.record(events)

    async def _covered(self, address: str, scope: str, expires: float | None,
                       now: float) -> bool:
        """True when an entry of this scope already lasts as long: a soft bounce must not
        turn a permanent (hard, manual) suppression into one that expires."""
        for entry in await self.state.suppressions.lookup((address,), now):
            if entry.scope == scope and (entry.expires is None or (
                    expires is not None and entry.expires >= expires)):
                return True
        return False

    def _normalized(self, address: str) -> str:
        policies = self.policies
        strip = policies.suppression.strip_plus_tags if policies is not None else False
        return normalize_address(address, strip_plus_tags=strip)

    @staticmethod
    def _event(finding: Finding, kind: EventType, now: float, detail: str) -> Event:
        text = (f"source={finding.source} kind={finding.kind} status={finding.status or '-'}"
                f" reason={finding.reason}")
        return Event(time=now, queue_id=finding.queue_id, type=kind,
                     recipient=finding.recipient, message_id=finding.message_id,
                     route=finding.route, reply=finding.reply,
                     detail=f"{text} {detail}".strip())


def _count(counters: BounceCounters, kind: str) -> None:
    if kind == "hard":
        counters.hard += 1
    elif kind == "soft":
        counters.soft += 1
    else:
        counters.complaints += 1


def _from_delivery(qm: QueuedMessage, event: Event) -> Finding | None:
    """A finding for a delivery outcome that is a bounce (see the module docstring)."""
    reply, recipient = event.reply, event.recipient
    if recipient is None:
        return None
    if event.type is EventType.EXPIRED:
        status = reply.enhanced if reply is not None and reply.enhanced else None
        return _finding(qm, event, recipient, "soft", status, "expired",
                        detail="expired after repeated temporary failures")
    if reply is None or event.type not in (EventType.BOUNCED, EventType.DEFERRED):
        return None
    if not 400 <= reply.code < 600:
        return None
    cls = classify_reply(reply.code, reply.enhanced, reply.text)
    if event.type is EventType.DEFERRED:
        if cls.reason not in ADDRESS_SOFT_REASONS:
            return None  # greylisting, rate limits, network trouble: not the address
        return _finding(qm, event, recipient, "soft", cls.status, cls.reason)
    if cls.kind is ReplyKind.POLICY_BLOCK:
        return None
    kind = "hard" if cls.kind is ReplyKind.HARD else "soft"
    return _finding(qm, event, recipient, kind, cls.status, cls.reason, record_bounce=False)


def _finding(qm: QueuedMessage, event: Event, recipient: str, kind: str, status: str | None,
             reason: str, *, detail: str = "", record_bounce: bool = True) -> Finding:
    return Finding(queue_id=qm.id, recipient=recipient, kind=kind, status=status,
                   reason=reason, source="smtp-reply", message_id=qm.envelope.message_id,
                   route=event.route, reply=event.reply, detail=detail,
                   record_bounce=record_bounce)
