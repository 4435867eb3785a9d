"""Yahoo (and AOL, on the same platform) failure notices.

Yahoo's outbound bounces are qmail-derived plain text: From
MAILER-DAEMON@yahoo.com (or aol.com), Subject "Failure Notice", the greeting
"Sorry, we were unable to deliver your message to the following address."
(older: "Message from yahoo.com. Unable to deliver message to the following
address(es)."), then QSBMF-style `<address>:` paragraphs ending with the
remote reply and a bracketed SMTP stage ("[RCPT_TO]", "[DATA]"), then "---
Below this line is a copy of the message."

Quirks: a temporary failure is announced in the paragraph itself ("this is a
temporary error", or a 4xx reply); otherwise the notice is final.

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

__all__ = ["Yahoo"]

_GREETING = re.compile(r"sorry, we were unable to deliver your message"
                       r"|unable to deliver message to the following address", re.IGNORECASE)
_ORIGINAL = "--- Below this line is a copy of the message"
_TEMPORARY = re.compile(r"temporary (?:error|failure)|will (?:be )?retr", re.IGNORECASE)


class Yahoo(Detector):
    name = "yahoo"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        text = body_text(msg)
        if not _GREETING.search(text[:2000]):
            return None
        return [failed_recipient(address, diagnostic,
                                 permanent=not _TEMPORARY.search(diagnostic))
                for address, diagnostic in angle_paragraphs(text, stop=_ORIGINAL)]
