"""gateway.cleanup.mime: re-encoded parts decode to exactly what the app wrote."""

from __future__ import annotations

import base64
import email
import email.policy
import random

import pytest

from gateway.cleanup import reencode, seven_bit

HEAD = b"From: a@example.com\r\nMIME-Version: 1.0\r\n"


def leaves(message: bytes) -> list[email.message.Message]:
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    return [p for p in parsed.walk() if not p.is_multipart()]


def random_text(rng: random.Random, size: int) -> bytes:
    """Text an app might write: words, long runs, 8-bit, trailing blanks, dots, '='."""
    pieces = [b"word", b" ", b"\t", b"=", b".", b"\xc3\xbc", b"\xe9", b"\r\n", b"=\r\n",
              b"x" * 1200, b"  \r\n", b"\r\n.\r\n", b"From "]
    return b"".join(rng.choice(pieces) for _ in range(size))


@pytest.mark.parametrize("seed", range(40))
def test_any_text_part_round_trips_exactly(seed: int) -> None:
    rng = random.Random(seed)
    text = random_text(rng, rng.randrange(1, 400))
    header = HEAD + b"Content-Type: text/plain; charset=utf-8\r\n" \
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    result = reencode(header, text)
    if text.isascii() and max(map(len, text.split(b"\r\n"))) <= 998:
        assert result is None  # nothing to do
        return
    assert result is not None and result.root_encoding == "quoted-printable"
    assert result.body.isascii() and max(map(len, result.body.split(b"\r\n"))) <= 76
    message = header.replace(b"8bit", b"quoted-printable") + result.body
    assert leaves(message)[0].get_payload(decode=True) == text


def test_multipart_parts_each_get_their_encoding_and_the_rest_stays() -> None:
    pdf = bytes(range(256)) * 10
    body = (b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nshort\r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<p>" + b"y" * 2000 + b"</p>\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: "
            b"base64\r\n\r\n" + base64.b64encode(pdf) + b"\r\n"
            b"--b\r\nContent-Type: application/x-raw\r\nContent-Transfer-Encoding: 8bit\r\n"
            b"\r\n\xff\xfe raw\r\n--b--\r\nepilogue\r\n")
    header = HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    result = reencode(header, body)
    assert result is not None and result.root_encoding is None and result.parts == 3
    assert result.body.startswith(b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
                                  b"short\r\n--b\r\n")
    assert result.body.endswith(b"--b--\r\nepilogue\r\n")
    parts = leaves(header + result.body)
    assert [str(p.get("content-transfer-encoding", "")) for p in parts] == [
        "", "quoted-printable", "base64", "base64"]
    assert [p.get_payload(decode=True) for p in parts] == [
        b"short", b"<p>" + b"y" * 2000 + b"</p>", pdf, b"\xff\xfe raw"]


def test_an_unknown_encoding_is_left_alone() -> None:
    header = HEAD + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
    assert reencode(header, b"x" * 1200 + b"\r\n") is None


def test_seven_bit_keeps_the_header_fields_and_fixes_the_encoding() -> None:
    message = (b"DKIM-Signature: v=1; h=from; b=x\r\nFrom : a@example.com\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n")
    converted = seven_bit(message)
    assert converted is not None and converted.isascii()
    assert converted.startswith(b"DKIM-Signature: v=1; h=from; b=x\r\nFrom : a@example.com\r\n")
    assert b"\r\nContent-Transfer-Encoding: quoted-printable\r\n" in converted
    assert leaves(converted)[0].get_payload(decode=True) == "Grüße\r\n".encode()
    assert seven_bit(b"Subject: x\r\n\r\nascii\r\n") is None


def test_a_long_part_header_is_folded() -> None:
    name = " ".join(f"part{i}" for i in range(200))
    body = (b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
            b'filename="' + name.encode() + b'.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
            b"\r\nAAAA\r\n--b--\r\n")
    header = HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    result = reencode(header, body)
    assert result is not None and max(map(len, result.body.split(b"\r\n"))) <= 998
    (part,) = leaves(header + result.body)
    assert part.get_filename() is not None
    assert " ".join(part.get_filename().split()) == name + ".pdf"
    assert part.get_payload(decode=True) == b"\x00\x00\x00"
