"""The cleanup stage: every message leaves standards-clean before it is signed
(Postfix cleanup(8); KumoMTA's `msg:check_fix_conformance`).

`Cleanup.clean()` runs once per stored copy, after the policy stage (which may
add List-Unsubscribe) and before DKIM signing, so the signature covers the
repaired bytes and nothing changes after it. The common path — a message with
CRLF lines under 998 octets, 7-bit, a well-formed header with From, Date and
Message-ID, no duplicate single fields — is one pass of C-speed checks and
returns the content as it is, without a copy.

What is repaired (each repair is counted in
`smtp_gateway_cleanup_repairs_total{repair}` and logged with the queue id):

- header syntax, long header lines and duplicates (gateway.cleanup.header);
- long body lines and 8-bit bodies, re-encoded part by part (gateway.cleanup.mime):
  every message we sign is 7-bit, so no later hop has a reason to convert it
  and break the signature (RFC 6376 5.3 asks signers to do exactly this);
- 8-bit text in an unstructured field of a message sent without SMTPUTF8 →
  RFC 2047 encoded-words (with SMTPUTF8, UTF-8 header fields are the point);
- missing fields: `Date:` (the time of receipt), `Message-ID:`
  (`<random@hostname>`) and, when there is no From:, `From:` with the envelope
  sender (MAILER-DAEMON@hostname for the null sender), as Postfix does.

A message that already carries a DKIM-Signature (signed by the app) keeps its
bytes: no part is re-encoded and no header field is rewritten, whatever its
length, so that signature keeps verifying; only fields that no signature's h=
names may be added (adding a field a signature lists breaks it, RFC 6376 5.4),
and `Name :` is repaired only when every signature canonicalizes its header
relaxed (which ignores that space).

Refused (554 5.6.0, naming the field): a structured field with a run of over
998 octets without white space to fold at, and a single-occurrence field that
appears twice with different values.

Security: reads untrusted message content (see header.py and mime.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from gateway.cleanup.header import (
    SINGLE_FIELDS,
    Field,
    HeaderSection,
    UnfoldableField,
    encode_words,
    fold_field,
    is_unstructured,
    message_id,
    parse,
    printable_name,
    relaxed_headers_only,
    scan,
    signed_names,
)
from gateway.cleanup.lines import MAX_LINE_LENGTH, has_long_line
from gateway.cleanup.mime import reencode
from gateway.model import Envelope, Reply

__all__ = ["Cleaned", "Cleanup", "is_refusal", "seven_bit"]

_REFUSAL_CODE = (554, "5.6.0")


@dataclass(frozen=True)
class Cleaned:
    content: bytes  # the message to sign and store (without our Received: field)
    message_id: str | None  # its Message-ID, unfolded (None: the app's field is empty)
    repairs: tuple[str, ...] = ()  # what was changed, in order; () on the common path


def is_refusal(reply: Reply) -> bool:
    """True for the replies cleanup refuses with (for the metrics' rule label)."""
    return (reply.code, reply.enhanced) == _REFUSAL_CODE


def _refuse(text: str) -> Reply:
    return Reply(*_REFUSAL_CODE, f"Message refused: {text}")


class Cleanup:
    """Repairs app mail before it is signed; holds nothing but the host name."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    def __repr__(self) -> str:
        return f"<Cleanup hostname={self._hostname!r}>"

    def clean(self, envelope: Envelope, content: bytes) -> Cleaned | Reply:
        """The message ready to sign, or the refusal; `content` has CRLF lines only."""
        head = scan(content)
        if (head.well_formed and head.has(b"from") and head.has(b"date")
                and head.has(b"message-id") and content.isascii()
                and not has_long_line(content) and not head.duplicates()):
            return Cleaned(content, message_id(content, head.end))
        return self._repair(envelope, content)

    def _repair(self, envelope: Envelope, content: bytes) -> Cleaned | Reply:
        section = parse(content)
        signed = any(f.key == b"dkim-signature" for f in section.fields)
        if signed and section.repairs and not relaxed_headers_only(section.fields):
            section = parse(content, repair=False)  # `Name :` would break the signature
        try:
            _duplicates(section, signed)
            if not signed:
                _long_fields(section)
                if not envelope.smtputf8:
                    _eight_bit_fields(section)
        except _Refusal as refusal:
            return refusal.reply
        msgid = self._missing_fields(envelope, section, signed)
        body = section.body
        if not signed and (not body.isascii() or has_long_line(body)):
            body = _reencode_body(section)
        return Cleaned(section.to_bytes() + body, msgid, tuple(section.repairs))

    def _missing_fields(self, envelope: Envelope, section: HeaderSection,
                        signed: bool) -> str | None:
        """Add Date, Message-ID and From where missing; the Message-ID."""
        # A field some DKIM-Signature names is signed as absent: adding it breaks that.
        protected = signed_names(section.fields) if signed else set()
        added: list[Field] = []
        if not section.get(b"date") and b"date" not in protected:
            added.append(_new_field("Date", format_datetime(
                datetime.fromtimestamp(envelope.received_at, UTC))))
            section.repaired("date_added")
        ids = section.get(b"message-id")
        msgid: str | None = None
        if ids:
            msgid = ids[0].value.decode("utf-8", "replace").strip() or None
        elif b"message-id" not in protected:
            msgid = f"<{secrets.token_hex(16)}@{self._hostname}>"
            added.append(_new_field("Message-ID", msgid))
            section.repaired("message_id_added")
        if not section.get(b"from") and b"from" not in protected:
            sender = envelope.mail_from or f"MAILER-DAEMON@{self._hostname}"
            added.append(_new_field("From", sender))
            section.repaired("from_added")
        section.fields[:0] = added
        return msgid


class _Refusal(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def _new_field(name: str, value: str) -> Field:
    return Field(name.encode("ascii"), [f"{name}: {value}".encode()])


def _duplicates(section: HeaderSection, signed: bool) -> None:
    for key in sorted(SINGLE_FIELDS):
        fields = section.get(key)
        if len(fields) < 2:
            continue
        if len({b" ".join(f.value.split()) for f in fields}) > 1:
            raise _Refusal(_refuse(
                f"it has {len(fields)} {printable_name(fields[0].name)}: fields with "
                f"different values (RFC 5322 3.6 allows one)"))
        if not signed:  # the same value twice: the first stays
            keep = fields[0]
            section.fields = [f for f in section.fields if f.key != key or f is keep]
            section.repaired("duplicate_removed")


def _long_fields(section: HeaderSection) -> None:
    for item in section.fields:
        if max(map(len, item.lines)) <= MAX_LINE_LENGTH:
            continue
        try:
            section.repaired(fold_field(item))
        except UnfoldableField as exc:
            raise _Refusal(_refuse(
                f"its {exc.name}: field has a line over {MAX_LINE_LENGTH} octets with no "
                f"white space to fold it at (RFC 5322 2.1.1, 2.2.3)")) from None


def _eight_bit_fields(section: HeaderSection) -> None:
    for item in section.fields:
        if is_unstructured(item.key) and not item.value.isascii():
            item.lines = encode_words(item.name, item.value)
            section.repaired("header_encoded")


def _reencode_body(section: HeaderSection) -> bytes:
    result = reencode(section.to_bytes(), section.body)
    if result is None:
        return section.body
    if result.root_encoding is not None:
        # The top-level part was re-encoded: its header fields say so.
        if not section.get(b"content-type"):
            charset = ("us-ascii" if section.body.isascii()
                       else "utf-8" if _is_utf8(section.body) else "unknown-8bit")
            section.fields.append(_new_field("Content-Type", f"text/plain; charset={charset}"))
        if not section.get(b"mime-version"):
            section.fields.append(_new_field("MIME-Version", "1.0"))
        section.remove(b"content-transfer-encoding")
        section.fields.append(_new_field("Content-Transfer-Encoding", result.root_encoding))
    section.repaired("body_reencoded")
    return result.body


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def seven_bit(content: bytes) -> bytes | None:
    """`content` with every part that has 8-bit octets or long lines re-encoded and
    its header fields otherwise kept as they came; None if no part could be.

    For delivery to a server without 8BITMIME (RFC 6152 3): only messages cleanup
    left 8-bit get here — signed by the app, so never re-encoded at intake.
    """
    section = parse(content, repair=False)
    body = _reencode_body(section)
    if not section.repairs:
        return None
    return section.to_bytes() + body
