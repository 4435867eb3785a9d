"""The intake's shortcuts around aiosmtpd give the answers of what they replace."""

from __future__ import annotations

import logging
import random

import aiosmtpd.smtp
import pytest

from gateway.intake import speedups
from gateway.intake.speedups import cache_reflection, parse_path, parse_with_stdlib

# Pieces a MAIL/RCPT argument is made of, awkward ones included: quotes, escapes,
# comments, literals, dots in odd places, UTF-8, parameters, stray brackets.
_PIECES = [
    "<", ">", "@", ".", "..", '"', "\\", " ", "(", ")", "[", "]", ":", ",", "a", "b.c",
    "x-y", "1", "+tag", "é", "SIZE=100", " BODY=8BITMIME", "=", "_", "~", "!", "{", "}",
    "example.com", "local", "127.0.0.1", "IPv6:::1", "\t",
]

_CASES = [
    "<a@b>", "<a@b> SIZE=1", "<a@b>SIZE=1", "<first.last@example.com>",
    "<o'brien+x@mail.example.org> BODY=8BITMIME", "<a.@b>", "<.a@b>", "<a..b@c>",
    "<a@b.>", "<a@.b>", "<a@b..c>", "<@relay:a@b>", '<"a b"@c>', '<"a"@c>', "<a@[1.2.3.4]>",
    "<a(comment)@b>", "< a@b>", "<a@b >", " <a@b>", "<a@b", "a@b>", "a@b", "<>", "<> SIZE=1",
    "<é@example.com>", "<a@é.example>", "<a@b_c.d>", "<a@b>>", "<<a@b>", "<a@@b>",
    "<" + "x" * 64 + "@b>", "<" + "x" * 65 + "@b>",
]


def _random_arguments(count: int) -> list[str]:
    rng = random.Random(15)
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 9))) for _ in range(count)]


@pytest.mark.parametrize("limit", [0, 64])
def test_parse_path_answers_as_the_stdlib_parser(limit: int) -> None:
    arguments = _CASES + _random_arguments(6000)
    # The shortcut must actually be taken for the common form (else this test proves nothing).
    assert parse_path("<a@b> SIZE=1", limit) == ("a@b", "SIZE=1")
    for argument in arguments:
        assert parse_path(argument, limit) == parse_with_stdlib(argument, limit), argument


def test_the_common_form_takes_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    def unexpected(arg: str, limit: int) -> tuple[str | None, str | None]:
        raise AssertionError(f"the stdlib parser was asked about {arg!r}")

    monkeypatch.setattr(speedups, "parse_with_stdlib", unexpected)
    assert parse_path("<first.last+tag@mail.example.com>", 64) == (
        "first.last+tag@mail.example.com", ""
    )
    assert parse_path("<a@b>  SIZE=1 BODY=8BITMIME", 64) == ("a@b", "SIZE=1 BODY=8BITMIME")


def test_truncated_arguments_are_unparsable_not_a_crash() -> None:
    # CPython's parser raises IndexError on these; the session answered 451 (try again).
    for argument in ["<", '"', "<_@", ".@", "\\@"]:
        assert parse_path(argument, 64) == (None, None), argument


def test_local_part_limit_applies_to_the_shortcut() -> None:
    assert parse_path("<" + "x" * 65 + "@b>", 64) == (None, None)
    assert parse_path("<" + "x" * 64 + "@b>", 64) == ("x" * 64 + "@b", "")


def test_cached_dir_lists_a_class_methods_once_per_class() -> None:
    cache_reflection()
    cached_dir = aiosmtpd.smtp.dir  # type: ignore[attr-defined]

    class Handler:
        async def handle_DATA(self) -> None: ...

    first, second = Handler(), Handler()
    assert [n for n in cached_dir(first) if n.startswith("handle_")] == ["handle_DATA"]
    assert cached_dir(first) is cached_dir(second)  # computed once for the class
    assert cached_dir(first) == [n for n in dir(Handler) if n.startswith(("smtp_", "handle_"))]


def test_command_lines_are_sanitized_only_for_a_logger_that_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache_reflection()
    calls: list[object] = []
    logger = logging.getLogger("test.speedups")

    def sanitize(data: object) -> object:
        calls.append(data)
        return data

    original = aiosmtpd.smtp.sanitize
    aiosmtpd.smtp.sanitize = sanitize
    try:
        logger.setLevel(logging.WARNING)
        aiosmtpd.smtp.sanitized_log(logger.debug, "line %r", b"MAIL FROM:<a@b>")
        assert calls == []  # dropped: never sanitized
        with caplog.at_level(logging.DEBUG, logger="test.speedups"):
            aiosmtpd.smtp.sanitized_log(logger.debug, "line %r", b"MAIL FROM:<a@b>")
        assert calls == [b"MAIL FROM:<a@b>"]
        assert "MAIL FROM:<a@b>" in caplog.text
    finally:
        aiosmtpd.smtp.sanitize = original
