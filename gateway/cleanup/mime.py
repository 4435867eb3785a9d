"""MIME parts re-encoded so that every line fits and every octet is 7-bit
(Postfix: the 8-bit → 7-bit downgrade of smtp(8)'s `smtp_mime_downgrade`,
done here before signing, and the long-line repair cleanup(8) does by
breaking lines, which we never do: it changes the text).

The stdlib `email` package parses the structure; only the leaf parts that
need it are touched:

- identity encodings (7bit, 8bit, binary) with 8-bit octets or a line over
  998 octets → quoted-printable for text/*, base64 for anything else;
- base64 or quoted-printable with a line over 998 octets (an app that did not
  wrap its base64) → the same encoding again, wrapped at 76.

Either way the part decodes to exactly the octets the app wrote (RFC 2045
6.7, 6.8), and its Content-Transfer-Encoding says the new encoding. A part's
own header line over 998 octets (a long file name) is folded like a top-level
one (header.fold_field); one that cannot be folded is left as it is. Other
parts, boundaries, preamble and epilogue are written back as they came.

Security: reads untrusted message content, through the stdlib parser, which
never raises on malformed MIME (it records defects and carries on).
"""

from __future__ import annotations

import base64
import binascii
import email.policy
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser
from io import BytesIO

from gateway.cleanup.header import Field, UnfoldableField, fold_field
from gateway.cleanup.lines import MAX_LINE_LENGTH, has_long_line

__all__ = ["Reencoded", "reencode"]

# compat32 keeps header values as they came and never refolds (max_line_length=0).
_POLICY = email.policy.compat32.clone(linesep="\r\n", max_line_length=0)
_IDENTITY = ("7bit", "8bit", "binary")


@dataclass(frozen=True)
class Reencoded:
    body: bytes  # the new body (after the header section's empty line)
    root_encoding: str | None  # the top-level part's new encoding, if it was re-encoded
    parts: int  # how many parts were re-encoded


def reencode(header: bytes, body: bytes) -> Reencoded | None:
    """The body with its parts re-encoded; None if no part needed it (or none could:
    an encoding we do not know, such as x-uuencode, is left alone)."""
    message = BytesParser(policy=_POLICY).parsebytes(header + body)
    root: str | None = None
    parts = 0
    for part in message.walk():
        if part is not message and _fold_part_fields(part):
            parts += 1
        if part.is_multipart():
            continue
        encoding = _reencode_part(part)
        if encoding is not None:
            parts += 1
            if part is message:
                root = encoding
    if not parts:
        return None
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_POLICY).flatten(message)
    generated = out.getvalue()
    # The generator writes the header section again; ours (repaired) is kept instead.
    start = generated.find(b"\r\n\r\n")
    return Reencoded(generated[start + 4:] if start >= 0 else b"", root, parts)


def _reencode_part(part: Message) -> str | None:
    """Re-encode one leaf part if it needs it; its new encoding, or None."""
    if not isinstance(part.get_payload(), str):
        return None
    encoding = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
    if encoding in _IDENTITY:
        # decode=True gives an identity-encoded payload's octets exactly as they came.
        data = _octets(part.get_payload(decode=True))
        if data.isascii() and not has_long_line(data):
            return None
        encoding = "quoted-printable" if part.get_content_maintype() == "text" else "base64"
        decoded = data
    elif encoding in ("base64", "quoted-printable"):
        encoded_text = str(part.get_payload())
        if encoded_text.isascii() and not has_long_line(encoded_text.encode("ascii")):
            return None
        decoded = _octets(part.get_payload(decode=True))
    else:
        return None  # x-uuencode and the like: left as they are
    part.set_payload(_encode(decoded, encoding).decode("ascii"))
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = encoding
    return encoding


def _fold_part_fields(part: Message) -> bool:
    """Fold the part's header fields that have a line over 998 octets."""
    folded = False
    for name, value in part.items():
        text = f"{name}: {value}".encode("utf-8", "surrogateescape")
        if not has_long_line(text, MAX_LINE_LENGTH):
            continue
        item = Field(name.encode("ascii", "replace"), text.split(b"\r\n"))
        try:
            fold_field(item)
        except UnfoldableField:
            continue
        folded_value = b"\r\n".join(item.lines)[len(name) + 1:].lstrip(b" \t")
        part.replace_header(name, folded_value.decode("utf-8", "surrogateescape"))
        folded = True
    return folded


def _octets(payload: object) -> bytes:
    return payload if isinstance(payload, bytes) else b""


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    # Line breaks stay hard line breaks (CRLF); everything decodes to `data` exactly.
    encoded = binascii.b2a_qp(data, istext=True)
    if data.endswith(b"\r\n") and not encoded.endswith(b"\r\n"):
        encoded += b"\r\n"
    return encoded
