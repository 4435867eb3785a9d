"""qmail's bounces: the qmail-send Bounce Message Format (QSBMF).

D. J. Bernstein's QSBMF: a fixed greeting ("Hi. This is the qmail-send
program at host."), then one paragraph per recipient beginning
`<user@example.com>:`, the remote reply on the following lines, then the
line "--- Below this line is a copy of the message." qmail-derived systems
(vpopmail, netqmail, s/qmail) keep the layout and vary the greeting.

Quirks: qmail gives up only on permanent errors or after queuelifetime, so
every paragraph is a permanent failure unless its own code says 4.x.x (the
"(#4.4.1)"-style suffix QSBMF allows). Local deliveries put the reason in
the paragraph ("Sorry, no mailbox here by that name. (#5.1.1)").

Security: the paragraph text is untrusted; it is capped (base.MAX_TEXT) and only
searched with linear patterns.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import (
    Detector,
    angle_paragraphs,
    body_text,
    failed_recipient,
)
from gateway.bounces.report import BounceRecipient

__all__ = ["Qmail"]

_GREETING = re.compile(r"this is the qmail-send program|qmail-send program at"
                       r"|i'm afraid i wasn't able to deliver your message", re.IGNORECASE)
_ORIGINAL = "--- Below this line is a copy of the message"


class Qmail(Detector):
    name = "qmail"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        text = body_text(msg)
        if not _GREETING.search(text[:2000]):
            return None
        return [failed_recipient(address, diagnostic, permanent=True)
                for address, diagnostic in angle_paragraphs(text, stop=_ORIGINAL)]
