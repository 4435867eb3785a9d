"""What intake decides about a transaction: sender, recipients, then the message
itself — checked, normalized, given trace headers and stored before the 250
(Postfix: the smtpd_*_restrictions of smtpd(8), then cleanup(8)).

MAIL and RCPT: addresses are checked for syntax only (email-validator, no DNS);
non-ASCII addresses need the SMTPUTF8 parameter. A client that is neither in
the listener's networks nor authenticated may not relay: 554 5.7.1 at RCPT.

DATA, in order:

1. Line endings are normalized as Postfix does (gateway.cleanup.lines): a bare
   LF becomes CRLF, a stray CR a space, so each stored line ends in CRLF. A
   bare `<LF>.<LF>` (the SMTP smuggling trick) is thus stored as an ordinary
   "." line, which our outbound client dot-stuffs, and `<CR>.<CR>` as " . ":
   neither can turn into an end-of-data on the next hop. (A ".." after a bare
   LF was not dot-unstuffed by the DATA reader, which only unstuffs at CRLF
   lines; it is kept as it came.)
2. After the policy checks, each copy goes through the cleanup stage
   (gateway.cleanup, Postfix's cleanup(8)): long lines re-encoded or folded,
   8-bit bodies made 7-bit, obsolete header syntax and duplicates repaired,
   missing `Date:`, `Message-ID:` and `From:` added. What it cannot repair
   (a structured field that cannot be folded, two different From: fields) gets
   554 5.6.0 naming the field. Envelope.message_id is the Message-ID.
3. A `Received:` trace header is prepended (RFC 5321 4.4). Then, when DKIM is
   on, the finished message is signed (gateway/signing/signer.py):
   DKIM-Signature fields are prepended and nothing changes after that; a
   sender domain the configuration refuses to send unsigned gets 550 5.7.1,
   and a message a key should have signed but could not gets 451 4.7.0 (never
   relayed unsigned). Each refusal at this step is a `rejected` event.
4. `spool.put()` stores it durably — with its category and priority in the
   queue file — and only then is `250 2.0.0 Ok: queued as <id>` returned.
   Spool failures give 451 4.3.0 (452 4.3.1 when the disk is full) and any
   unexpected error 451 4.3.0: the client keeps the message and retries.

Idempotency (gateway.intake.idempotency; config `idempotency:`), after step 1
and before the policy checks: a resend of a message already queued gets the
original's 250 and is not stored again; the first submission is stored under
the queue id its claim reserved.

A state file that is locked or unreadable makes the check that needs it answer
451 4.3.0 (replies.STATE_UNAVAILABLE) with one clear log line.

Policy checks (gateway.policy.stage; off when policies/ holds no policy file):
at RCPT, suppression of all mail and rate limits (550 5.7.1 / 451 4.7.1); at
DATA, after step 1, the message's category, scoped suppression and consent.
Recipients the DATA checks refuse are dropped (a `dropped` event each) and
the rest accepted; if none is left the message gets the first refusal. The
category decided there maps to the message's priority (config `priorities:`). A
message in a consent category may be stored as one copy per recipient, each
with its own List-Unsubscribe token; the 250 names the first copy's id.

Security: reads untrusted input — envelope addresses, HELO name and message
content from SMTP clients. Content is parsed here only for header field names
(the cleanup stage parses the rest); everything put into our own headers is
sanitized first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol

from gateway import metrics
from gateway.bounces.inbox import BounceInbox
from gateway.cleanup import Cleaned, Cleanup, is_refusal, replace_stray_cr_lf
from gateway.clock import Clock
from gateway.config import Config
from gateway.core.headers import HeaderSection
from gateway.errors import SpoolError
from gateway.intake import replies
from gateway.intake.addresses import address_problem
from gateway.intake.idempotency import IdempotencyGuard, Ticket
from gateway.intake.trace import received_header
from gateway.model import Client, Envelope, Event, EventType, QueuedMessage, QueueId, Reply
from gateway.policy.stage import MessageDecision, PolicyStage
from gateway.scheduler.settings import PriorityConfig
from gateway.signing.signer import DkimSigner, SignOutcome, SignResult, refusal_reply
from gateway.state.events import EventStore
from gateway.state.store import STATE_ERRORS, StateStore
from gateway.tracking.tracker import Tracker

__all__ = [
    "Acceptor",
    "DataResult",
    "SessionInfo",
    "SpoolLike",
    "Transaction",
    "configure_intake",
    "correlation_headers",
    "header_tags",
]

log = logging.getLogger(__name__)

# Messages larger than this are prepared in a worker thread so that normalizing
# a 25 MB message does not stall every other session on the event loop.
_THREAD_THRESHOLD = 1024 * 1024


class SpoolLike(Protocol):
    """The part of gateway.spool.Spool that intake uses."""

    def new_id(self) -> QueueId: ...

    async def put(
        self, envelope: Envelope, content: bytes, *, queue_id: QueueId | None = None
    ) -> QueuedMessage: ...


@dataclass(frozen=True)
class SessionInfo:
    """One SMTP session as the checks see it."""

    client: Client
    may_relay: bool  # client address in the listener's networks, or authenticated


@dataclass(frozen=True)
class DataResult:
    """data()'s reply and what a caller that answers per recipient reports beside it (the
    HTTP API): the queue id and Message-ID of the first copy stored (the Message-ID is
    None for a resend answered by idempotency: nothing was stored), and the recipients
    the DATA checks dropped (SMTP can only log those)."""

    reply: Reply
    queue_id: QueueId | None = None
    message_id: str | None = None
    dropped: tuple[tuple[str, Reply], ...] = ()


@dataclass
class _Report:
    """What one data() call noted for Acceptor.submit()."""

    queue_id: QueueId | None = None
    message_id: str | None = None
    dropped: list[tuple[str, Reply]] = field(default_factory=list)


# Set by Acceptor.submit() for the data() call it makes: how _checked_data() and
# _queued() report to it without changing what data() returns to the SMTP hooks.
_REPORT: ContextVar[_Report | None] = ContextVar("accept_report", default=None)


@dataclass(frozen=True)
class Transaction:
    """A mail transaction so far: after MAIL, with the recipients accepted yet."""

    session: SessionInfo
    mail_from: str  # "" is the null sender
    smtputf8: bool = False
    body_type: str = "7BIT"
    recipients: tuple[str, ...] = ()
    requiretls: bool = False  # MAIL FROM … REQUIRETLS (RFC 8689)


class Acceptor:
    def __init__(
        self,
        spool: SpoolLike,
        hostname: str,
        clock: Clock,
        on_queued: Callable[[QueuedMessage], None],
        signer: DkimSigner | None = None,
        policies: PolicyStage | None = None,
    ) -> None:
        self._spool = spool
        # Swapped on reload like the signer; None (no policy files) costs nothing.
        self.policies = policies
        # Gateway.reload() swaps it; each message reads it once, so it is signed
        # with the old keys or the new ones, never with none.
        self.signer = signer
        # Category → priority (config `priorities:`), swapped on reload like the signer.
        self.priorities = PriorityConfig()
        # Resubmissions answered with the original queue id (config `idempotency:`).
        self.idempotency: IdempotencyGuard | None = None
        self._hostname = hostname
        self._clock = clock  # for the policy checks to come (rate windows)
        self._on_queued = on_queued
        # Header fields whose values are recorded for traces (admin.correlation_headers);
        # empty: no extra work per message.
        self.correlation_headers: tuple[str, ...] = ()
        # Mail for the bounce domain (gateway.bounces.inbox); None: no bounce domain.
        self.bounce_inbox: BounceInbox | None = None
        self.cleanup = Cleanup(hostname)
        # Refusals after the policy stage (cleanup, DKIM) become `rejected` events here.
        self.events: EventStore | None = None
        # Open/click tracking with consent (config `tracking:`); None: off.
        self.tracker: Tracker | None = None

    async def mail(self, session: SessionInfo, sender: str, *, smtputf8: bool) -> Reply:
        if sender == "":
            return replies.SENDER_OK  # the null sender <> (bounces, RFC 5321 4.5.5)
        if not smtputf8 and not sender.isascii():
            return replies.non_ascii_address()
        problem = address_problem(sender, smtputf8=smtputf8)
        if problem is not None:
            return replies.bad_sender(problem)
        return replies.SENDER_OK

    async def rcpt(self, transaction: Transaction, recipient: str) -> Reply:
        listener = transaction.session.client.listener
        refusal = _address_refusal(transaction, recipient)
        if refusal is not None:
            metrics.record_rcpt_refused(listener, refusal, "bad_address")
            return refusal
        inbox = self.bounce_inbox
        if inbox is not None:  # before the relay check: bounces come from anyone
            reply = inbox.check_rcpt(listener, recipient, transaction.recipients)
            if reply is not None:
                return reply
        if not transaction.session.may_relay:
            metrics.record_rcpt_refused(listener, replies.RELAY_DENIED, "relay_denied")
            return replies.RELAY_DENIED
        policies = self.policies
        if policies is not None:
            # The policy stage counts its own refusals: it knows the rule.
            try:
                refusal = await policies.rcpt(transaction.session.client,
                                              transaction.mail_from, recipient)
            except STATE_ERRORS as exc:
                metrics.record_rcpt_refused(listener, replies.STATE_UNAVAILABLE,
                                            "state_unavailable")
                return _state_unavailable("RCPT", exc)
            if refusal is not None:
                return refusal
        return replies.RECIPIENT_OK


    async def data(self, envelope: Envelope, content: bytes, *, esmtp: bool = True) -> Reply:
        """Check, complete and store a message; `content` as received (dot-unstuffed).

        `esmtp` says whether the client greeted with EHLO (for the Received: header).
        Never raises: every failure becomes a 4xx/5xx reply for the client.
        """
        inbox = self.bounce_inbox
        if inbox is not None and inbox.takes(envelope):
            return await inbox.receive(envelope, content)
        metrics.record_message_received(envelope.client.listener)
        try:
            reply, rule = await self._data(envelope, content, esmtp)
        except Exception:
            log.exception("unexpected error accepting a message from %s", envelope.client.address)
            reply, rule = replies.INTERNAL_ERROR, "internal_error"
        metrics.record_data_reply(envelope.client.listener, reply, rule)
        return reply

    async def _data(self, envelope: Envelope, content: bytes, esmtp: bool
                    ) -> tuple[Reply, str]:
        """The reply, and for a refusal the rule that refused (a metrics label)."""
        if len(content) > _THREAD_THRESHOLD:
            body, header = await asyncio.to_thread(_prepare, content)
        else:
            body, header = _prepare(content)
        if not envelope.requiretls and _tls_optional(header.section):
            envelope = replace(envelope, tls_optional=True)
        if self.correlation_headers:
            envelope = replace(envelope, tags=(*envelope.tags,
                                               *header_tags(body, self.correlation_headers)))
        guard = self.idempotency
        if guard is None:
            return await self._checked_data(envelope, body, header, esmtp, None)
        client_id = header.message_id if header.has_message_id else None
        checked = await guard.check(envelope, body, client_id, self._spool.new_id(),
                                    header=header.section)
        if not isinstance(checked, Ticket):
            if checked is not None:  # a resend: its original's 250, or a 451 meanwhile
                return checked, "idempotency"
            return await self._checked_data(envelope, body, header, esmtp, None)
        reply, rule = replies.INTERNAL_ERROR, "internal_error"
        try:
            reply, rule = await self._checked_data(envelope, body, header, esmtp, checked.queue_id)
        finally:
            # Stored under the ticket's id: resends get it. Otherwise the client keeps the
            # message and retries, and that retry must be taken, so the key is let go.
            await (guard.stored(checked) if reply.is_success else guard.release(checked))
        return reply, rule

    async def _checked_data(self, envelope: Envelope, body: bytes, header: _HeaderScan,
                            esmtp: bool, queue_id: QueueId | None) -> tuple[Reply, str]:
        """Policies, then the spool; the first copy stored gets `queue_id` if given."""
        policies = self.policies
        if policies is None:
            result = await self._store(envelope, body, header.section, esmtp, queue_id)
            return (result, _store_rule(result)) if isinstance(result, Reply) else \
                self._queued(result)
        try:
            decision = await policies.message(envelope, body, header.section)
        except STATE_ERRORS as exc:
            return _state_unavailable("DATA", exc), "state_unavailable"
        if decision.refusal is not None:
            return decision.refusal, (decision.refused[0][1].rule if decision.refused
                                      else "policy")
        envelope = replace(envelope, category=decision.category,
                           priority=self.priorities.of(decision.category))
        first: QueuedMessage | None = None
        stored = []
        for copy in decision.copies:
            if copy.recipients != envelope.recipients or copy.not_before is not None:
                copy_envelope = replace(envelope, recipients=copy.recipients,
                                        not_before=copy.not_before)
            else:
                copy_envelope = envelope
            # The usual case: content unchanged (no category header, no List-Unsubscribe).
            section = header.section if copy.content is body else None
            result = await self._store(copy_envelope, copy.content, section, esmtp,
                                       queue_id if first is None else None)
            if isinstance(result, Reply):
                if first is None:
                    return result, _store_rule(result)
                # Earlier copies are stored and will be delivered; the client will
                # resend the whole message, so a recipient may get it twice (the
                # safe side of a failure that only a full disk causes).
                log.error("%s: a later copy failed (%s); earlier copies stay queued",
                          first.id, result)
                return result, _store_rule(result)
            first = first or result
            stored.append((copy, result))
        assert first is not None  # a decision without refusal has at least one copy
        _log_decision(first, decision)
        _report_dropped(decision)
        policies.record_accepted(decision, stored)
        return self._queued(first)

    async def _store(self, envelope: Envelope, body: bytes, section: HeaderSection | None,
                     esmtp: bool, queue_id: QueueId | None = None) -> QueuedMessage | Reply:
        """Cleanup, signing, the spool; `section`: `body`'s header block if parsed."""
        queue_id = queue_id or self._spool.new_id()
        cleaned = await self._clean(envelope, body)
        if isinstance(cleaned, Reply):
            return self._refused(envelope, cleaned, "cleanup")
        # The client's Message-ID is kept as it is (None if the field is empty).
        envelope = replace(envelope, message_id=cleaned.message_id)
        content = cleaned.content
        if self.tracker is not None:  # open/click tracking, with consent (gateway.tracking)
            content = await self.tracker.apply(self.policies, envelope, queue_id, content)
        received = received_header(envelope, self._hostname, queue_id,
                                   esmtp=esmtp).encode("utf-8")
        message = received + content
        signer = self.signer
        if signer is not None:  # after every change to the content, before the spool
            # The header block parsed at DATA still holds if cleanup left the content as
            # it was (the common path); our Received: field is parsed on its own.
            parsed = section.prefixed(received) if content is body and section is not None \
                else None
            signed = await _sign(signer, message, parsed)
            if signed.outcome in (SignOutcome.REFUSED, SignOutcome.TEMPFAIL):
                return self._refused(envelope, refusal_reply(signed), "dkim")
            message = signed.content
        try:
            queued = await self._spool.put(envelope, message, queue_id=queue_id)
        except SpoolError as exc:
            log.error("cannot queue a message from %s: %s", envelope.client.address, exc)
            return replies.DISK_FULL if exc.disk_full else replies.SPOOL_FAILED
        log.info(
            "%s: queued from=<%s> nrcpt=%d size=%d message-id=%s client=%s listener=%s",
            queued.id, envelope.mail_from, len(envelope.recipients), queued.size,
            cleaned.message_id, envelope.client.address, envelope.client.listener,
        )
        if cleaned.repairs:
            log.info("%s: cleanup: %s", queued.id, " ".join(cleaned.repairs))
            for repair in cleaned.repairs:
                metrics.record_cleanup_repair(repair)
        self._notify(queued)
        return queued

    async def _clean(self, envelope: Envelope, body: bytes) -> Cleaned | Reply:
        # Re-encoding a large message takes a while: keep the other sessions going.
        if len(body) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(self.cleanup.clean, envelope, body)
        return self.cleanup.clean(envelope, body)

    def _refused(self, envelope: Envelope, reply: Reply, rule: str) -> Reply:
        """A refusal after the policy stage: logged, and a `rejected` event per recipient."""
        log.info("refused a message from %s: %s", envelope.client.address, reply)
        events = self.events
        if events is not None:
            now = self._clock.now()
            events.record([Event(time=now, queue_id="", type=EventType.REJECTED, recipient=r,
                                 reply=reply, detail=f"rule={rule} at=DATA")
                           for r in envelope.recipients])
        return reply

    def _queued(self, queued: QueuedMessage) -> tuple[Reply, str]:
        report = _REPORT.get()
        if report is not None:
            report.queue_id, report.message_id = queued.id, queued.envelope.message_id
        return replies.queued(queued.id), ""

    async def submit(self, envelope: Envelope, content: bytes) -> DataResult:
        """data() for a caller that is not an SMTP session (the HTTP API): the same
        checks and storage, the same reply, and what it reports per recipient."""
        report = _Report()
        token = _REPORT.set(report)
        try:
            reply = await self.data(envelope, content)
        finally:
            _REPORT.reset(token)
        if not reply.is_success:
            return DataResult(reply, dropped=tuple(report.dropped))
        # A resend answered by idempotency stored nothing: its reply names the original.
        return DataResult(reply, report.queue_id or replies.queued_id(reply),
                          report.message_id, tuple(report.dropped))

    def _notify(self, queued: QueuedMessage) -> None:
        # The message is durable whatever happens here, so the client still gets its
        # 250; a failing listener must not turn into a duplicate from a retrying client.
        try:
            self._on_queued(queued)
        except Exception:
            log.exception("%s: on_queued callback failed", queued.id)

    def __repr__(self) -> str:
        return f"<Acceptor hostname={self._hostname!r}>"


def configure_intake(acceptor: Acceptor, config: Config, state: StateStore,
                     clock: Clock) -> None:
    """Apply the `priorities:`, `idempotency:` and `admin.correlation_headers`
    settings (at start and on reload)."""
    acceptor.priorities = config.priorities
    acceptor.events = state.events
    acceptor.correlation_headers = correlation_headers(config)
    acceptor.tracker = Tracker(config.tracking, state.consent) if config.tracking else None
    idem = config.idempotency
    acceptor.idempotency = (IdempotencyGuard(state.idempotency, state.events, idem, clock)
                            if idem.enabled else None)


def _state_unavailable(stage: str, exc: Exception) -> Reply:
    # One clear line, no traceback: the operator needs the file and the reason (a
    # lock held by another process, a file made unreadable), and clients retry.
    log.error("policy check at %s failed, state store unavailable (%s): answering %s",
              stage, exc, replies.STATE_UNAVAILABLE)
    return replies.STATE_UNAVAILABLE


def correlation_headers(config: Config) -> tuple[str, ...]:
    return config.admin.correlation_headers if config.admin is not None else ()


def header_tags(content: bytes, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The first value of each of `names` (lower-case) in the header section, unfolded
    and cut to 200 characters: enough for an id, and bounded whatever a client sends.

    A few byte searches in the lower-cased header section rather than a parse of
    every field: this runs for every message when correlation headers are set."""
    end = content.find(b"\r\n\r\n")
    head = b"\r\n" + (content if end < 0 else content[:end + 2])
    lowered = head.lower()
    out = []
    for name in names:
        start = lowered.find(b"\r\n" + name.encode("ascii") + b":")
        if start < 0:
            continue
        pos = start + len(name) + 3
        stop = lowered.find(b"\r\n", pos)
        while stop >= 0 and head[stop + 2:stop + 3] in (b" ", b"\t"):  # folded
            stop = lowered.find(b"\r\n", stop + 2)
        raw = head[pos:stop if stop >= 0 else len(head)]
        value = " ".join(raw.decode("utf-8", "replace").split())
        if value:
            out.append((name, value[:200]))
    return tuple(out)


def _address_refusal(transaction: Transaction, recipient: str) -> Reply | None:
    if not transaction.smtputf8 and not recipient.isascii():
        return replies.non_ascii_address()
    problem = address_problem(recipient, smtputf8=transaction.smtputf8)
    return replies.bad_recipient(problem) if problem is not None else None


def _store_rule(refusal: Reply) -> str:
    """The metrics rule of a refusal from _store(): the spool's, cleanup's, else DKIM's
    (the only other refusal it makes)."""
    if refusal == replies.DISK_FULL:
        return "disk_full"
    if is_refusal(refusal):
        return "cleanup"
    return "spool_failed" if refusal == replies.SPOOL_FAILED else "dkim"


def _report_dropped(decision: MessageDecision) -> None:
    report = _REPORT.get()
    if report is not None:
        report.dropped.extend((rcpt, verdict.reply) for rcpt, verdict in decision.dropped
                              if verdict.reply is not None)


def _log_decision(first: QueuedMessage, decision: MessageDecision) -> None:
    for rcpt, verdict in decision.dropped:
        log.info("%s: dropped to=<%s> rule=%s category=%s", first.id, rcpt, verdict.rule,
                 decision.category)


async def _sign(signer: DkimSigner, message: bytes, header: HeaderSection | None
                ) -> SignResult:
    # Every line ends in CRLF (normalized at DATA): the signer need not look for bare LFs.
    # Hashing a large body (and RSA) takes a while: keep the other sessions going.
    if len(message) > _THREAD_THRESHOLD:
        return await asyncio.to_thread(partial(signer.sign, message, header, crlf=True))
    return signer.sign(message, header, crlf=True)


# -- content ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HeaderScan:
    has_message_id: bool
    message_id: str | None  # the first Message-ID field, unfolded
    # The header block, parsed once for every stage that reads it (idempotency,
    # policies, signing: gateway.core.headers).
    section: HeaderSection = field(repr=False)


def _prepare(content: bytes) -> tuple[bytes, _HeaderScan]:
    body = replace_stray_cr_lf(content)
    return body, _scan_header(body)


def _scan_header(content: bytes) -> _HeaderScan:
    """Message-ID: in the header section (the fields up to the first line that is not
    one: the empty line, or a body without a header), for idempotency."""
    section = HeaderSection.parse(content)
    ids = section.values("message-id")
    return _HeaderScan(
        has_message_id=bool(ids),
        message_id=_unfold(ids[0]) if ids else None,
        section=section,
    )


def _tls_optional(section: HeaderSection) -> bool:
    """RFC 8689 section 5: `TLS-Required: No` asks that the recipient domain's TLS policies
    (MTA-STS, DANE) be set aside; REQUIRETLS on MAIL FROM overrides it (the caller)."""
    value = section.get("tls-required")
    return value is not None and value.lower() == "no"


def _unfold(raw: bytes) -> str | None:
    value = raw.replace(b"\r\n", b"").decode("utf-8", errors="replace").strip()
    return value or None
