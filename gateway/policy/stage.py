"""The policy stage as intake calls it: `rcpt()` per RCPT, `message()` at DATA.

Built from one PolicySet and the state store; the Gateway builds a new stage
on reload and swaps it into the Acceptor with one assignment, so a message is
judged by the old policy or the new one, never by a mix.

Decide, then act: `message()` returns a MessageDecision — the recipients
kept, the ones dropped and by which rule, the category, and the content to
store (category header removed, List-Unsubscribe added). The Acceptor stores
it and then calls `record_accepted()` with the queue ids for the events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from gateway import metrics
from gateway.clock import Clock
from gateway.errors import StateUnavailable
from gateway.model import Client, Envelope, Event, EventType, QueuedMessage, QueueId, Reply
from gateway.policy import MessageRecipient, PolicyChain, RcptRequest, Verdict
from gateway.policy.consent import (
    ConsentPolicy,
    HeaderSection,
    classify,
    list_unsubscribe_fields,
)
from gateway.policy.rate_limit import DelayShaper, RateLimitPolicy
from gateway.policy.rules_file import PolicySet
from gateway.policy.suppression import (
    ScopedSuppressionPolicy,
    SuppressionLookup,
    SuppressionPolicy,
)
from gateway.state.store import StateStore

__all__ = ["UNAVAILABLE", "MessageCopy", "MessageDecision", "PolicyStage"]

log = logging.getLogger(__name__)

# The policy state (suppressions, consent; rate limits unless they fail open) cannot be
# read: never mail a possibly suppressed address, and never bounce a good one either.
UNAVAILABLE = Reply(451, "4.3.0", "Policy state temporarily unavailable, try again later")


@dataclass(frozen=True)
class MessageCopy:
    """What to store: these recipients with this content (per-recipient copies exist
    only when each needs its own unsubscribe token)."""

    recipients: tuple[str, ...]
    content: bytes
    not_before: float | None = None  # a `delay` limit holds the first attempt until then
    delayed: tuple[tuple[str, float, str], ...] = ()  # (recipient, until, rule)


@dataclass(frozen=True)
class MessageDecision:
    category: str
    chosen_by: str  # "header", "rule:<name>", "default"
    refusal: Reply | None = None  # the whole message is refused with this reply
    copies: tuple[MessageCopy, ...] = ()
    dropped: tuple[tuple[str, Verdict], ...] = ()  # (recipient, verdict) left out at DATA
    refused: tuple[tuple[str, Verdict], ...] = field(default=())  # with `refusal`


class PolicyStage:
    def __init__(self, policies: PolicySet, state: StateStore, clock: Clock) -> None:
        self.policies = policies
        self._events = state.events
        self._clock = clock
        limits = policies.rate_limits
        sup = SuppressionLookup(policies.suppression, state.suppressions)
        self.rcpt_chain: PolicyChain[RcptRequest] = PolicyChain([
            SuppressionPolicy(sup),
            *([RateLimitPolicy(tuple(lim for lim in limits if not lim.at_data),
                               state.rate_counters)]
              if any(not lim.at_data for lim in limits) else []),
        ])
        self.data_chain: PolicyChain[MessageRecipient] = PolicyChain([
            ScopedSuppressionPolicy(sup),
            ConsentPolicy(policies.consent, state.consent),
            *([RateLimitPolicy(tuple(lim for lim in limits if lim.at_data),
                               state.rate_counters)]
              if any(lim.at_data and lim.action == "tempfail" for lim in limits) else []),
        ])
        self.shaper = DelayShaper(limits, state.rate_counters)

    def __repr__(self) -> str:
        return f"<PolicyStage {self.policies!r} rcpt={self.rcpt_chain!r} data={self.data_chain!r}>"

    async def rcpt(self, client: Client, mail_from: str, recipient: str) -> Reply | None:
        """None: go on; else the refusal for this RCPT (an event is recorded)."""
        now = self._clock.now()
        try:
            verdict = await self.rcpt_chain.check(RcptRequest(client, mail_from, recipient, now))
        except StateUnavailable as exc:
            verdict = _unavailable(exc)
        if verdict.accepted:
            return None
        self._events.record([_refused_event(now, "", recipient, verdict, "RCPT")])
        if verdict.reply is not None:
            metrics.record_rcpt_refused(client.listener, verdict.reply, verdict.rule)
        _count_refused([verdict], None)
        return verdict.reply

    async def message(self, envelope: Envelope, content: bytes,
                      header: HeaderSection | None = None) -> MessageDecision:
        """`header`: the content's header block, if the caller has parsed it (intake has)."""
        settings = self.policies.consent
        header = HeaderSection.parse(content) if header is None else header
        category, chosen_by = classify(settings, header, envelope.mail_from)
        if not settings.keep_header:
            content = header.without(content, settings.header.lower())
        now = self._clock.now()
        try:
            return await self._decide(envelope, content, header, category, chosen_by, now)
        except StateUnavailable as exc:
            verdict = _unavailable(exc)
            left = [(r, verdict) for r in envelope.recipients]
            self._events.record([_refused_event(now, "", r, v, "DATA") for r, v in left])
            return MessageDecision(category, chosen_by, verdict.reply, refused=tuple(left))

    async def _decide(self, envelope: Envelope, content: bytes, header: HeaderSection,
                      category: str, chosen_by: str, now: float) -> MessageDecision:
        kept: list[str] = []
        left: list[tuple[str, Verdict]] = []
        for rcpt in envelope.recipients:
            verdict = await self.data_chain.check(MessageRecipient(
                envelope.client, envelope.mail_from, rcpt, category, now))
            if verdict.accepted:
                kept.append(rcpt)
            else:
                left.append((rcpt, verdict))
        tempfails = [item for item in left if item[1].action == "tempfail"]
        if tempfails or not kept:
            first = (tempfails or left)[0][1]
            refusal = first.reply
            self._events.record([_refused_event(now, "", r, v, "DATA") for r, v in left])
            if not tempfails:  # else the client retries the whole message: nobody is lost
                _count_refused([v for _, v in left], category)
            return MessageDecision(category, chosen_by, refusal, refused=tuple(left))
        _count_refused([v for _, v in left], category)
        copies = self._copies(tuple(kept), content, header, category)
        if self.shaper:
            copies = await self._shape(envelope, copies, category, now)
        return MessageDecision(category, chosen_by, None, copies, tuple(left))

    async def _shape(self, envelope: Envelope, copies: tuple[MessageCopy, ...], category: str,
                     now: float) -> tuple[MessageCopy, ...]:
        """Apply `delay` limits: each copy waits for the latest of its recipients' times."""
        out = []
        for copy in copies:
            delayed = []
            for rcpt in copy.recipients:
                hold = await self.shaper.not_before(MessageRecipient(
                    envelope.client, envelope.mail_from, rcpt, category, now))
                if hold is not None:
                    delayed.append((rcpt, hold[0], hold[1]))
            if delayed:
                copy = replace(copy, not_before=max(w for _, w, _ in delayed),
                               delayed=tuple(delayed))
            out.append(copy)
        return tuple(out)

    def _copies(self, kept: tuple[str, ...], content: bytes, header: HeaderSection,
                category: str) -> tuple[MessageCopy, ...]:
        settings = self.policies.consent
        signer = settings.unsubscribe
        cat = settings.categories.get(category)
        if (signer is None or cat is None or not cat.requires_consent
                or header.has("list-unsubscribe")):
            return (MessageCopy(kept, content),)
        # The token names one address, so each recipient gets a copy of its own.
        sep = b"" if header.fields else b"\r\n"  # a message without header: keep its body a body
        return tuple(MessageCopy((rcpt,), list_unsubscribe_fields(signer.url(rcpt, category))
                                 + sep + content) for rcpt in kept)

    def record_accepted(self, decision: MessageDecision,
                        stored: list[tuple[MessageCopy, QueuedMessage]]) -> None:
        """Events for what was stored: dropped recipients (on the first copy's id) and
        delayed ones (on their own copy's)."""
        now = self._clock.now()
        first = stored[0][1]
        events = [
            Event(time=now, queue_id=first.id, type=EventType.DROPPED, recipient=rcpt,
                  message_id=first.envelope.message_id, reply=v.reply,
                  detail=f"rule={v.rule} category={decision.category}")
            for rcpt, v in decision.dropped]
        events.extend(
            Event(time=now, queue_id=qm.id, type=EventType.DELAYED, recipient=rcpt,
                  message_id=qm.envelope.message_id,
                  detail=f"rule={rule} not_before={until:.3f} category={decision.category}")
            for copy, qm in stored for rcpt, until, rule in copy.delayed)
        self._events.record(events)


def _count_refused(verdicts: list[Verdict], category: str | None) -> None:
    """Recipients that will not get the message: `suppressed` by a suppression entry,
    `dropped` by any other rule (consent); rate limits only delay, so they are not counted."""
    for verdict in verdicts:
        if verdict.action == "tempfail":
            continue
        outcome = "suppressed" if verdict.rule.startswith("suppression") else "dropped"
        metrics.record_recipient(outcome, None, category)


def _unavailable(exc: StateUnavailable) -> Verdict:
    """Fail closed: the state that would decide cannot be read, so the client retries."""
    log.debug("policy state unavailable, answering 451 4.3.0: %s", exc)
    return Verdict("tempfail", UNAVAILABLE, "state-unavailable")


def _refused_event(now: float, queue_id: QueueId, recipient: str, verdict: Verdict,
                   stage: str) -> Event:
    return Event(time=now, queue_id=queue_id, type=EventType.REJECTED, recipient=recipient,
                 reply=verdict.reply, detail=f"rule={verdict.rule} at={stage}")
