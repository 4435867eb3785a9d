"""A JSON message request → a checked MessageRequest, or a RequestError naming
the field and what is wrong with it (no Postfix counterpart: what sendmail(1)
would get from a MUA comes here as JSON).

Every field is checked before anything is built or stored: an unknown field
is refused (a typo must not silently drop, say, the `bcc`), addresses are
checked with the same syntax check as SMTP's MAIL and RCPT, attachments are
decoded from base64 strictly, and the sizes are bounded.

Security: reads untrusted JSON from API clients. Nothing here is interpreted
beyond its syntax; header names and values, file names and content types are
checked here and again by the `email` package when the message is built.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.api.mime import Attachment, Mailbox, MessageSpec
from gateway.intake.addresses import address_problem

__all__ = ["OWN_FIELDS", "Limits", "MessageRequest", "RequestError", "parse_message"]

FIELDS = frozenset({"from", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
                    "headers", "attachments", "category", "metadata", "idempotency_key"})
_ATTACHMENT_FIELDS = frozenset({"filename", "content_type", "content", "content_id"})
# Fields the gateway writes (from the request's own fields, or at intake): an app
# setting them in `headers` would contradict the envelope or the signature.
OWN_FIELDS = frozenset({
    "from", "to", "cc", "bcc", "reply-to", "subject", "sender", "date", "message-id",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
    "content-id", "received", "return-path", "dkim-signature", "arc-seal",
    "arc-message-signature", "arc-authentication-results", "authentication-results"})
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 3.6.8, short enough to fold
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CONTENT_ID = re.compile(r"[!-;=?-~]{1,200}")  # an RFC 5322 id-left@id-right, no <>
MAX_NAME = 200  # characters of a display name
MAX_HEADER_VALUE = 900
MAX_METADATA = 20  # keys
MAX_METADATA_VALUE = 200
MAX_IDEMPOTENCY_KEY = 200


class RequestError(ValueError):
    """A request the gateway cannot take as it is; `code` is machine-readable."""

    def __init__(self, code: str, field_name: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.field = field_name
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_recipients: int = 1000
    max_message_size: int = 25 * 1024 * 1024  # of the decoded attachments and bodies
    categories: frozenset[str] = frozenset({"transactional", "marketing"})
    owned_headers: frozenset[str] = frozenset()  # the idempotency and category fields


@dataclass(frozen=True)
class MessageRequest:
    spec: MessageSpec
    bcc: tuple[Mailbox, ...] = ()
    category: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    idempotency_key: str | None = None
    recipients: tuple[str, ...] = field(default=())  # to, cc, bcc; each once

    @property
    def sender(self) -> str:
        return self.spec.sender.address

    @property
    def smtputf8(self) -> bool:
        return not self.sender.isascii() or any(not r.isascii() for r in self.recipients)


def parse_message(data: Mapping[str, Any], limits: Limits, header_key: str | None = None
                  ) -> MessageRequest:
    """`header_key`: the Idempotency-Key request header, used when the body has none."""
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise RequestError("unknown_field", unknown[0], f"unknown field '{unknown[0]}' "
                           f"(known: {', '.join(sorted(FIELDS))})")
    sender = _mailboxes(data, "from", required=True, single=True)[0]
    to, cc, bcc = (_mailboxes(data, key) for key in ("to", "cc", "bcc"))
    recipients = tuple(dict.fromkeys(m.address for m in (*to, *cc, *bcc)))
    if not recipients:
        raise RequestError("no_recipients", "to", "give at least one recipient in "
                           "'to', 'cc' or 'bcc'")
    if len(recipients) > limits.max_recipients:
        raise RequestError("too_many_recipients", "to", f"at most {limits.max_recipients} "
                           "recipients per message")
    text, html = _opt_text(data, "text"), _opt_text(data, "html")
    if text is None and html is None:
        raise RequestError("missing_body", "text", "give 'text', 'html' or both")
    attachments = _attachments(data.get("attachments"), html is not None)
    size = sum(len(a.content) for a in attachments) + len(text or "") + len(html or "")
    if size > limits.max_message_size:
        raise RequestError("message_too_large", "attachments", "the message is larger than "
                           f"{limits.max_message_size} octets", status=413)
    spec = MessageSpec(
        sender=sender, to=to, cc=cc, reply_to=_mailboxes(data, "reply_to"),
        subject=_opt_line(data, "subject", 998) or "", text=text, html=html,
        attachments=attachments, headers=_headers(data.get("headers"), limits.owned_headers))
    return MessageRequest(
        spec=spec, bcc=bcc, category=_category(data.get("category"), limits.categories),
        metadata=_metadata(data.get("metadata")),
        idempotency_key=_idempotency_key(data.get("idempotency_key"), header_key),
        recipients=recipients)


# -- addresses ----------------------------------------------------------------------------


def _mailboxes(data: Mapping[str, Any], key: str, *, required: bool = False,
               single: bool = False) -> tuple[Mailbox, ...]:
    raw = data.get(key)
    if raw is None:
        if required:
            raise RequestError("missing_field", key, f"'{key}' is required")
        return ()
    items = raw if isinstance(raw, list) and not single else [raw]
    return tuple(_mailbox(item, key) for item in items)


def _mailbox(item: object, key: str) -> Mailbox:
    raw_address: object = item
    name: object = ""
    if isinstance(item, dict):
        extra = sorted(set(item) - {"address", "name"})
        if extra:
            raise RequestError("unknown_field", f"{key}.{extra[0]}",
                               f"unknown field '{extra[0]}' in '{key}' (address, name)")
        raw_address, name = item.get("address"), item.get("name", "")
    if not isinstance(raw_address, str) or not isinstance(name, str):
        raise RequestError("bad_address", key, f"'{key}' must be an address, or an object "
                           "with an 'address' string and an optional 'name' string")
    address = raw_address
    problem = address_problem(address, smtputf8=True)
    if problem is not None:
        raise RequestError("bad_address", key, f"'{address}' in '{key}': {problem}")
    if len(name) > MAX_NAME or _has_control(name):
        raise RequestError("bad_name", key, f"the name of '{address}' in '{key}' must be at "
                           f"most {MAX_NAME} characters without control characters")
    return Mailbox(address, name)


# -- text fields ---------------------------------------------------------------------------


def _opt_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError("bad_type", key, f"'{key}' must be a string")
    if "\0" in value:
        raise RequestError("bad_text", key, f"'{key}' contains a NUL character")
    return value


def _opt_line(data: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = _opt_text(data, key)
    if value is not None and (len(value) > limit or _has_control(value)):
        raise RequestError("bad_text", key, f"'{key}' must be one line of at most {limit} "
                           "characters")
    return value


def _has_control(text: str) -> bool:
    return any(ch < " " or ch == "\x7f" for ch in text)


def _headers(raw: object, owned: frozenset[str]) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise RequestError("bad_type", "headers", "'headers' must be an object of "
                           "field name → value")
    out = []
    for name, value in raw.items():
        where = f"headers.{name}"
        if not _FIELD_NAME.fullmatch(name):
            raise RequestError("bad_header", where, f"'{name}' is not a header field name")
        lower = name.lower()
        if lower in OWN_FIELDS or lower in owned:
            raise RequestError("reserved_header", where, f"'{name}' is set by the gateway "
                               "(use the request's own fields)")
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE or _has_control(value):
            raise RequestError("bad_header", where, f"the value of '{name}' must be one line "
                               f"of at most {MAX_HEADER_VALUE} characters")
        out.append((name, value))
    return tuple(out)


# -- attachments ---------------------------------------------------------------------------


def _attachments(raw: object, has_html: bool) -> tuple[Attachment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RequestError("bad_type", "attachments", "'attachments' must be a list")
    return tuple(_attachment(item, f"attachments[{i}]", has_html)
                 for i, item in enumerate(raw))


def _attachment(item: object, where: str, has_html: bool) -> Attachment:
    if not isinstance(item, dict):
        raise RequestError("bad_type", where, f"'{where}' must be an object")
    extra = sorted(set(item) - _ATTACHMENT_FIELDS)
    if extra:
        raise RequestError("unknown_field", f"{where}.{extra[0]}",
                           f"unknown field '{extra[0]}' in '{where}'")
    filename, content_type = item.get("filename"), item.get("content_type")
    content, content_id = item.get("content"), item.get("content_id")
    if not isinstance(filename, str) or not filename or len(filename) > 255 \
            or _has_control(filename):
        raise RequestError("bad_attachment", f"{where}.filename", "'filename' must be a "
                           "name of 1 to 255 characters")
    if not isinstance(content_type, str) or not re.fullmatch(
            r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+", content_type):
        raise RequestError("bad_attachment", f"{where}.content_type",
                           "'content_type' must be a MIME type such as application/pdf")
    if content_id is not None and (not isinstance(content_id, str)
                                   or not _CONTENT_ID.fullmatch(content_id)):
        raise RequestError("bad_attachment", f"{where}.content_id", "'content_id' must be "
                           "an id such as logo@booking.example (without <>)")
    if content_id is not None and not has_html:
        raise RequestError("bad_attachment", f"{where}.content_id", "an inline attachment "
                           "(content_id) needs an 'html' body to be shown in")
    return Attachment(filename, content_type, _base64(content, f"{where}.content"), content_id)


def _base64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError("bad_base64", where, f"'{where}' must be a base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("bad_base64", where, f"'{where}' is not valid base64") from None


# -- the rest -------------------------------------------------------------------------------


def _category(raw: object, categories: frozenset[str]) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or raw.strip().lower() not in categories:
        raise RequestError("unknown_category", "category", f"unknown category {raw!r} "
                           f"(known: {', '.join(sorted(categories))})")
    return raw.strip().lower()


def _metadata(raw: object) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or len(raw) > MAX_METADATA:
        raise RequestError("bad_metadata", "metadata", "'metadata' must be an object of at "
                           f"most {MAX_METADATA} keys")
    out = []
    for key, value in raw.items():
        if not _METADATA_KEY.fullmatch(key):
            raise RequestError("bad_metadata", f"metadata.{key}", f"'{key}': metadata keys "
                               "are 1 to 64 letters, digits, '_', '.' or '-'")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RequestError("bad_metadata", f"metadata.{key}", f"'{key}' must be a string "
                               "or a number")
        text = str(value)
        if len(text) > MAX_METADATA_VALUE or _has_control(text):
            raise RequestError("bad_metadata", f"metadata.{key}", f"'{key}' must be one line "
                               f"of at most {MAX_METADATA_VALUE} characters")
        out.append((key, text))
    return tuple(out)


def _idempotency_key(raw: object, header: str | None) -> str | None:
    if raw is not None and header is not None and raw != header:
        raise RequestError("conflicting_idempotency_key", "idempotency_key",
                           "the Idempotency-Key header and 'idempotency_key' differ")
    value = raw if raw is not None else header
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_IDEMPOTENCY_KEY \
            or _has_control(value) or not value.isascii():
        raise RequestError("bad_idempotency_key", "idempotency_key", "the idempotency key "
                           f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return value.strip()
