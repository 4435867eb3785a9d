"""RFC 5965 Abuse Reporting Format feedback reports (complaints).

Sent by mailbox providers' feedback loops (Yahoo, Outlook.com/JMRP, AOL,
Comcast…) and by SES/other relays: `multipart/report;
report-type=feedback-report` whose second part is `message/feedback-report`
(the stdlib parses its fields like a header block) and whose third is the
original message or its headers.

The complained-about recipient is, in order: `Original-Rcpt-To` fields (RFC
5965 §3.2, may repeat), else the original's `To:` header. Many providers
redact it ("redacted@example.com", or nothing at all); then the VERP return
path of the original is what identifies the recipient, and
`classify.parse()` reads it from the original's `Return-Path`. With nothing
to go on, the report still counts (one recipient with an empty address).

`Feedback-Type` (abuse, fraud, virus, other, not-spam, auth-failure) is kept
on each recipient; the reason is always `feedback` (Sisimai's name) and the
kind `complaint`.

Security: reads untrusted fields; addresses are only extracted, never used.
"""

from __future__ import annotations

from email.message import EmailMessage, Message

from gateway.bounces.detectors.base import Detector, clean_address, embedded_headers, header
from gateway.bounces.report import BounceRecipient, Kind
from gateway.bounces.verdicts import Action, Reason

__all__ = ["Arf", "feedback_fields"]


class Arf(Detector):
    name = "arf"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        fields = feedback_fields(msg)
        if fields is None:
            return None
        ftype = header(fields, "Feedback-Type").lower().split(" ")[0] or "abuse"
        addresses = [clean_address(str(v)) for v in fields.get_all("Original-Rcpt-To") or ()]
        if not addresses:
            original = embedded_headers(msg)
            to = header(original, "To") if original is not None else ""
            addresses = [clean_address(to)] if "@" in to else [""]
        # Every ARF report is feedback; an auth-failure report (RFC 6591) is a complaint
        # about authentication, still feedback and not a delivery failure.
        return [BounceRecipient(a, Kind.COMPLAINT, None, Reason.FEEDBACK.value,
                                feedback_type=ftype, action=Action.COMPLAINT.value)
                for a in dict.fromkeys(addresses)]


def feedback_fields(msg: Message) -> Message | None:
    """The machine-readable part of an ARF report, or None if `msg` is not one."""
    if msg.get_content_type() != "multipart/report":
        return None
    for part in msg.iter_parts() if isinstance(msg, EmailMessage) else ():
        if part.get_content_type() == "message/feedback-report":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
            return Message()
    return None
