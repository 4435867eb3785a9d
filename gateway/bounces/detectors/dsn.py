"""RFC 3464 delivery status notifications (and RFC 6533's message/global-delivery-status).

Postfix, Sendmail, modern Exim, Exchange/Office 365, Gmail, Outlook.com and
Amazon SES all send these: `multipart/report; report-type=delivery-status`
whose second part is `message/delivery-status`. The stdlib parser already
splits that part into blocks (the per-message fields, then one block per
recipient); this detector only reads the fields.

Quirks handled:
- `Action: delivered | relayed | expanded` blocks are successes and skipped;
  `failed` is a failure, `delayed` a temporary one. The status class, when
  present, outranks the action (a `failed` 4.4.7 is an expiry, not a bad
  address).
- Exchange and others send `Status: 5.0.0` with the real code in
  `Diagnostic-Code: smtp; 550 5.1.1 …`: a more specific code there wins.
- `Final-Recipient` may be missing (use `X-Actual-Recipient`, then
  `Original-Recipient`), and addresses may be wrapped in `<>`.
- RFC 6533 `message/global-delivery-status` is not split by the stdlib; its
  blocks are parsed one by one with the stdlib header parser.
- A report part that exists but has no recipient blocks is still "mine" (an
  empty list), so plain-text detectors do not re-read the human part.

Security: reads untrusted fields; each is capped before any pattern search.
"""

from __future__ import annotations

import re
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.policy import default as default_policy

from gateway.bounces.detectors.base import Detector, clean_address, failed_recipient, header
from gateway.bounces.report import BounceRecipient
from gateway.bounces.status import find_status

__all__ = ["Dsn"]

_BLOCK_SPLIT = re.compile(r"\r?\n[ \t]*\r?\n")
_FAILURE_ACTIONS = {"failed": True, "delayed": False}


class Dsn(Detector):
    name = "dsn"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        blocks = _status_blocks(msg)
        if blocks is None:
            return None
        return [r for r in (_recipient(b) for b in blocks[1:]) if r is not None]


def _status_blocks(msg: Message) -> list[Message] | None:
    """The delivery-status blocks (per-message first), or None when there is no such part."""
    if msg.get_content_maintype() != "multipart" and msg.get_content_type() not in (
            "message/delivery-status", "message/global-delivery-status"):
        return None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            payload = part.get_payload()
            return [b for b in payload if isinstance(b, Message)] if isinstance(
                payload, list) else []
        if ctype == "message/global-delivery-status":
            return _global_blocks(part)
        if ctype == "message/rfc822":
            break  # the original comes after the report; never read a DSN inside it
    return None


def _global_blocks(part: Message) -> list[Message]:
    """RFC 6533 blocks: the stdlib parses the part as a message whose headers are the
    per-message block and whose body holds the recipient blocks, still unparsed."""
    inner = part.get_payload(0) if part.is_multipart() else None
    if not isinstance(inner, Message):
        return []
    # As bytes: get_payload() would decode the UTF-8 (RFC 6533) as ASCII.
    rest = inner.get_payload(decode=True)
    text = rest.decode("utf-8", "replace") if isinstance(rest, bytes) else ""
    parser = HeaderParser(policy=default_policy)
    return [inner] + [parser.parsestr(b) for b in _BLOCK_SPLIT.split(text.strip()) if b.strip()]


def _recipient(block: Message) -> BounceRecipient | None:
    action = header(block, "Action").lower().split(" ")[0]
    if action not in _FAILURE_ACTIONS:
        return None  # delivered, relayed, expanded: not a failure
    address = (header(block, "Final-Recipient") or header(block, "X-Actual-Recipient")
               or header(block, "Original-Recipient"))
    if not address:
        return None
    diagnostic = header(block, "Diagnostic-Code")[:4096]
    if ";" in diagnostic[:16]:
        diagnostic = diagnostic.split(";", 1)[1].strip()
    status = find_status(header(block, "Status")[:64])
    detailed = find_status(diagnostic)
    if detailed and (status is None or (status.endswith(".0.0") and detailed[0] == status[0])):
        status = detailed
    original = header(block, "Original-Recipient")
    return failed_recipient(
        address, diagnostic, permanent=_FAILURE_ACTIONS[action], status=status,
        remote_mta=clean_address(header(block, "Remote-MTA")),
        original_recipient=clean_address(original) if original else "")
