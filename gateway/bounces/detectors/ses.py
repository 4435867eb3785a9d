"""Amazon SES bounce and complaint notifications delivered as email (via SNS).

SES reports bounces two ways. Forwarded feedback ("email feedback
forwarding") is an RFC 3464 DSN from MAILER-DAEMON@amazonses.com — the Dsn
detector reads it. An SNS topic with an email subscription instead mails the
notification as JSON: the body is either the notification itself
(`{"notificationType": "Bounce", "bounce": {...}}`, protocol "email") or the
SNS envelope whose `Message` string holds it (protocol "email-json").

Fields read: `bounce.bounceType` (Permanent → hard, Transient → soft,
Undetermined → from the code), `bounce.bouncedRecipients[].emailAddress /
status / diagnosticCode`, and `complaint.complainedRecipients[].emailAddress`
with `complaint.complaintFeedbackType`. Delivery notifications are not
failures (an empty list).

Security: the JSON is untrusted and may be large; only the first 256 KiB is
parsed, and unexpected types are skipped rather than trusted.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from typing import Any

from gateway.bounces.detectors.base import Detector, body_text, failed_recipient, header
from gateway.bounces.report import BounceRecipient, Kind
from gateway.bounces.status import find_status
from gateway.bounces.verdicts import Action, Reason

__all__ = ["Ses"]

_MAX_JSON = 256 * 1024
# bounceSubType → the words the status table knows (used after the diagnostic).
_SUBTYPES = {
    "NoEmail": "(no such user)", "MailboxFull": "(mailbox full)",
    "MessageTooLarge": "(message too large)", "ContentRejected": "(content rejected)",
    "AttachmentRejected": "(content rejected)", "Suppressed": "(suppressed by policy)",
    "OnAccountSuppressionList": "(suppressed by policy)",
}
_PERMANENCE = {"permanent": True, "transient": False}


class Ses(Detector):
    name = "ses"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        if ("amazonaws.com" not in header(msg, "From").lower()
                and msg.get("X-Amz-Sns-Message-Type") is None):
            return None
        note = _notification(body_text(msg, limit=_MAX_JSON).strip())
        if note is None:
            return None
        kind = str(note.get("notificationType") or note.get("eventType") or "").lower()
        if kind == "bounce":
            return _bounces(_dict(note.get("bounce")))
        if kind == "complaint":
            return _complaints(_dict(note.get("complaint")))
        return []


def _notification(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("Message"), str):
        try:
            data = json.loads(data["Message"])
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bounces(bounce: dict[str, Any]) -> list[BounceRecipient]:
    permanent = _PERMANENCE.get(str(bounce.get("bounceType", "")).lower())
    out = []
    for r in bounce.get("bouncedRecipients") or ():
        r = _dict(r)
        address = str(r.get("emailAddress") or "")
        if address:
            status = r.get("status")
            diagnostic = str(r.get("diagnosticCode") or "")
            subtype = _SUBTYPES.get(str(bounce.get("bounceSubType", "")), "")
            out.append(failed_recipient(
                address, f"{diagnostic} {subtype}".strip(), permanent=permanent,
                status=find_status(status) if isinstance(status, str) else None))
    return out


def _complaints(complaint: dict[str, Any]) -> list[BounceRecipient]:
    ftype = str(complaint.get("complaintFeedbackType") or "abuse")
    return [BounceRecipient(str(_dict(r).get("emailAddress")), Kind.COMPLAINT, None,
                            Reason.FEEDBACK.value, feedback_type=ftype,
                            action=Action.COMPLAINT.value)
            for r in complaint.get("complainedRecipients") or () if _dict(r).get("emailAddress")]
