"""Postfix's human-readable bounce text, when it arrives without its DSN part.

Postfix normally sends an RFC 3464 report (the Dsn detector reads that).
This detector covers the plain variants: old Postfix ("This is the Postfix
program at host …"), and reports whose `message/delivery-status` part was
stripped by a forwarder or a list. The text is the mail system's greeting,
then `<user@example.com>: host mx[192.0.2.1] said: 550 5.1.1 … (in reply
to RCPT TO command)` paragraphs, continued on indented lines.

Quirks: the subject tells failure from delay ("Undelivered Mail Returned to
Sender" vs "Delayed Mail (still being retried)"), as does the greeting
("could not be delivered" vs "has not yet been delivered"); a code in the
paragraph outranks both.

Security: the text is untrusted; it is capped (base.MAX_TEXT) and only searched
with linear patterns.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import (
    Detector,
    angle_paragraphs,
    body_text,
    failed_recipient,
    header,
)
from gateway.bounces.report import BounceRecipient

__all__ = ["Postfix"]

_GREETING = re.compile(r"this is the (?:mail system|postfix program) at host", re.IGNORECASE)
_DELAYED = re.compile(r"delayed mail|not yet been delivered|still being retried", re.IGNORECASE)


class Postfix(Detector):
    name = "postfix"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        text = body_text(msg)
        if not _GREETING.search(text[:2000]):
            return None
        delayed = bool(_DELAYED.search(header(msg, "Subject")) or _DELAYED.search(text[:2000]))
        return [failed_recipient(address, diagnostic, permanent=not delayed)
                for address, diagnostic in angle_paragraphs(text)]
