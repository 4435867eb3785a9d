"""The MIME builder against the stdlib parser: each shape parses back to its parts; 7bit
transfer encodings and short lines whatever the content; RFC 2047/2231 for non-ASCII
names unless an address is non-ASCII (then RFC 6532 UTF-8); no header injection."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest

from gateway.api.mime import Attachment, BuildError, Mailbox, MessageSpec, build_message

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
FROM = Mailbox("booking@example.com", "Hôtel Zürich")
TO = (Mailbox("guest@example.net", "Jürgen Müller"),)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_string(raw.decode("utf-8"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(part: EmailMessage) -> object:
    content = part.get_content()
    return content.replace("\r\n", "\n") if isinstance(content, str) else content


def assert_wire_safe(raw: bytes) -> None:
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")


def test_text_only_is_a_single_part() -> None:
    raw = build_message(MessageSpec(Mailbox("a@example.com"), (Mailbox("b@example.net"),),
                                    subject="Hi", text="hello\n"))
    assert_wire_safe(raw)
    msg = parse(raw)
    assert msg.get_content_type() == "text/plain" and body(msg) == "hello\n"
    assert msg["Content-Transfer-Encoding"] == "7bit" and msg["Date"] is None


def test_every_part_in_its_place() -> None:
    spec = MessageSpec(
        FROM, TO, cc=(Mailbox("c@example.net"),),
        reply_to=(Mailbox("desk@example.com", "Réception"),),
        subject="Réservation n° 42 confirmée ✓ " + "long " * 30,
        text="Bonjour Jürgen\n" + "x" * 2000 + "\n",
        html='<p>Bonjour <b>Jürgen</b><img src="cid:logo"></p>' + "y" * 3000,
        attachments=(Attachment("logo.png", "image/png", PNG, "logo"),
                     Attachment("Reçu n°42.pdf", "application/pdf", PDF)),
        headers=(("X-Booking-Id", "42"), ("X-Note", "café")))
    raw = build_message(spec)
    assert raw.isascii()  # RFC 2047 words and 2231 parameters, no raw 8-bit
    assert_wire_safe(raw)
    msg = parse(raw)
    assert msg["From"].addresses[0].display_name == "Hôtel Zürich"
    assert str(msg["Subject"]) == spec.subject
    assert (msg["X-Note"], msg["Cc"]) == ("café", "c@example.net")
    alternative, pdf = msg.iter_parts()
    text, related = alternative.iter_parts()
    html, img = related.iter_parts()
    assert [p.get_content_type() for p in (msg, alternative, text, related, html, img, pdf)] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
        "text/html", "image/png", "application/pdf"]
    assert body(text) == spec.text and body(html) == spec.html
    assert img["Content-ID"] == "<logo>" and img.get_content_disposition() == "inline"
    assert body(img) == PNG
    assert pdf.get_filename() == "Reçu n°42.pdf" and body(pdf) == PDF
    assert "MIME-Version" not in pdf and msg["MIME-Version"] == "1.0"


def test_html_only_with_an_inline_image_is_related() -> None:
    raw = build_message(MessageSpec(FROM, TO, html='<img src="cid:x">', attachments=(
        Attachment("x.gif", "image/gif", b"GIF89a", "x"),)))
    assert parse(raw).get_content_type() == "multipart/related"


def test_a_non_ascii_address_makes_a_utf8_header() -> None:
    spec = MessageSpec(FROM, (Mailbox("jürgen@bücher.example", "Jürgen"),), subject="Grüße",
                       text="ä\n")
    assert spec.utf8
    raw = build_message(spec)
    assert "To: Jürgen <jürgen@bücher.example>".encode() in raw
    msg = parse(raw)
    assert msg["To"].addresses[0].addr_spec == "jürgen@bücher.example"
    assert body(msg) == "ä\n" and msg["Content-Transfer-Encoding"] != "8bit"


def test_a_quoted_local_part_stays_quoted() -> None:
    raw = build_message(MessageSpec(Mailbox('"john doe"@example.com'), TO, text="x"))
    assert parse(raw)["From"].addresses[0].addr_spec == '"john doe"@example.com'


@pytest.mark.parametrize("spec", [
    MessageSpec(FROM, TO, subject="a\r\nBcc: x@example.org", text="x"),
    MessageSpec(FROM, (Mailbox("b@example.net", "x\nBcc: e@example.org"),), text="x"),
    MessageSpec(FROM, TO, text="x", headers=(("X-A", "1\r\nBcc: e@example.org"),)),
    MessageSpec(FROM, TO, text="x", attachments=(Attachment("a", "text/plain\r\nX: y", b""),)),
], ids=["subject", "display name", "extra header", "content type"])
def test_no_header_injection(spec: MessageSpec) -> None:
    with pytest.raises(BuildError):
        build_message(spec)
