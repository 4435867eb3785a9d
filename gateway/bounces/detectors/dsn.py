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
  `Original-Recipient`), and addresses may be wrapped in `<>`. When a failed
  block names nobody at all, the recipients come from `X-Failed-Recipients`,
  else the addresses of the human part, else the embedded original's `To:`
  when it has one address.
- No `Diagnostic-Code` (Exim's local failures, Courier): the human part's
  lines after the address are the diagnosis.
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

from gateway.bounces.detectors.base import (
    ADDRESS,
    Detector,
    body_text,
    clean_address,
    embedded_headers,
    failed_recipient,
    header,
)
from gateway.bounces.report import BounceRecipient
from gateway.bounces.status import find_status, infer

__all__ = ["Dsn"]

_BLOCK_SPLIT = re.compile(r"\r?\n[ \t]*\r?\n")
_FAILURE_ACTIONS = {"failed": True, "delayed": False}


class Dsn(Detector):
    name = "dsn"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        blocks = _status_blocks(msg)
        if blocks is None:
            return None
        human = _Human(msg)
        out = [r for r in (_recipient(b, human) for b in blocks[1:]) if r is not None]
        if not out and _failed_without_recipient(blocks[1:]):
            out = _from_elsewhere(msg, human)
        return out


class _Human:
    """The report's human-readable part, read only when a block lacks a field."""

    def __init__(self, msg: EmailMessage) -> None:
        self.msg = msg
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = body_text(self.msg)
        return self._text

    def about(self, address: str) -> str:
        """What the human part says after `address`: the rest of its line and the indented
        lines below it (Exim and Postfix indent continuations; OpenSMTPD writes one line
        per recipient, so the next recipient's line is not part of it)."""
        if not address:
            return ""
        text = self.text
        at = text.lower().find(address.lower())
        if at < 0:
            return ""
        lines = text[at + len(address):at + len(address) + 1000].split("\n")
        out = [lines[0]]
        rest = iter(lines[1:])
        for line in rest:
            if not line.strip() or not line[:1].isspace():
                break
            out.append(line)
        else:
            line = ""
        if infer(" ".join(out))[0] == "undefined":
            # Courier's transcript (">>> RCPT TO", "<<< 550 …") is not indented: read on
            # to the end of the paragraph, but not into another recipient's line.
            while line.strip() and not _OTHER_RECIPIENT.match(line):
                out.append(line)
                line = next(rest, "")
        return " ".join(" ".join(out).split())


def _failed_without_recipient(blocks: list[Message]) -> bool:
    """A failure block that names nobody (some relays omit Final-Recipient)."""
    return any(header(b, "Action").lower().split(" ")[0] in _FAILURE_ACTIONS
               and not _address_of(b) for b in blocks)


def _from_elsewhere(msg: EmailMessage, human: _Human) -> list[BounceRecipient]:
    """Recipients of a DSN whose blocks name nobody: X-Failed-Recipients, else the
    addresses the human part names, else the embedded original's To: (one address)."""
    found = [m[1] for m in ADDRESS.finditer(header(msg, "X-Failed-Recipients"))]
    if not found:
        ours = {clean_address(header(msg, h)).lower() for h in ("From", "To")}
        found = [m[1] for m in ADDRESS.finditer(human.text[:4000])
                 if m[1].lower() not in ours and not _ROLE.match(m[1])]
    if not found:
        original = embedded_headers(msg)
        to = [m[1] for m in ADDRESS.finditer(header(original, "To"))] if original else []
        found = to if len(to) == 1 else []
    blocks = _status_blocks(msg) or []
    block = next((b for b in blocks[1:] if header(b, "Action")), Message())
    action = header(block, "Action").lower().split(" ")[0]
    status = find_status(header(block, "Status")[:64])
    out = []
    for address in dict.fromkeys(found):
        diagnostic = _diagnostic(block) or human.about(address)
        out.append(failed_recipient(address, diagnostic,
                                    permanent=_FAILURE_ACTIONS.get(action, True),
                                    status=status))
    return out


_OTHER_RECIPIENT = re.compile(r"^\s{0,3}<?[^\s<>@]+@[^\s<>]+>?:?(?:\s|$)")
_ROLE = re.compile(r"^(?:mailer-daemon|postmaster|abuse|noreply|no-reply)@", re.IGNORECASE)


def _address_of(block: Message) -> str:
    return (header(block, "Final-Recipient") or header(block, "X-Actual-Recipient")
            or header(block, "Original-Recipient"))


def _diagnostic(block: Message) -> str:
    diagnostic = header(block, "Diagnostic-Code")[:4096]
    if ";" in diagnostic[:16]:
        diagnostic = diagnostic.split(";", 1)[1].strip()
    return diagnostic


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


def _recipient(block: Message, human: _Human) -> BounceRecipient | None:
    action = header(block, "Action").lower().split(" ")[0]
    if action not in _FAILURE_ACTIONS:
        return None  # delivered, relayed, expanded: not a failure
    address = _address_of(block)
    if not address or "@" not in address:
        return None
    # Without a Diagnostic-Code (Exim's local failures, Courier), the human part's
    # paragraph about this address is the diagnosis.
    diagnostic = _diagnostic(block) or human.about(clean_address(address))
    status = find_status(header(block, "Status")[:64])
    detailed = find_status(diagnostic)
    if detailed and (status is None or (status.endswith(".0.0") and detailed[0] == status[0])):
        status = detailed
    original = header(block, "Original-Recipient")
    return failed_recipient(
        address, diagnostic, permanent=_FAILURE_ACTIONS[action], status=status,
        remote_mta=clean_address(header(block, "Remote-MTA")),
        original_recipient=clean_address(original) if original else "")
