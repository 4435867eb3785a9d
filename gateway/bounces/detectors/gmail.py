"""Gmail's plain-text delivery status notifications.

Gmail (From "Mail Delivery Subsystem <mailer-daemon@googlemail.com>") has
sent, over the years:
- "Delivery to the following recipient failed permanently:" / "… has been
  delayed:", the address indented on its own line, then "Technical details
  of permanent failure:" and "The error that the other server returned was:
  550 5.1.1 …";
- the current layout, "** Address not found **" (or "** Message blocked
  **", "** Message not delivered **", "** Delivery incomplete **" for a
  delay), then "Your message wasn't delivered to user@example.com because
  …" or "There was a temporary problem delivering your message to
  user@example.com.", then "The response was:" and the reply.

Quirks: the current layout usually comes with a `message/delivery-status`
part, which the Dsn detector reads first; this covers copies without it.

Security: the text is untrusted; it is capped (base.MAX_TEXT) and only searched
with linear patterns.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import ADDRESS, Detector, body_text, failed_recipient
from gateway.bounces.report import BounceRecipient

__all__ = ["Gmail"]

_OLD = re.compile(r"delivery to the following recipients? (failed permanently|has been delayed)"
                  r":\s*\n((?:\s*\S+@\S+\s*\n)+)", re.IGNORECASE)
_NEW = re.compile(r"\*\* (address not found|message blocked|message not delivered"
                  r"|delivery incomplete|mailbox full) \*\*", re.IGNORECASE)
_NEW_ADDRESS = re.compile(r"(?:wasn't delivered to|problem delivering your message to"
                          r"|was not delivered to|your message to)\s+<?(\S+@[^\s>]+)",
                          re.IGNORECASE)
_DETAILS = re.compile(r"(?:the error that the other server returned was:|the response"
                      r"(?: from the remote server)? was:)\s*(.*?)(?:\n\s*\n|\Z)",
                      re.IGNORECASE | re.DOTALL)


class Gmail(Detector):
    name = "gmail"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        text = body_text(msg)
        head = text[:4000]
        details = _DETAILS.search(text)
        diagnostic = " ".join(details[1].split()) if details else ""
        old = _OLD.search(head)
        if old:
            permanent = "permanently" in old[1].lower()
            if not diagnostic:  # no "technical details": the paragraphs after the addresses
                after = text[old.end():old.end() + 2000].split("----- Original", 1)[0]
                diagnostic = " ".join(after.split())
            return [failed_recipient(m[1], diagnostic, permanent=permanent)
                    for m in ADDRESS.finditer(old[2])]
        new = _NEW.search(head)
        if new:
            permanent = new[1].lower() != "delivery incomplete"
            headline = new[1].lower() + " " if not diagnostic else ""
            found = [failed_recipient(m[1], headline + diagnostic, permanent=permanent)
                     for m in _NEW_ADDRESS.finditer(head)]
            return found or None  # a layout of its own: the generic detector's
        return None
