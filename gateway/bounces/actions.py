"""What a bounce does: suppression by the rules of policies/bounces.yaml, and events.

Postfix counterpart: none (Postfix only reports); Mailman's bounce runner
acting on a member's bounce score. Two ways in, one set of rules:

- `filed(qm, events)`: the scheduler has filed one attempt's recipient outcomes
  (the one hook in gateway/scheduler/qmgr.py). Each 4xx/5xx reply goes
  through `classify_reply()` — the same `verdicts.verdict()` that reads
  returned mail — and its action decides: a 5xx about the address suppresses,
  a mailbox state (full, suspended; any 4xx about the mailbox) counts as a
  soft bounce, and a failure that is the sender's or the path's (our IP
  listed, content refused, authentication, greylisting, network) NEVER
  touches the address: it is recorded (a `sender_fault` event for a final
  failure) and counted per destination domain and reason
  (smtp_gateway_bounce_verdicts_total, which the alert rules watch). A
  recipient that expired is judged on its last reply, as a final failure.
- `act(finding)`: an asynchronous bounce or complaint, matched to its message
  and recipient by gateway.bounces.ingest — with the same actions.

Rules (BounceRules; without bounces.yaml nothing is suppressed or counted,
but sender-or-path failures are still recorded and counted for the alerts):
address → suppress permanently (hard_bounce, scope all); complaint → suppress
`complaint.scope` (default marketing); mailbox → once an address has
`soft.count` soft bounces (one per message) within `soft.window`, suppress
it for `soft.suppress_for`. Every step is an event on the original message
and recipient: bounced / soft_bounced / complained / sender_fault, then
suppressed.

Decide, then act: `decide()` is pure; `act()` does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass

from gateway import metrics
from gateway.bounces.classify import classify_reply
from gateway.bounces.rules import BounceRules
from gateway.bounces.verdicts import Action, verdict
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

__all__ = ["BounceActions", "BounceCounters", "Finding", "decide"]

log = logging.getLogger(__name__)

ACTOR = "bounces"


@dataclass
class BounceCounters:
    """Plain counters for the metrics exporter (they only grow)."""

    processed: int = 0  # returned messages processed (any outcome)
    duplicates: int = 0  # already processed (a retry after a crash): skipped
    forged: int = 0  # VERP address that does not verify: ignored
    unmatched: int = 0  # no message of ours found for a reported recipient
    not_bounces: int = 0  # plain mail, auto-replies
    errors: int = 0  # could not be processed (left for the next try)
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    sender_faults: int = 0  # the sender's or the path's fault: never suppressed
    suppressed: int = 0
    dsns_sent: int = 0


@dataclass(frozen=True)
class Finding:
    """One recipient's bounce or complaint, matched to the message it is about."""

    queue_id: str
    recipient: str
    kind: str  # hard | soft | complaint (follows from the verdict)
    status: str | None
    reason: str  # gateway.bounces.verdicts.Reason's value
    source: str  # smtp-reply, smtp, imap, maildir, file
    action: Action
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
    """Which events to write and what to suppress, before any I/O: by the verdict's
    action alone (gateway.bounces.verdicts.ACTIONS)."""
    if finding.action is Action.COMPLAINT:
        on = rules is not None and rules.complaint_suppress
        return Decision((EventType.COMPLAINED,),
                        rules.complaint_scope if on and rules else None,
                        SuppressionReason.COMPLAINT)
    if finding.action is Action.ADDRESS:
        on = rules is not None and rules.hard_suppress
        events = (EventType.BOUNCED,) if finding.record_bounce else ()
        return Decision(events, "all" if on else None, SuppressionReason.HARD_BOUNCE)
    if finding.action is Action.MAILBOX:
        return Decision((EventType.SOFT_BOUNCED,), None, SuppressionReason.SOFT_BOUNCE,
                        count_soft=rules is not None and rules.soft_suppress)
    # The sender's or the path's fault (or no failure at all): the recipient's address is
    # not in question, whatever the rules say.
    return Decision((EventType.SENDER_FAULT,) if finding.record_bounce else ())


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
        Without bounces.yaml only the sender's or the path's failures are recorded (for
        the operator's alerts); the scheduler's own events tell the rest."""
        findings = [f for e in events if (f := _from_delivery(qm, e)) is not None]
        if self.rules is None:
            findings = [f for f in findings if f.action is Action.SENDER_OR_PATH]
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
        _count(self.counters, finding)
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


def _count(counters: BounceCounters, finding: Finding) -> None:
    if finding.action is Action.SENDER_OR_PATH:
        counters.sender_faults += 1
    elif finding.kind == "hard":
        counters.hard += 1
    elif finding.kind == "soft":
        counters.soft += 1
    else:
        counters.complaints += 1


def _from_delivery(qm: QueuedMessage, event: Event) -> Finding | None:
    """A finding for a delivery outcome that is a failure (see the module docstring);
    every 4xx/5xx is counted by domain and reason, deferrals included (a destination's
    "421 4.7.0 … reputation" deferrals are the first sign of a blocklisting)."""
    reply, recipient = event.reply, event.recipient
    if recipient is None or event.type not in (EventType.BOUNCED, EventType.DEFERRED,
                                               EventType.EXPIRED):
        return None
    if reply is not None and 400 <= reply.code < 600:
        v = classify_reply(reply.code, reply.enhanced, reply.text)
        if event.type is EventType.EXPIRED:  # given up: the last reply, as a final failure
            v = verdict(v.status, reply.text, final=True)
    elif event.type is EventType.EXPIRED:
        v = verdict("4.4.7", "expired after repeated temporary failures", final=True)
    else:
        return None
    metrics.record_verdict(recipient, v.reason.value, v.action.value, "smtp-reply")
    if event.type is EventType.DEFERRED and v.action is not Action.MAILBOX:
        return None  # greylisting, rate limits, network trouble: counted above, no event
    return Finding(queue_id=qm.id, recipient=recipient, kind=str(v.kind), status=v.status,
                   reason=v.reason.value, source="smtp-reply", action=v.action,
                   message_id=qm.envelope.message_id, route=event.route, reply=reply,
                   # the scheduler wrote `bounced` for a 5xx already
                   record_bounce=event.type is not EventType.BOUNCED
                   or v.action is Action.SENDER_OR_PATH)
