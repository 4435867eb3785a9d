"""A message's header block, parsed once and shared by the stages that read it —
policies (category), idempotency (the key), signing (DKIM) and cleanup (Postfix's
cleanup(8) reads the header once into its queue file's records for the same reason).

One regex match per field over the bytes; values stay bytes until asked for,
and each field keeps its offsets, so a stage can cut a field out or sign the
exact octets without parsing again.

Security: reads untrusted content — header field names and values only; a
value is decoded leniently and only when a caller asks for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["HeaderSection"]

# One header field with its continuation lines; stops at the first line that is
# neither (the empty line before the body, or a body without a header section).
# RFC 5322 3.6.8: a field name is printable ASCII except ":", then the colon.
_FIELD = re.compile(rb"([!-9;-~]+):([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)(?:\r\n|\Z)")


@dataclass(frozen=True)
class HeaderSection:
    """The header fields of a message: (lower-case name, raw value, start, end).

    `raw value` is what follows the colon, continuation lines included, without the
    final CRLF; `start`/`end` are the field's offsets in the content (end after
    its CRLF)."""

    fields: tuple[tuple[str, bytes, int, int], ...]
    end: int  # offset of the first line that is not a field (the empty line, or body)

    @staticmethod
    def parse(content: bytes, start: int = 0) -> HeaderSection:
        fields: list[tuple[str, bytes, int, int]] = []
        match = _FIELD.match
        pos, size = start, len(content)
        while pos < size:
            m = match(content, pos)
            if m is None:
                break
            end = m.end()
            fields.append((m.group(1).decode("ascii").lower(), m.group(2), pos, end))
            pos = end
        return HeaderSection(tuple(fields), pos)

    def prefixed(self, prefix: bytes) -> HeaderSection:
        """The header of `prefix + content`, where `prefix` is whole header fields (our
        Received:, Date:, …): only the prefix is parsed; the rest is shifted."""
        head = HeaderSection.parse(prefix)
        if head.end != len(prefix):
            raise ValueError("the prefix is not whole header fields")
        shift = len(prefix)
        moved = tuple((n, v, s + shift, e + shift) for n, v, s, e in self.fields)
        return HeaderSection(head.fields + moved, self.end + shift)

    def separated(self, content: bytes) -> bool:
        """The fields end at an empty line (a header, CRLF CRLF, then the body)."""
        return content[self.end:self.end + 2] == b"\r\n" and (
            bool(self.fields) and content[self.end - 2:self.end] == b"\r\n")

    def get(self, name: str) -> str | None:
        """The first `name` field's value: unfolded (RFC 5322 2.2.3), decoded leniently."""
        for field_name, raw, _, _ in self.fields:
            if field_name == name:
                return raw.replace(b"\r\n", b"").decode("utf-8", "replace").strip()
        return None

    def values(self, name: str) -> list[bytes]:
        """Every `name` field's raw value, top to bottom."""
        return [raw for field_name, raw, _, _ in self.fields if field_name == name]

    def has(self, name: str) -> bool:
        return any(f[0] == name for f in self.fields)

    def without(self, content: bytes, name: str) -> bytes:
        """`content` with every `name` field removed."""
        spans = [(s, e) for n, _, s, e in self.fields if n == name]
        if not spans:
            return content
        out, pos = [], 0
        for start, end in spans:
            out.append(content[pos:start])
            pos = end
        out.append(content[pos:])
        return b"".join(out)
