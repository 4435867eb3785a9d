"""One returned message in, actions out: parse, match to our message, act — once.

Mailman counterpart: `runners/bounce.py` (VERP first, then the scanners).
Every ingestion path (SMTP at the bounce domain, IMAP, Maildir, files) hands
its messages to `BounceProcessor.process(data, source, key)`, where `key`
names the message in its source (Maildir file name, IMAP UIDVALIDITY:UID,
file path and index). The key is claimed in the ledger first
(gateway.state.bounces): a key already processed is skipped, so a crash
between processing and moving the message on costs nothing and counts
nothing twice; a key another node is processing right now is left alone
(`BUSY`: the caller leaves the message in its mailbox). With the ledger on
PostgreSQL this holds across nodes polling the same mailbox; with the
database away the claim raises, and the message stays for the next poll.

Which message a bounce is about:
1. a VERP address that verifies decides (queue id and recipient index; the
   recipient's address comes from the message's `accepted` events);
2. a VERP address of ours that does not verify: the bounce is ignored,
   logged and counted as forged;
3. otherwise the reported recipient and the Message-ID of the embedded
   original are matched against the events. A bounce about mail we have no
   record of is counted as unmatched and changes nothing: nobody can get an
   address suppressed by mailing us a made-up bounce.

Security: reads untrusted mail (parsing is gateway.bounces.classify's).
"""

from __future__ import annotations

import contextlib
import logging
from email.message import EmailMessage
from email.parser import BytesParser

from gateway import metrics
from gateway.bounces.actions import BounceActions, Finding
from gateway.bounces.classify import MAX_PARSED_BYTES, POLICY, parse
from gateway.bounces.detectors.base import embedded_headers, header
from gateway.bounces.report import BounceRecipient, BounceReport, Kind
from gateway.bounces.verdicts import Action
from gateway.bounces.verp import VerpCodec
from gateway.model import Event, EventType
from gateway.policy.addresses import normalize_address
from gateway.state.bounces import BounceStore, Ledger
from gateway.state.store import STATE_ERRORS

__all__ = ["BUSY", "BounceProcessor"]

log = logging.getLogger(__name__)

BUSY = "busy"  # the outcome that says: being processed elsewhere, leave the message
# A claim not marked after this long died with its process (processing takes
# milliseconds): another poll, on any node, takes the message over.
STALE_CLAIM = 300.0

_ACTED = (Kind.HARD, Kind.SOFT, Kind.COMPLAINT)


class BounceProcessor:
    def __init__(self, actions: BounceActions, store: BounceStore,
                 verp: VerpCodec | None) -> None:
        self.actions = actions
        self.store = store
        self.verp = verp
        self.counters = actions.counters

    def __repr__(self) -> str:
        return f"<BounceProcessor verp={self.verp!r} {self.counters}>"

    async def process(self, data: bytes, source: str, key: str) -> str:
        """Process one message unless `key` was processed before; return the outcome
        (processed, unmatched, forged, not_bounce, duplicate, or BUSY)."""
        found = await self.store.claim(key, source, self.actions.clock.now(), STALE_CLAIM)
        if found is Ledger.DONE:
            self.counters.duplicates += 1
            return "duplicate"
        if found is Ledger.BUSY:
            log.info("bounce %s (%s): being processed elsewhere; left for now", key, source)
            return BUSY
        try:
            msg = _parse_message(data)
            report = parse(msg, self.verp)
            outcome = await self._handle(msg, report, source, key)
            # Events stored before the key is marked: a crash in between repeats the
            # (idempotent) actions rather than losing their events.
            await self.actions.state.events.flush()
            await self.store.mark(key, source, outcome, self.actions.clock.now())
        except BaseException:
            # The message stays in its mailbox: let the next poll have it at once (if
            # the store is away too, the claim goes stale instead).
            with contextlib.suppress(*STATE_ERRORS):
                await self.store.release(key)
            raise
        self.counters.processed += 1
        return outcome

    async def _handle(self, msg: EmailMessage, report: BounceReport, source: str,
                      key: str) -> str:
        if report.forged:
            self.counters.forged += 1
            metrics.record_verp_forged(source)
            log.warning("bounce %s (%s): VERP address does not verify; ignored as forged",
                        key, source)
            return "forged"
        for line in report.recipients:
            metrics.record_bounce(line.kind.value, source)
        acted = [r for r in report.recipients if r.kind in _ACTED]
        if not acted:
            self.counters.not_bounces += 1
            return "not_bounce"
        findings = await self._match(msg, report, acted, source)
        if not findings:
            self.counters.unmatched += 1
            log.info("bounce %s (%s): %r matches no message of ours; ignored", key, source,
                     report)
            return "unmatched"
        for finding in findings:
            # Counted once matched to our mail: a made-up bounce cannot raise an alert.
            if finding.action is not Action.COMPLAINT:
                metrics.record_verdict(finding.recipient, finding.reason, finding.action.value,
                                       source)
            await self.actions.act(finding)
        return "processed"

    async def _match(self, msg: EmailMessage, report: BounceReport,
                     acted: list[BounceRecipient], source: str) -> list[Finding]:
        if report.verp is not None:
            events = await self.actions.state.events.by_queue_id(report.verp.queue_id)
            recipients = [e for e in events if e.type is EventType.ACCEPTED and e.recipient]
            if report.verp.recipient_index >= len(recipients):
                return []
            event = recipients[report.verp.recipient_index]
            assert event.recipient is not None
            line = _line_for(acted, event.recipient)
            return [_finding(event, line, report, source, "verp")]
        original = embedded_headers(msg)
        message_id = header(original, "Message-ID") if original is not None else ""
        if not message_id:
            return []
        events = await self.actions.state.events.by_message_id(message_id)
        accepted = [e for e in events if e.type is EventType.ACCEPTED and e.recipient]
        out = []
        for line in acted:
            found = _event_for(accepted, line.address)
            if found is not None:
                out.append(_finding(found, line, report, source, "message-id"))
        return out


def _parse_message(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=POLICY).parsebytes(data[:MAX_PARSED_BYTES])
    assert isinstance(msg, EmailMessage)
    return msg


def _line_for(acted: list[BounceRecipient], address: str) -> BounceRecipient:
    """The report's line for `address`, else its first (VERP already names the recipient)."""
    wanted = normalize_address(address)
    for line in acted:
        if line.address and normalize_address(line.address) == wanted:
            return line
    return acted[0]


def _event_for(accepted: list[Event], address: str) -> Event | None:
    """The `accepted` event of this recipient; with a redacted address (ARF), the only
    recipient of the message, if it had just one."""
    if not address:
        rcpts = {normalize_address(e.recipient or "") for e in accepted}
        return accepted[-1] if len(rcpts) == 1 else None
    wanted = normalize_address(address)
    for event in reversed(accepted):  # the latest message with this Message-ID
        if normalize_address(event.recipient or "") == wanted:
            return event
    return None


def _finding(event: Event, line: BounceRecipient, report: BounceReport, source: str,
             matched_by: str) -> Finding:
    assert event.recipient is not None
    detail = f"report={report.detector} matched_by={matched_by}"
    if line.diagnostic:
        detail += f" diagnostic={line.diagnostic[:200]!r}"
    if line.feedback_type:
        detail += f" feedback_type={line.feedback_type}"
    # The line's action comes from the same verdict as a delivery reply's
    # (gateway.bounces.verdicts): a blocklisting reported by DSN suppresses no one.
    return Finding(queue_id=event.queue_id, recipient=event.recipient, kind=str(line.kind),
                   status=line.status, reason=line.reason, source=source,
                   action=Action(line.action), message_id=event.message_id, detail=detail)
