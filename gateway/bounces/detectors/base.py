"""What every detector shares: the Detector interface and reading helpers.

flufl.bounce counterpart: `interfaces.IBounceDetector` plus the small helpers
its detectors repeat. Helpers only walk what the stdlib `email` package has
already parsed (parts, headers, `message/delivery-status` blocks); the only
text they scan is decoded `text/plain`.

Security: every input is untrusted mail. Text is capped (`MAX_TEXT`) before
any regular expression sees it, and embedded originals are read with the
stdlib parser, never by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.policy import default as default_policy

from gateway.bounces.report import BounceRecipient, Kind
from gateway.bounces.status import find_status, infer, status_from

__all__ = [
    "ADDRESS",
    "MAX_TEXT",
    "Detector",
    "angle_paragraphs",
    "body_text",
    "clean_address",
    "embedded_headers",
    "failed_recipient",
    "header",
    "is_from_mailer_daemon",
]

MAX_TEXT = 64 * 1024  # bounce text worth reading is at the top; originals can be huge
ADDRESS = re.compile(r"<?([\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+)>?", re.UNICODE)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (?:sub)?system|mailer daemon"
                     r"|mail administrator", re.IGNORECASE)


class Detector:
    """One bounce format.

    `detect(msg)` returns None when the message is not in this format ("not
    mine": the next detector gets it), else the recipients it reports — which
    may be empty when the format is recognised but names no one.
    """

    name: str = ""

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def header(msg: Message, name: str) -> str:
    """A header's value as text ("" when absent or unparseable)."""
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError):  # malformed structured header
        return ""
    return str(value).strip() if value is not None else ""


def is_from_mailer_daemon(msg: Message) -> bool:
    return bool(_DAEMON.search(header(msg, "From")[:256]))


def iter_parts(msg: Message) -> Iterator[Message]:
    """The leaves of `msg`, not descending into attached messages (the original)."""
    if msg.is_multipart():
        for part in msg.get_payload():
            if isinstance(part, Message):
                yield from iter_parts(part)
    else:
        yield msg


def _decode(part: Message) -> str:
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
        except (LookupError, ValueError, KeyError, AssertionError):
            content = None
        if isinstance(content, str):
            return content
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def body_text(msg: Message, *, limit: int = MAX_TEXT) -> str:
    """The decoded text/plain of `msg` outside any attached original, capped at `limit`."""
    chunks: list[str] = []
    size = 0
    for part in iter_parts(msg):
        if part.get_content_type() != "text/plain":
            continue
        text = _decode(part)
        chunks.append(text)
        size += len(text)
        if size >= limit:
            break
    return "\n".join(chunks)[:limit]


def embedded_headers(msg: Message) -> Message | None:
    """The headers of the original message a report carries (a `message/rfc822`
    or `text/rfc822-headers` part), or None."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message):
                return inner
        if ctype in ("text/rfc822-headers", "message/global-headers"):
            return HeaderParser(policy=default_policy).parsestr(_decode(part).lstrip())
    return None


def clean_address(text: str) -> str:
    """`rfc822; <User@Example.COM>` → `User@example.com` (the domain folded to lower case)."""
    value = text.split(";", 1)[1] if ";" in text[:20] else text
    value = value.strip().strip("<>").strip()
    m = ADDRESS.search(value)
    if m:
        value = m[1]
    local, at, domain = value.rpartition("@")
    # Exchange quotes addresses ('user@example.com' on DATE): not part of the local part
    return f"{local.lstrip(chr(39))}@{domain.lower()}" if at else value


def failed_recipient(address: str, diagnostic: str, *, permanent: bool | None,
                     status: str | None = None, remote_mta: str = "",
                     original_recipient: str = "") -> BounceRecipient:
    """A BounceRecipient whose kind, status and reason come from what the report says.

    `permanent` is what the format says about permanence (None: it does not
    say, and a status class found in the text decides; failing that, unknown).
    """
    if permanent is None:
        # The format does not say: only a code in the report decides the class.
        status = status or find_status(diagnostic)
        kind = Kind.UNKNOWN
        if status is not None and status[0] in "45":
            kind = Kind.HARD if status[0] == "5" else Kind.SOFT
            status, reason = status_from(status, diagnostic, status[0])
        else:
            status, reason = None, infer(diagnostic)[0]
    else:
        klass = "5" if permanent else "4"
        status, reason = status_from(status, diagnostic, klass)
        kind = Kind.HARD if permanent else Kind.SOFT
        if status is not None and status[0] in "45" and status[0] != klass:
            # the report's own code outranks the format's default
            kind = Kind.HARD if status[0] == "5" else Kind.SOFT
    return BounceRecipient(clean_address(address), kind, status, reason,
                           diagnostic=diagnostic.strip()[:1000], remote_mta=remote_mta,
                           original_recipient=original_recipient)


_ANGLE_LINE = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:?[ \t]*(.*)$")


def angle_paragraphs(text: str, stop: str | None = None) -> list[tuple[str, str]]:
    """(address, paragraph) for each `<user@example.com>:` paragraph in `text`.

    The layout of qmail's QSBMF, Yahoo's failure notices and Postfix's human
    part: an address in angle brackets at the start of a line, then its
    explanation on the same and the following lines, up to a blank line.
    Reading stops at `stop` (the line that introduces the original message).
    """
    if stop:
        at = text.find(stop)
        text = text if at < 0 else text[:at]
    out: list[tuple[str, list[str]]] = []
    open_paragraph = False
    for line in text.splitlines():
        m = _ANGLE_LINE.match(line)
        if m:
            out.append((m[1], [m[2]]))
            open_paragraph = True
        elif open_paragraph and line.strip():
            out[-1][1].append(line.strip())
        else:
            open_paragraph = False
    return [(address, " ".join(lines).strip()) for address, lines in out]
