"""Reply parsing and dot-stuffing: the parts of the SMTP client that are pure functions."""

from __future__ import annotations

import pytest

from gateway.delivery.smtp_client import Endpoint, dot_stuff, parse_reply
from gateway.model import Reply, Secret


def test_single_line_with_enhanced_code() -> None:
    assert parse_reply([b"250 2.1.5 Ok\r\n"]) == Reply(250, "2.1.5", "Ok")


def test_enhanced_code_must_match_the_reply_class() -> None:
    assert parse_reply([b"550 2.1.5 odd\r\n"]) == Reply(550, "", "2.1.5 odd")


def test_multi_line_reply_joins_text_and_drops_repeated_enhanced_codes() -> None:
    lines = [b"550-5.7.1 Message rejected\r\n", b"550-5.7.1 see https://x.test\r\n",
             b"550 5.7.1 bye\r\n"]
    assert parse_reply(lines) == Reply(550, "5.7.1", "Message rejected see https://x.test bye")


def test_bare_code_and_missing_text() -> None:
    assert parse_reply([b"354\r\n"]) == Reply(354, "", "")
    assert parse_reply([b"221 \n"]) == Reply(221, "", "")


def test_control_characters_are_removed_and_text_is_bounded() -> None:
    reply = parse_reply([b"451 4.3.0 a\x1b[31mred\x00" + b"x" * 2000 + b"\r\n"])
    assert "\x1b" not in reply.text and "\x00" not in reply.text
    assert len(reply.text) <= 501


def test_non_utf8_text_is_replaced_not_fatal() -> None:
    assert parse_reply([b"250 caf\xe9\r\n"]).text == "caf\ufffd"


@pytest.mark.parametrize("line", [b"hello\r\n", b"25\r\n", b"2500 x\r\n", b"abc def\r\n"])
def test_malformed_reply_raises_value_error(line: bytes) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_reply([line])


@pytest.mark.parametrize(("content", "wire"), [
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b".starts\r\nx\r\n", b"..starts\r\nx\r\n.\r\n"),
    (b"x\r\n.\r\ny\r\n", b"x\r\n..\r\ny\r\n.\r\n"),
    (b"x\r\n..two\r\n", b"x\r\n...two\r\n.\r\n"),
    (b"no final newline", b"no final newline\r\n.\r\n"),
    (b"", b".\r\n"),
    # A bare LF followed by "." is stuffed too: no lenient server sees an early end.
    (b"x\n.\ny\r\n", b"x\n..\ny\r\n.\r\n"),
])
def test_dot_stuffing(content: bytes, wire: bytes) -> None:
    assert dot_stuff(content) == wire


def test_endpoint_repr_never_shows_the_password() -> None:
    endpoint = Endpoint("smtp.x.test", "smtp.x.test", 587, username="u", password=Secret("hunter2"))
    assert "hunter2" not in repr(endpoint) and "hunter2" not in str(endpoint)
