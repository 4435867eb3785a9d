"""The message header section as cleanup sees it: found in one pass over the
bytes, repaired only where it must be (Postfix: cleanup_message.c's header
handling).

`scan()` is the common path: a few regular expressions over the header
section (C speed, no copy) tell whether anything needs repair. Only then does
`parse()` split the section into fields, which the repairs edit and
`HeaderSection.to_bytes()` writes back; untouched fields keep their bytes.

What counts as broken, and what becomes of it:

- `Name :` (RFC 5322 4.5.3 obs-optional: white space before the colon) →
  `Name:`; a folded line of white space only (4.2 obs-FWS) is dropped.
- A line in the header section that is neither a field nor a continuation
  ends the header there, and the empty line the app forgot is put before it
  (Postfix does the same): everything from it on is the body.
- A line over 998 octets is folded at white space (5322 2.2.3: folding never
  changes the field's unfolded value); where a run of more than 998 octets has
  no white space, an unstructured field (Subject, Comments, X-*) is written as
  RFC 2047 encoded-words, which decode to the same text, and any other field
  is refused, naming it.
- Single-occurrence fields (5322 3.6, plus the MIME fields of RFC 2045)
  appearing twice with the same value (a template that added Date twice) keep
  the first; with different values the message is refused, naming the field:
  which From or Subject the app meant is not ours to guess, and a receiver
  shown one From while DMARC checks the other is exactly what DMARC forbids.

Security: reads untrusted message content. Field values are never evaluated;
names and values written into replies are bounded and made printable.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from email.base64mime import header_encode

from gateway.cleanup.lines import MAX_LINE_LENGTH

__all__ = [
    "SINGLE_FIELDS",
    "Field",
    "HeaderScan",
    "HeaderSection",
    "UnfoldableField",
    "fold_field",
    "parse",
    "scan",
    "signed_names",
]

# RFC 5322 3.6 (max 1) and RFC 2045 (the MIME fields a parser reads once).
SINGLE_FIELDS = frozenset({
    b"date", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"message-id",
    b"in-reply-to", b"references", b"subject", b"mime-version", b"content-type",
    b"content-transfer-encoding",
})
# Fields whose value is free text (RFC 5322 3.6.5; optional fields are
# `unstructured` too, 3.6.8, but only X-* are taken as such: List-*, Auto-Submitted
# and the like have a syntax of their own).
_UNSTRUCTURED = frozenset({b"subject", b"comments", b"thread-topic"})

_WELL_FORMED = re.compile(rb"(?:[!-9;-~]+:[^\r\n]*\r\n(?:[ \t]+[^\r\n \t][^\r\n]*\r\n)*)*")
_NAMES = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
_MESSAGE_ID = re.compile(rb"^message-id:((?:[^\r\n]*\r\n[ \t])*[^\r\n]*)",
                         re.IGNORECASE | re.MULTILINE)
_WSP = b" \t"
_FOLD_AT = 78  # RFC 5322 2.1.1's SHOULD; 998 is the MUST
# A place to fold: white space after text, with more text after it.
_BREAK = re.compile(rb"(?<![ \t])[ \t](?=[ \t]*[^ \t])")
_WORD_OCTETS = 45  # 45 octets of UTF-8 → 60 of base64 → a 72-character encoded-word


@dataclass(frozen=True)
class HeaderScan:
    """What the common path learns about a message, without copying it."""

    end: int  # offset of the body: after the empty line, or where a broken header ends
    well_formed: bool  # fields and continuation lines only, then the empty line
    names: tuple[bytes, ...]  # field names, lower-case, in order (well-formed only)

    def has(self, name: bytes) -> bool:
        return name in self.names

    def duplicates(self) -> list[bytes]:
        counts = Counter(n for n in self.names if n in SINGLE_FIELDS)
        return [n for n, c in counts.items() if c > 1]


def scan(content: bytes) -> HeaderScan:
    """The header section's extent and field names, if it needs no parsing."""
    sep = content.find(b"\r\n\r\n")
    if content.startswith(b"\r\n"):
        return HeaderScan(2, True, ())  # an empty header section: only a body
    if sep < 0:
        return HeaderScan(len(content), False, ())
    end = sep + 2
    if _WELL_FORMED.fullmatch(content, 0, end) is None:
        return HeaderScan(end + 2, False, ())
    names = tuple(n.lower() for n in _NAMES.findall(content, 0, end))
    return HeaderScan(end + 2, True, names)


def message_id(content: bytes, end: int) -> str | None:
    """The first Message-ID field's value, unfolded; None if empty or absent."""
    match = _MESSAGE_ID.search(content, 0, end)
    if match is None:
        return None
    value = re.sub(rb"\r\n(?=[ \t])", b"", match.group(1)).decode("utf-8", "replace")
    return value.strip() or None


@dataclass
class Field:
    """One header field as physical lines, without their CRLFs."""

    name: bytes  # as written (case kept)
    lines: list[bytes]

    @property
    def key(self) -> bytes:
        return self.name.lower()

    @property
    def value(self) -> bytes:
        """The unfolded value (RFC 5322 2.2.3), after the colon."""
        first = self.lines[0].partition(b":")[2]
        return b"".join([first, *self.lines[1:]])

    def to_bytes(self) -> bytes:
        return b"".join(line + b"\r\n" for line in self.lines)


@dataclass
class HeaderSection:
    fields: list[Field]
    body: bytes  # everything after the header section (after the empty line)
    raw: bytes  # the section as it came, up to and including the empty line
    repairs: list[str] = field(default_factory=list)  # what was changed, in order

    def repaired(self, repair: str) -> None:
        self.repairs.append(repair)

    def to_bytes(self) -> bytes:
        if not self.repairs:
            return self.raw  # as it came, byte for byte
        return b"".join(f.to_bytes() for f in self.fields) + b"\r\n"

    def get(self, key: bytes) -> list[Field]:
        return [f for f in self.fields if f.key == key]

    def remove(self, key: bytes) -> None:
        self.fields = [f for f in self.fields if f.key != key]


def parse(content: bytes, *, repair: bool = True) -> HeaderSection:
    """Split the header section into fields, repairing obsolete syntax and a
    missing empty line on the way (see the module docstring); with `repair`
    false the fields keep their bytes (a signed message's)."""
    fields: list[Field] = []
    repairs: list[str] = []
    pos = 0
    while pos < len(content):
        end = content.find(b"\r\n", pos)
        end = len(content) if end < 0 else end
        line = content[pos:end]
        if not line:
            pos = end + 2
            return HeaderSection(fields, content[pos:], content[:pos], repairs)
        if line[:1] in (b" ", b"\t") and fields:
            if line.strip(_WSP) or not repair:
                fields[-1].lines.append(line)
            else:
                repairs.append("obsolete_syntax")  # obs-FWS: a line of white space only
            pos = end + 2
            continue
        match = _FIELD.match(line)
        if match is None:
            break  # not a field: the body starts here, without its empty line
        name = match.group(1)
        if match.end() != len(name) + 1 and repair:
            line = name + b":" + line[match.end():]
            repairs.append("obsolete_syntax")
        fields.append(Field(name, [line]))
        pos = end + 2
    if fields and repair:
        repairs.append("header_ended")
    body = content[pos:] if pos < len(content) else b""
    return HeaderSection(fields, body, content[:pos], repairs)


class UnfoldableField(Exception):
    """A structured field with a line over 998 octets that has no white space to fold at."""

    def __init__(self, name: bytes) -> None:
        super().__init__(name)
        self.name = printable_name(name)


def printable_name(name: bytes) -> str:
    return name[:60].decode("ascii", "replace")


def is_unstructured(key: bytes) -> bool:
    return key in _UNSTRUCTURED or key.startswith(b"x-")


def fold_field(item: Field) -> str:
    """Make every line of `item` at most 998 octets; returns the repair made.

    Raises UnfoldableField when that needs RFC 2047 and the field is structured.
    """
    folded = _fold(item.lines[0] + b"".join(b"\r\n" + line for line in item.lines[1:]))
    if max(map(len, folded)) <= MAX_LINE_LENGTH:
        item.lines = folded
        return "long_header_folded"
    if not is_unstructured(item.key):
        raise UnfoldableField(item.name)
    item.lines = encode_words(item.name, item.value)
    return "long_header_encoded"


def _fold(text: bytes) -> list[bytes]:
    """Break the lines of `text` that are over 998 octets before white space,
    into lines of 78 octets where the text allows; lines within the limit stay
    as they are."""
    out: list[bytes] = []
    for line in text.split(b"\r\n"):
        if len(line) > MAX_LINE_LENGTH:
            out.extend(_fold_line(line))
        else:
            out.append(line)
    return out


def _fold_line(line: bytes) -> list[bytes]:
    """One pass over `line` (offsets, no copies of the rest: a field may be megabytes)."""
    pieces = []
    start = 0
    while len(line) - start > _FOLD_AT:
        cut = _fold_point(line, start)
        if cut is None:
            break
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces


def _fold_point(line: bytes, start: int) -> int | None:
    """Where the piece from `start` ends: the last break within 78 octets, else the
    first one after (the piece stays over 998 when that is far: the caller then
    falls back to RFC 2047); None if there is no break at all."""
    last = None
    match = _BREAK.search(line, start + 1)
    while match is not None and match.start() <= start + _FOLD_AT:
        last = match.start()
        match = _BREAK.search(line, last + 1)
    if last is not None:
        return last
    return match.start() if match is not None else None


def encode_words(name: bytes, value: bytes) -> list[bytes]:
    """`name: value` as RFC 2047 encoded-words (UTF-8, "B"), one per line.

    Each word holds whole characters (a decoder may decode words one by one),
    at most 45 octets of text: 75 characters a word (RFC 2047 2). Linear in the
    value's length, which may be large.
    """
    try:
        text = value.strip(b" \t").decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8: each octet stays a (Latin-1) character, so that nothing is lost.
        text = value.strip(b" \t").decode("latin-1")
    data = text.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_OCTETS, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character
            end -= 1
        words.append(header_encode(data[start:end], "utf-8").encode("ascii"))
        start = end
    lines = [b" " + word for word in words] or [b""]
    lines[0] = name + b":" + lines[0]
    return lines


def signed_names(fields: list[Field]) -> set[bytes]:
    """Every field name in the h= tag of any DKIM-Signature (lower-case)."""
    names: set[bytes] = set()
    for item in fields:
        if item.key != b"dkim-signature":
            continue
        for tag in item.value.split(b";"):
            tag_name, _, tag_value = tag.partition(b"=")
            if tag_name.strip(b" \t\r\n") == b"h":
                names.update(n.strip(b" \t\r\n").lower() for n in tag_value.split(b":"))
    return names


def relaxed_headers_only(fields: list[Field]) -> bool:
    """True if every DKIM-Signature canonicalizes its header relaxed (c=relaxed/...),
    under which white space before a colon does not count (RFC 6376 3.4.2)."""
    for item in fields:
        if item.key != b"dkim-signature":
            continue
        tags = {t.partition(b"=")[0].strip(b" \t\r\n"): t.partition(b"=")[2].strip(b" \t\r\n")
                for t in item.value.split(b";")}
        if not tags.get(b"c", b"simple").lower().startswith(b"relaxed"):
            return False
    return True
