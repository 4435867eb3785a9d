"""gateway.cleanup.lines: Postfix's bare-newline normalization and stray-CR replacement."""

from __future__ import annotations

import re

import pytest

from gateway.cleanup import has_long_line, replace_stray_cr_lf

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),  # a bare LF ends a line
        (b"Total:\r42\r\n", b"Total: 42\r\n"),  # a stray CR is a space (Postfix)
        (b"a\rb\r", b"a b "),
        (b"a\n.\nb\r\n", b"a\r\n.\r\nb\r\n"),  # smuggling: an ordinary "." line
        (b"a\r.\rb\r\n", b"a . b\r\n"),  # smuggling: not even a line
        (b"a\r\n.\nb\r\n", b"a\r\n.\r\nb\r\n"),
        (b"a\r\r\nb\n\r\n", b"a\r\nb\r\n\r\n"),  # CR CR LF: the CR before CRLF goes
        (b"Subject: x\r\r\n\r\r\nbody\r\r\n", b"Subject: x\r\n\r\nbody\r\n"),
        (b"", b""),
    ],
)
def test_replace_stray_cr_lf(raw: bytes, normalized: bytes) -> None:
    assert replace_stray_cr_lf(raw) == normalized
    assert not BARE.search(replace_stray_cr_lf(raw))


def test_clean_content_is_returned_without_a_copy() -> None:
    content = b"Subject: x\r\n\r\n" + b"line\r\n" * 100
    assert replace_stray_cr_lf(content) is content


def test_long_lines() -> None:
    assert not has_long_line(b"x" * 998 + b"\r\n" + b"y" * 998 + b"\r\n")
    assert has_long_line(b"ok\r\n" + b"x" * 999 + b"\r\n")
    assert has_long_line(b"x" * 999)
    assert not has_long_line(b"")
