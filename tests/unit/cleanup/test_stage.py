"""gateway.cleanup.stage: the common path, missing fields, app-signed messages, refusals."""

from __future__ import annotations

from gateway.cleanup import Cleaned, Cleanup, is_refusal
from gateway.model import Client, Envelope, Reply

HEAD = (b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
        b"Subject: Your booking\r\nMessage-ID: <booking-42@example.com>\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n")
CLEANUP = Cleanup("gateway.test")


def envelope(sender: str = "app@example.com", *, smtputf8: bool = False) -> Envelope:
    return Envelope(sender, ("guest@example.net",), Client("relay", "127.0.0.1"),
                    1_700_000_000.0, smtputf8=smtputf8)


def clean(content: bytes, **kwargs: object) -> Cleaned:
    result = CLEANUP.clean(envelope(**kwargs), content)  # type: ignore[arg-type]
    assert isinstance(result, Cleaned), result
    return result


def test_the_common_path_returns_the_content_itself() -> None:
    content = HEAD + b"MIME-Version: 1.0\r\n\r\n" + b"An ordinary line of text.\r\n" * 70
    result = clean(content)
    assert result.content is content and result.repairs == ()
    assert result.message_id == "<booking-42@example.com>"


def test_missing_fields_are_added_from_the_envelope() -> None:
    result = clean(b"Subject: x\r\n\r\nbody\r\n")
    assert result.repairs == ("date_added", "message_id_added", "from_added")
    assert result.content == (
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: "
        + (result.message_id or "").encode() + b"\r\nFrom: app@example.com\r\n"
        b"Subject: x\r\n\r\nbody\r\n")


def test_the_null_sender_gets_mailer_daemon() -> None:
    result = clean(HEAD.replace(b"From: Booking <app@example.com>\r\n", b"") + b"\r\nx\r\n",
                   sender="")
    assert b"\r\nFrom: MAILER-DAEMON@gateway.test\r\n" in b"\r\n" + result.content


def test_an_empty_message_id_is_kept_and_reported_as_none() -> None:
    result = clean(HEAD.replace(b"<booking-42@example.com>", b"") + b"\r\nx\r\n")
    assert result.message_id is None and b"message_id_added" not in str(result.repairs).encode()


def test_utf8_fields_stay_with_smtputf8_and_are_encoded_without() -> None:
    content = HEAD.replace(b"Your booking", "Grüße".encode()) + b"\r\nx\r\n"
    assert clean(content, smtputf8=True).content == content
    assert b"Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n" in clean(content).content


def test_an_app_signed_message_keeps_its_bytes() -> None:
    signature = (b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=app.example;\r\n"
                 b" s=s; h=from:subject:date; bh=x; b=y\r\n")
    content = (signature + HEAD.replace(b"Subject:", b"Subject :") + b"X-Long: " + b"z" * 1500
               + b"\r\nSubject: Your booking\r\n\r\n" + "Grüße ".encode() * 300 + b"\r\n")
    result = clean(content)
    assert result.content == content and result.repairs == ()


def test_an_app_signed_message_gets_only_fields_its_signature_does_not_name() -> None:
    signature = b"DKIM-Signature: v=1; c=relaxed/relaxed; h=from:date; bh=x; b=y\r\n"
    content = signature + b"From: a@example.com\r\nSubject : x\r\n\r\nbody\r\n"
    result = clean(content)
    assert result.repairs == ("obsolete_syntax", "message_id_added")  # no Date: h= names it
    assert b"Date:" not in result.content and b"\r\nSubject: x\r\n" in result.content
    assert result.content.endswith(b"\r\n\r\nbody\r\n")


def test_refusals_name_the_field() -> None:
    result = CLEANUP.clean(envelope(), HEAD + b"Date: Wed, 15 Nov 2023 10:00:00 +0000\r\n\r\nx")
    assert isinstance(result, Reply) and is_refusal(result)
    assert str(result) == ("554 5.6.0 Message refused: it has 2 Date: fields with different "
                           "values (RFC 5322 3.6 allows one)")
    same = clean(HEAD + b"date:  Tue, 14 Nov 2023\r\n 22:13:20 +0000\r\n\r\nx\r\n")
    assert same.repairs == ("duplicate_removed",) and same.content.count(b"ate:") == 1
