"""The tracking rewrite, as a pure function: what changes in HTML parts, what never
changes anywhere else, and the tokens it writes."""

from __future__ import annotations

import base64
import quopri
import re

from gateway.tracking.rewrite import TrackingPlan, rewrite
from gateway.tracking.token import Hit, HitKind, TokenKeys, open_token

KEYS = TokenKeys(b"s" * 32)
PLAN = TrackingPlan("https://t.example", KEYS, "QID1", "fan@example.net", "marketing")
TOKEN = re.compile(rb"https://t\.example/([oc])/([A-Za-z0-9_-]+)")


def hits(data: bytes) -> list[Hit | None]:
    return [open_token(KEYS, m.group(2).decode()) for m in TOKEN.finditer(data)]


def test_single_part_html_gets_pixel_before_body_end_and_wrapped_links() -> None:
    msg = (b"From: a@example.com\r\nContent-Type: text/html\r\n\r\n"
           b'<html><body><a href="https://shop.example/x?a=1&amp;b=2">x</a>'
           b"<A HREF='http://shop.example/y'>y</A></body></html>\r\n")
    out = rewrite(msg, PLAN)
    assert out.startswith(b"From: a@example.com\r\nContent-Type: text/html\r\n\r\n<html><body>")
    assert out.endswith(b'height:1px">\r\n</body></html>\r\n')
    assert hits(out) == [
        Hit(HitKind.CLICK, "QID1", "fan@example.net", "marketing", "https://shop.example/x?a=1&b=2"),
        Hit(HitKind.CLICK, "QID1", "fan@example.net", "marketing", "http://shop.example/y"),
        Hit(HitKind.OPEN, "QID1", "fan@example.net", "marketing", ""),
    ]
    assert b"fan@example.net" not in out and b"shop.example" not in out


def test_plain_text_and_non_http_links_are_left_alone() -> None:
    text = b"From: a@example.com\r\nSubject: hi\r\n\r\nhttps://shop.example/x\r\n"
    assert rewrite(text, PLAN) == text
    html = (b"Content-Type: text/html\r\n\r\n<a href=\"mailto:x@example.com\">m</a>"
            b'<a href="#top">t</a>')
    out = rewrite(html, PLAN)
    assert b'href="mailto:x@example.com"' in out and b'href="#top"' in out
    assert [h.kind if h else None for h in hits(out)] == [HitKind.OPEN]


def test_the_list_unsubscribe_link_and_unsubscribe_paths_are_never_wrapped() -> None:
    msg = (b"List-Unsubscribe: <mailto:u@example.com>, <https://u.example/a?t=1>\r\n"
           b"Content-Type: text/html\r\n\r\n<a href=\"https://u.example/a?t=1\">u</a>"
           b'<a href="https://shop.example/Unsubscribe/42">u2</a>')
    out = rewrite(msg, PLAN)
    assert b'href="https://u.example/a?t=1"' in out
    assert b'href="https://shop.example/Unsubscribe/42"' in out


def test_multipart_keeps_every_other_byte_and_rewrites_quoted_printable() -> None:
    html = b'<html><body><a href="https://shop.example/long-' + b"x" * 80 + b'">x</a></body></html>'
    qp = quopri.encodestring(html).replace(b"\n", b"\r\n")
    b64 = base64.encodebytes(b"\x00\x01binary").replace(b"\n", b"\r\n")
    msg = (b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\npreamble\r\n'
           b"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
           b"--inner\r\nContent-Type: text/plain\r\n\r\nplain https://shop.example/\r\n"
           b"--inner\r\nContent-Type: text/html; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp + b"\r\n--inner--\r\n"
           b"--outer\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--outer--\r\nepilogue\r\n")
    out = rewrite(msg, PLAN)
    head, _, rest = out.partition(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    assert msg.startswith(head)
    assert out.endswith(b"\r\n--inner--\r\n--outer\r\nContent-Type: application/octet-stream"
                        b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64
                        + b"--outer--\r\nepilogue\r\n")
    html_out = quopri.decodestring(rest.split(b"\r\n--inner--")[0].replace(b"\r\n", b"\n"))
    assert b"shop.example" not in html_out
    assert all(len(line) <= 78 for line in rest.split(b"\r\n"))  # QP lines stay short
    found = hits(html_out.replace(b"\n", b"\r\n"))
    assert [h.url for h in found if h] == ["https://shop.example/long-" + "x" * 80, ""]


def test_a_seven_bit_part_whose_lines_would_be_too_long_becomes_quoted_printable() -> None:
    url = "https://shop.example/" + "p" * 900
    msg = (b"Content-Type: text/html\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
           + f'<a href="{url}">x</a>\r\n'.encode())
    out = rewrite(msg, PLAN)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in out
    assert b"7bit" not in out
    assert all(len(line) <= 998 for line in out.split(b"\r\n"))
    body = quopri.decodestring(out.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))
    assert [h.url for h in hits(body) if h] == [url, ""]


def test_base64_html_is_decoded_rewritten_and_encoded_again() -> None:
    html = b'<p><a href="https://shop.example/z">z</a></p>'
    msg = (b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(html).replace(b"\n", b"\r\n"))
    out = rewrite(msg, PLAN)
    decoded = base64.b64decode(out.split(b"\r\n\r\n", 1)[1])
    assert [h.url for h in hits(decoded) if h] == ["https://shop.example/z", ""]


def test_a_message_without_html_is_returned_unchanged() -> None:
    msg = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
           b"\r\n\r\nhi\r\n--b--\r\n")
    assert rewrite(msg, PLAN) == msg
