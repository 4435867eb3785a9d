"""The last resort for other providers' plain-text bounces (flufl.bounce's "simplematch").

Many systems (Zimbra, Mimecast, hosting panels, small ISPs, ticketing
systems' relays) send a short human message from MAILER-DAEMON or postmaster
with a subject like "Undeliverable", "Returned mail" or "Delivery failure",
and one sentence per recipient: "Your message could not be delivered to
user@example.com: 550 5.1.1 …", "The following recipient(s) could not be
reached: …", "Unable to deliver to …".

Recognised only when the sender *and* the subject look like a bounce, so
that ordinary mail quoting such sentences is never taken for one. Each
address in the human part (up to the quoted original) is a recipient, its
paragraph the diagnostic; permanence comes from the words "permanent" or
"temporary/delayed/will retry", else from a status code in the paragraph,
else it is unknown.

Security: the text is untrusted; it is capped (base.MAX_TEXT), and the sender
and subject gate keeps ordinary mail out.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import (
    ADDRESS,
    Detector,
    body_text,
    clean_address,
    failed_recipient,
    header,
    is_from_mailer_daemon,
)
from gateway.bounces.report import BounceRecipient

__all__ = ["Generic"]

_SUBJECT = re.compile(r"undeliver|returned mail|delivery (?:status notification|failure|failed"
                      r"|problem|notification)|failure notice|mail delivery failed"
                      r"|non[- ]?delivery|could not be delivered|message not delivered"
                      r"|delayed", re.IGNORECASE)
_ORIGINAL = re.compile(r"^[-= ]*(?:original message|original headers|a copy of the"
                       r"|below (?:this line )?is a copy|message headers|included message"
                       r"|---+ ?(?:original|forwarded)).*$", re.IGNORECASE | re.MULTILINE)
_PERMANENT = re.compile(r"permanent|fatal|gave up|giving up|has been rejected|rejected"
                        r"|could not be delivered|not be delivered|not delivered", re.IGNORECASE)
_TEMPORARY = re.compile(r"temporar|delayed|will (?:be )?retr|will keep trying|not yet been"
                        r"|still trying", re.IGNORECASE)
_IGNORE = re.compile(r"^(?:mailer-daemon|postmaster|noreply|no-reply|abuse)@", re.IGNORECASE)


class Generic(Detector):
    name = "generic"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        if not (is_from_mailer_daemon(msg) and _SUBJECT.search(header(msg, "Subject")[:200])):
            return None
        text = body_text(msg)
        cut = _ORIGINAL.search(text)
        human = text[:cut.start()] if cut else text
        ours = {clean_address(header(msg, h)).lower() for h in ("From", "To", "Reply-To")}
        out: list[BounceRecipient] = []
        seen: set[str] = set()
        paragraphs = [p for p in re.split(r"\n\s*\n", human) if p.strip()]
        for i, paragraph in enumerate(paragraphs):
            following = paragraphs[i + 1] if i + 1 < len(paragraphs) else ""
            if any(m[1] not in paragraph for m in ADDRESS.finditer(following)):
                following = ""  # the next recipient's, not this one's
            for m in ADDRESS.finditer(paragraph):
                address = m[1]
                key = address.lower()
                if key in seen or key in ours or _IGNORE.match(address):
                    continue
                seen.add(key)
                diagnostic = " ".join(f"{paragraph} {following}".split())
                out.append(failed_recipient(address, diagnostic,
                                            permanent=_permanence(diagnostic, human)))
        return out


def _permanence(paragraph: str, text: str) -> bool | None:
    for scope in (paragraph, text):
        if _TEMPORARY.search(scope):
            return False
        if _PERMANENT.search(scope):
            return True
    return None
