"""Sendmail's plain-text returned mail (before or without its RFC 3464 part).

Sendmail's `savemail.c` writes sections between "   ----- … -----" rules:
"The following addresses had permanent fatal errors" (each `<address>`
on a line, optionally followed by "    (reason: 550 5.1.1 User unknown)"),
"The following addresses had transient non-fatal errors", and
"Transcript of session follows", whose `<<< 550 5.1.1 <addr>... User
unknown` lines are the remote replies. A delay warning opens with a box
saying "THIS IS A WARNING MESSAGE ONLY".

Quirks: modern Sendmail also attaches a `message/delivery-status` part; the
Dsn detector runs first and takes those. When there is no "(reason: …)", the
transcript line naming the address is the diagnostic.

Security: the text is untrusted; it is capped (base.MAX_TEXT) and only searched
with linear patterns.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import Detector, body_text, failed_recipient
from gateway.bounces.report import BounceRecipient

__all__ = ["Sendmail"]

_SECTION = re.compile(r"^\s*-{3,}\s*(.*?)\s*-{3,}\s*$", re.MULTILINE)
_ADDRESS = re.compile(r"^\s*<?([^<>\s]+@[^<>\s]+?)>?\s*(?:\.\.\.\s*(.*))?$")
_REASON = re.compile(r"^\s*\(reason:\s*(.*?)\)?\s*$", re.IGNORECASE)
_WARNING = re.compile(r"THIS IS A WARNING MESSAGE ONLY", re.IGNORECASE)


class Sendmail(Detector):
    name = "sendmail"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        text = body_text(msg)
        sections = _sections(text)
        if not any("errors" in s or "transcript of session" in s for s in sections):
            return None
        warning = bool(_WARNING.search(text[:2000]))
        transcript = sections.get("transcript of session follows", "")
        out: list[BounceRecipient] = []
        for title, permanent in (("the following addresses had permanent fatal errors", True),
                                 ("the following addresses had transient non-fatal errors",
                                  False)):
            for address, reason in _addresses(sections.get(title, "")):
                diagnostic = reason or _transcript_line(transcript, address)
                out.append(failed_recipient(address, diagnostic,
                                            permanent=permanent and not warning))
        if not out and transcript:  # only a transcript: "<addr>... Deferred: reason"
            for address, reason in _addresses(transcript):
                out.append(failed_recipient(address, reason, permanent=not warning))
        return out


def _sections(text: str) -> dict[str, str]:
    """Section title (lower case) → its body, for the "----- title -----" rules."""
    marks = list(_SECTION.finditer(text))
    return {m[1].lower(): text[m.end():marks[i + 1].start() if i + 1 < len(marks) else None]
            for i, m in enumerate(marks)}


def _addresses(section: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in section.splitlines():
        reason = _REASON.match(line)
        if reason and out:
            out[-1] = (out[-1][0], reason[1])
            continue
        if line.lstrip().startswith(("<<<", ">>>")) or line[:1].isdigit():
            continue
        m = _ADDRESS.match(line)
        if m and m[1] not in (a for a, _ in out):
            out.append((m[1], m[2] or ""))
    return out


def _transcript_line(transcript: str, address: str) -> str:
    for line in transcript.splitlines():
        if address in line and line.lstrip().startswith(("<<<", "5", "4")):
            return line.lstrip("<> ")
    return ""
