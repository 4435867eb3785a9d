"""Builds the message an API request describes, with the stdlib `email` package
(Postfix has no counterpart: this is what a sendmail(1) caller's MUA would do).

The shape follows what mail clients send, so that filters score it as they
score any ordinary mail:

    multipart/mixed                     only with attachments
      multipart/alternative             only with both text and html
        text/plain
        multipart/related               only with inline images (content_id)
          text/html
          image/png (Content-ID, inline)
      application/pdf (attachment)

Header fields: non-ASCII display names and subjects are RFC 2047 encoded
words, non-ASCII file names RFC 2231 parameters, unless an address itself is
non-ASCII: then the message is an SMTPUTF8 one (RFC 6531/6532) and its header
carries UTF-8 as it is, which is what RFC 6532 says such a message does.
Bodies are 7bit, quoted-printable or base64, never 8bit, and no line is longer
than 78 octets: the message needs no 8BITMIME and passes the 998-octet line
check of intake untouched.

Security: every value comes from an API client. The `email` package refuses
CR and LF in header values (no header injection); content types are checked
against RFC 2045's token syntax before they reach a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage

__all__ = ["Attachment", "BuildError", "Mailbox", "MessageSpec", "build_message"]

# cte_type 7bit: set_content() picks quoted-printable or base64 for non-ASCII text.
_ASCII = email_policy.SMTP.clone(cte_type="7bit")
_UTF8 = email_policy.SMTPUTF8.clone(cte_type="7bit")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 2045 token
_CONTENT_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})")


class BuildError(ValueError):
    """A value the message cannot carry; `field` names the JSON field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class Mailbox:
    address: str
    name: str = ""

    def header_value(self) -> Address:
        local, _, domain = self.address.rpartition("@")
        if local.startswith('"') and local.endswith('"') and len(local) >= 2:
            local = local[1:-1]  # Address quotes it again as needed
        return Address(display_name=self.name, username=local, domain=domain)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "type/subtype"
    content: bytes
    content_id: str | None = None  # set: an inline part for the html (cid:<content_id>)


@dataclass(frozen=True)
class MessageSpec:
    sender: Mailbox
    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    reply_to: tuple[Mailbox, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # Extra fields in the order given (already checked against the gateway's own).
    headers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def utf8(self) -> bool:
        """An address is non-ASCII: an SMTPUTF8 message (the header may carry UTF-8)."""
        return any(not m.address.isascii()
                   for m in (self.sender, *self.to, *self.cc, *self.reply_to))


def build_message(spec: MessageSpec, smtputf8: bool | None = None) -> bytes:
    """The message as CRLF-terminated bytes, without Date, Message-ID and Received
    (intake adds those, as it does for SMTP clients)."""
    utf8 = spec.utf8 if smtputf8 is None else smtputf8
    policy = _UTF8 if utf8 else _ASCII
    msg = EmailMessage(policy=policy)
    _address_fields(msg, spec)
    _set(msg, "subject", "Subject", spec.subject)
    for name, value in spec.headers:
        _set(msg, f"headers.{name}", name, value)
    _body(msg, spec)
    return msg.as_bytes(policy=policy)


def _address_fields(msg: EmailMessage, spec: MessageSpec) -> None:
    for name, key, boxes in (("From", "from", (spec.sender,)), ("To", "to", spec.to),
                             ("Cc", "cc", spec.cc), ("Reply-To", "reply_to", spec.reply_to)):
        if boxes:
            try:
                msg[name] = [box.header_value() for box in boxes]
            except (ValueError, TypeError) as exc:
                raise BuildError(key, f"'{key}' cannot be written as a header field: {exc}"
                                 ) from None


def _set(msg: EmailMessage, key: str, name: str, value: str) -> None:
    try:
        msg[name] = value
    except (ValueError, TypeError) as exc:
        raise BuildError(key, f"'{key}' cannot be written as a header field: {exc}") from None


def _body(msg: EmailMessage, spec: MessageSpec) -> None:
    inline = [a for a in spec.attachments if a.content_id is not None]
    attached = [a for a in spec.attachments if a.content_id is None]
    if spec.text is not None:
        msg.set_content(spec.text)
        if spec.html is not None:
            msg.add_alternative(spec.html, subtype="html")
            _add_inline(_html_part(msg), inline)
    elif spec.html is not None:
        msg.set_content(spec.html, subtype="html")
        _add_inline(msg, inline)
    for item in attached:
        maintype, subtype = _split_type(item.content_type)
        msg.add_attachment(item.content, maintype=maintype, subtype=subtype,
                           filename=item.filename)
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # only the top level has it (RFC 2045 4)


def _html_part(msg: EmailMessage) -> EmailMessage:
    for part in msg.walk():
        if part.get_content_type() == "text/html" and isinstance(part, EmailMessage):
            return part
    raise AssertionError("add_alternative() made no text/html part")


def _add_inline(html: EmailMessage, inline: list[Attachment]) -> None:
    for item in inline:
        maintype, subtype = _split_type(item.content_type)
        html.add_related(item.content, maintype=maintype, subtype=subtype,
                         cid=f"<{item.content_id}>", filename=item.filename,
                         disposition="inline")


def _split_type(content_type: str) -> tuple[str, str]:
    match = _CONTENT_TYPE.fullmatch(content_type)
    if match is None:
        raise BuildError("attachments.content_type",
                         f"'{content_type}' is not a MIME type (type/subtype)")
    return match.group(1).lower(), match.group(2).lower()
