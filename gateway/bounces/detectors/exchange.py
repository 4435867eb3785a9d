"""Microsoft Exchange / Office 365 non-delivery reports without a usable DSN part.

Modern Exchange and Office 365 attach `message/delivery-status` (the Dsn
detector reads it). This detector covers the human-only variants:
- Exchange 2007 and later: "Delivery has failed to these recipients or
  groups:" (or "Delivery is delayed to these recipients or groups:"), then
  under "Diagnostic information for administrators:" each address followed
  by a line like "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##".
- Exchange 2000/2003: "Your message did not reach some or all of the intended
  recipients." … "The following recipient(s) cannot be reached:", then per
  recipient "'user@example.com' on 11/3/2026 10:01 AM", the explanation, and
  "<mx.example.com #5.1.1>".

Quirks: the human part may be HTML only — text/plain is preferred, and
without one the HTML part is read with its tags dropped. Exchange names
recipients by display name when it has one; only lines with an address
count. Office 365 writes "Your message to x couldn't be delivered." as its
headline and the same diagnostic block.

Security: the text (or HTML, whose tags are dropped by a bounded pattern) is
untrusted and capped at base.MAX_TEXT.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import (
    ADDRESS,
    Detector,
    body_text,
    failed_recipient,
    html_text,
)
from gateway.bounces.report import BounceRecipient

__all__ = ["Exchange"]

_FAILED = re.compile(r"delivery has failed to these recipients|did not reach some or all"
                     r"|following recipient\(s\) cannot be reached", re.IGNORECASE)
# Office 365's headline is ordinary English; it counts only beside the admin block.
_O365 = re.compile(r"couldn't be delivered", re.IGNORECASE)
_ADMIN = "diagnostic information for administrators"
_DELAYED = re.compile(r"delivery is delayed to these recipients|has not been delivered yet",
                      re.IGNORECASE)
_DIAGNOSTIC = re.compile(r"^\s*#?\s*([45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}.*?)\s*(?:##.*)?$")
_LEGACY_CODE = re.compile(r"<[^<>#]*#\s*([245]\.\d{1,3}\.\d{1,3})[^>]*>")


class Exchange(Detector):
    name = "exchange"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        text = body_text(msg) or html_text(msg)
        head = text[:4000]
        if not (_FAILED.search(head) or _DELAYED.search(head)
                or (_O365.search(head) and _ADMIN in text.lower())):
            return None
        permanent = not _DELAYED.search(head)
        found = _admin_block(text) or _legacy(text)
        return [failed_recipient(a, d, permanent=permanent) for a, d in found]


def _admin_block(text: str) -> list[tuple[str, str]]:
    """From "Diagnostic information for administrators": address line, then #code line."""
    at = text.lower().find(_ADMIN)
    if at < 0:
        return []
    out: list[tuple[str, str]] = []
    last = ""
    for line in text[at:].splitlines()[1:]:
        diag = _DIAGNOSTIC.match(line)
        if diag and last:
            out.append((last, diag[1]))
            last = ""
            continue
        stripped = line.strip()
        m = ADDRESS.fullmatch(stripped)
        if m:
            last = m[1]
        elif stripped.lower().startswith("original message headers"):
            break
    return out


def _legacy(text: str) -> list[tuple[str, str]]:
    """Exchange 2003: "'addr' on DATE" then the explanation and "<host #5.1.1>"."""
    at = text.lower().find("cannot be reached")
    if at < 0:
        at = text.lower().find("failed to these recipients")
    out: list[tuple[str, list[str]]] = []
    for line in text[max(at, 0):].splitlines()[1:]:
        m = ADDRESS.search(line)
        if m and (" on " in line or line.strip().strip("'<>") == m[1]):
            out.append((m[1], []))
        elif out and line.strip():
            out[-1][1].append(line.strip())
    found = []
    for address, lines in out:
        detail = " ".join(lines)
        code = _LEGACY_CODE.search(detail)
        found.append((address, f"{code[1]} {detail}" if code else detail))
    return found
