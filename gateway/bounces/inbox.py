"""SMTP ingestion: mail for the bounce domain goes to the bounce parser, not the queue.

Intake (gateway.intake.accept) asks `accepts()` at RCPT, before its relay
check: bounces come from the whole world, so any client may send mail to
the bounce domain — and only to it; relaying still needs the listener's
networks or AUTH. A transaction is either all bounce-domain recipients or
none (a mixed one gets 452 4.5.3 for the odd recipient, and the client sends
it in a transaction of its own).

At DATA the message is written to the gateway's own Maildir with
`Delivered-To:` (the VERP address) and `Return-Path:` fields prepended, and
fsynced, before the 250; then the Maildir ingester is poked to process it.
A 250 therefore means "stored durably"; processing follows within moments,
or at the next start.

Security: everything here is untrusted input from anyone on the network.
Recipient addresses are compared, never interpreted; control characters are
removed from what is put into the prepended fields.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from gateway.bounces.maildir import Maildir
from gateway.model import Envelope, Reply

__all__ = ["BOUNCE_STORED", "MIXED_TRANSACTION", "BounceInbox"]

log = logging.getLogger(__name__)

BOUNCE_STORED = Reply(250, "2.0.0", "Ok: bounce received")
MIXED_TRANSACTION = Reply(452, "4.5.3", "Send mail for the bounce domain in its own transaction")
STORE_FAILED = Reply(451, "4.3.0", "Cannot store the bounce now, try again later")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>]")


class BounceInbox:
    def __init__(self, domain: str, listeners: tuple[str, ...] | None, maildir: Maildir,
                 on_stored: Callable[[], None] | None = None) -> None:
        self.domain = domain.lower().rstrip(".")
        self.listeners = listeners
        self.maildir = maildir
        self.on_stored = on_stored
        self.received = 0  # bounces stored (a counter for the metrics exporter)

    def __repr__(self) -> str:
        return f"<BounceInbox @{self.domain} listeners={self.listeners} {self.maildir!r}>"

    def accepts(self, listener: str, recipient: str) -> bool:
        if self.listeners is not None and listener not in self.listeners:
            return False
        return recipient.rpartition("@")[2].lower().rstrip(".") == self.domain

    def check_rcpt(self, listener: str, recipient: str,
                   earlier: tuple[str, ...]) -> Reply | None:
        """None: not ours (intake goes on); else the reply for this RCPT."""
        ours = self.accepts(listener, recipient)
        if earlier and any(self.accepts(listener, r) for r in earlier) != ours:
            return MIXED_TRANSACTION
        return Reply(250, "2.1.5", "Ok") if ours else None

    def takes(self, envelope: Envelope) -> bool:
        listener = envelope.client.listener
        return bool(envelope.recipients) and all(self.accepts(listener, r)
                                                 for r in envelope.recipients)

    async def receive(self, envelope: Envelope, content: bytes) -> Reply:
        fields = "".join(f"Delivered-To: {_safe(r)}\r\n" for r in envelope.recipients)
        data = (f"Return-Path: <{_safe(envelope.mail_from)}>\r\n{fields}").encode() + content
        try:
            await asyncio.to_thread(self.maildir.deliver, data)
        except OSError as exc:
            log.error("cannot store a bounce from %s: %s", envelope.client.address, exc)
            return STORE_FAILED
        self.received += 1
        log.info("bounce stored from=<%s> to=%s client=%s", envelope.mail_from,
                 ",".join(envelope.recipients), envelope.client.address)
        if self.on_stored is not None:
            self.on_stored()
        return BOUNCE_STORED


def _safe(text: str) -> str:
    return _UNSAFE.sub("", text)[:512]
