"""Exim's bounce and delay-warning text.

Exim writes (`exim4/src/deliver.c`'s bounce text, customisable in
`bounce_message_file`): "This message was created automatically by mail
delivery software.", then either "A message that you sent could not be
delivered to one or more of its recipients. … The following address(es)
failed:" or, for a delay warning, "… has not yet been delivered to one or
more of its recipients after more than 24 hours …". Each address is indented
two spaces; its reasons follow, indented four or more ("host mx.example.com
[192.0.2.1]", "SMTP error from remote mail server after RCPT TO:<…>:",
"550 5.1.1 User unknown"). The original follows "------ This is a copy of
the message, including all the headers. ------".

Quirks: `X-Failed-Recipients:` lists the failed addresses and is trusted when
the body was rewritten; "(generated from alias@…)" lines name the address
the sender used, kept as the original recipient; "retry timeout exceeded"
and "Unrouteable address" carry no code, so the text decides.

Security: the text is untrusted; it is capped (base.MAX_TEXT) and only searched
with linear patterns.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import (
    ADDRESS,
    Detector,
    body_text,
    failed_recipient,
    header,
)
from gateway.bounces.report import BounceRecipient

__all__ = ["Exim"]

_CREATED = "created automatically by mail delivery software"
_FAILED = re.compile(r"following address(?:\(es\)|es)? failed:|could not be delivered to one"
                     r"|the following address(?:\(es\))? (?:failed|could not)", re.IGNORECASE)
_DELAYED = re.compile(r"has not yet been delivered|addresses? to which the message has not"
                      r" yet been delivered", re.IGNORECASE)
# Exim indents addresses by two spaces; the 1&1 platform (GMX, web.de) and Zoho write
# them at the start of the line, with the reason on the following lines or after a comma.
_ADDRESS_LINE = re.compile(r"^ {0,3}<?([^\s<>@]+@[^\s<>,:]+)>?[,:]?(?:\s|$)(.*)$")
_END = re.compile(r"^-{3,}|^(?:No action is required|Reporting-MTA|The message identifier)",
                  re.IGNORECASE)
_GENERATED = re.compile(r"\(generated from ([^)\s]+)\)")


class Exim(Detector):
    name = "exim"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        text = body_text(msg)
        head = text[:3000]
        failed_header = header(msg, "X-Failed-Recipients")
        if _CREATED not in head.lower() and not failed_header:
            return None
        delayed = bool(_DELAYED.search(head)) and not _FAILED.search(head)
        intro = (_DELAYED if delayed else _FAILED).search(text)
        found = _address_blocks(text[intro.end():] if intro else "")
        if not found and failed_header:
            found = [(m[1], "") for m in ADDRESS.finditer(failed_header)]
        if not found:
            return None  # the greeting, then another layout: the generic detector's
        return [self._recipient(address, lines, delayed) for address, lines in found]

    @staticmethod
    def _recipient(address: str, detail: str, delayed: bool) -> BounceRecipient:
        generated = _GENERATED.search(detail)
        return failed_recipient(address, detail, permanent=not delayed,
                                original_recipient=generated[1] if generated else "")


def _address_blocks(text: str) -> list[tuple[str, str]]:
    """(address, its indented reason lines joined) for each two-space-indented address."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if _END.match(line.strip()) and out:
            break
        m = _ADDRESS_LINE.match(line)
        if m and "@" in m[1]:
            out.append((m[1].strip("<>:"), [m[2].strip()]))
        elif out and line.strip() and (line.startswith("    ") or len(out[-1][1]) < 40):
            out[-1][1].append(line.strip())
    return [(a, " ".join(x for x in lines if x)) for a, lines in out]
