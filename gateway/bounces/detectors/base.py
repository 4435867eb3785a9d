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

from gateway.bounces.report import BounceRecipient
from gateway.bounces.status import find_status
from gateway.bounces.verdicts import verdict

__all__ = [
    "ADDRESS",
    "MAX_TEXT",
    "Detector",
    "angle_paragraphs",
    "body_text",
    "clean_address",
    "embedded_headers",
    "failed_recipient",
    "has_original",
    "header",
    "html_text",
    "is_from_mailer_daemon",
]

MAX_TEXT = 64 * 1024  # bounce text worth reading is at the top; originals can be huge
ADDRESS = re.compile(r"<?([\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+)>?", re.UNICODE)
_DAEMON = re.compile(r"mailer[-_ ]?daemon|postmaster|mail delivery|delivery (?:status|subsystem"
                     r"|system|notification)|mail administrator|mail system|mdaemon"
                     r"|system administrator|internet mail|mail ?server|spam firewall"
                     r"|email (?:security|protection|appliance)|hosted email|\bbounces?@"
                     r"|microsoftexchange|microsoft outlook", re.IGNORECASE)


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
    """The decoded text/plain of `msg` outside any attached original, capped at `limit`.

    Memoised per message: every plain-text detector reads it, and decoding is most of
    their cost."""
    key = (id(msg), limit)
    cached = _TEXT_CACHE.get(key)
    if cached is not None and cached[0] is msg:
        return cached[1]
    text = _body_text(msg, limit)
    if len(_TEXT_CACHE) > 64:
        _TEXT_CACHE.clear()
    _TEXT_CACHE[key] = (msg, text)
    return text


# (id(msg), limit) → (msg, text); holding `msg` keeps its id from being reused meanwhile.
_TEXT_CACHE: dict[tuple[int, int], tuple[Message, str]] = {}


def _body_text(msg: Message, limit: int) -> str:
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


_TAG = re.compile(r"<[^>]{0,2000}>")


def html_text(msg: Message) -> str:
    """The first text/html part with its tags dropped (for bounces without text/plain)."""
    for part in iter_parts(msg):
        if part.get_content_type() == "text/html":
            html = _decode(part)[:MAX_TEXT]
            return _TAG.sub("\n", html).replace("&nbsp;", " ")
    return ""


def has_original(msg: Message) -> bool:
    """True when `msg` carries a returned message or its headers as a MIME part."""
    return any(part.get_content_type() in _ORIGINAL_TYPES for part in msg.walk())


_ORIGINAL_TYPES = frozenset({"message/rfc822", "text/rfc822-headers", "message/global",
                             "message/global-headers"})


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
    """A BounceRecipient whose reason, kind and status come from `verdicts.verdict()`.

    `permanent` is what the format says about permanence: True for a failure
    report, False for a delay warning, None when it does not say (then a
    status class in the report decides; failing that, a bounce is final).
    """
    if permanent is None:
        found = status or find_status(diagnostic)
        permanent = found is None or found[0] != "4"
    v = verdict(status, diagnostic, final=permanent)
    return BounceRecipient(clean_address(address), v.kind, v.status, v.reason.value,
                           diagnostic=" ".join(diagnostic.split())[:1000], remote_mta=remote_mta,
                           original_recipient=original_recipient, action=v.action.value)


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
