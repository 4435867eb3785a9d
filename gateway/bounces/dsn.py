"""Delivery status notifications to the sender (RFC 3464), for routes that want them.

Postfix counterpart: bounce(8). Off by default — apps learn about failures
from events — and enabled per route (`dsn: true`). Built with the stdlib
`email` package: a multipart/report (RFC 6522) with a human-readable part, a
`message/delivery-status` part (one per-message block, one block per failed
recipient) and the original's header as `text/rfc822-headers`.

No bounce loops: never for null-sender mail (a DSN's own sender is <>), and
never in reply to a delivery report or to auto-submitted mail (RFC 3834).

Security: the original's header is untrusted; it is attached as it is and
only its Content-Type and Auto-Submitted fields are read.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import format_datetime

from gateway.model import QueuedMessage, Reply

__all__ = ["Failure", "build_dsn", "dsn_allowed", "header_section"]

_REPORT = re.compile(rb"^content-type:[ \t]*multipart/report", re.IGNORECASE | re.MULTILINE)
_AUTO = re.compile(rb"^auto-submitted:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Failure:
    recipient: str
    reply: Reply
    remote_mta: str = ""  # the host that refused it ("" when none answered)
    expired: bool = False  # gave up after temporary failures


def header_section(content: bytes) -> bytes:
    """The original's header section (up to the first empty line)."""
    end = content.find(b"\r\n\r\n")
    return content if end < 0 else content[: end + 2]


def dsn_allowed(qm: QueuedMessage, header: bytes) -> bool:
    if qm.envelope.mail_from == "":
        return False  # null sender: a bounce itself (RFC 5321 4.5.5)
    if _REPORT.search(header):
        return False  # a report of some kind: never answer one
    auto = _AUTO.search(header)
    return not (auto is not None and auto.group(1).lower() != b"no")


def build_dsn(qm: QueuedMessage, header: bytes, failures: list[Failure], hostname: str,
              now: float) -> EmailMessage:
    env = qm.envelope
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    msg["To"] = env.mail_from
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = f"<{secrets.token_hex(16)}@{hostname}>"
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(_human_text(qm, failures, hostname))
    msg.make_mixed()
    msg.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    msg.attach(_status_part(qm, failures, hostname))
    headers = EmailMessage(policy=SMTP)
    headers.set_payload(header.decode("utf-8", errors="replace"))
    headers["Content-Type"] = "text/rfc822-headers"
    headers["Content-Description"] = "Undelivered Message Headers"
    msg.attach(headers)
    return msg


def _human_text(qm: QueuedMessage, failures: list[Failure], hostname: str) -> str:
    lines = [
        f"This is the mail system at host {hostname}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        f"Queue id {qm.id}, Message-ID {qm.envelope.message_id or '(none)'}.",
        "",
    ]
    for f in failures:
        how = "gave up after repeated temporary failures" if f.expired else "refused"
        lines.append(f"<{f.recipient}>: {how}: {f.reply}")
    return "\n".join(lines) + "\n"


def _status_part(qm: QueuedMessage, failures: list[Failure], hostname: str) -> EmailMessage:
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {hostname}"
    per_message["X-Gateway-Queue-ID"] = qm.id
    per_message["Arrival-Date"] = format_datetime(
        datetime.fromtimestamp(qm.envelope.received_at, UTC))
    blocks: list[Message | str] = [per_message]
    for f in failures:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {f.recipient}"
        block["Action"] = "failed"
        block["Status"] = f.reply.enhanced or ("5.0.0" if f.reply.code >= 500 else "4.0.0")
        if f.expired and block["Status"].startswith("4"):
            block.replace_header("Status", "5" + block["Status"][1:])  # final now
        if f.remote_mta:
            block["Remote-MTA"] = f"dns; {f.remote_mta}"
        block["Diagnostic-Code"] = f"smtp; {f.reply}"
        blocks.append(block)
    # The generator writes a message/delivery-status payload as its list of blocks.
    part = EmailMessage(policy=SMTP)
    part["Content-Type"] = "message/delivery-status"
    part.set_payload(blocks)
    return part
