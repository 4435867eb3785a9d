"""enhance(): aiosmtpd's own replies get RFC 3463 enhanced status codes."""

from __future__ import annotations

import pytest

from gateway.intake import replies
from gateway.intake.replies import enhance


@pytest.mark.parametrize(
    ("line", "verb", "expected"),
    [
        ("250 OK", "", "250 2.0.0 OK"),
        ("221 Bye", "", "221 2.0.0 Bye"),
        ("220 Ready to start TLS", "", "220 2.0.0 Ready to start TLS"),
        ("500 Error: bad syntax", "", "500 5.5.2 Error: bad syntax"),
        ('500 Error: command "FOO" not recognized', "",
         '500 5.5.2 Error: command "FOO" not recognized'),
        ("501 Syntax: MAIL FROM: <address>", "MAIL", "501 5.5.4 Syntax: MAIL FROM: <address>"),
        ("503 Error: need RCPT command", "", "503 5.5.1 Error: need RCPT command"),
        ("503 Error: send HELO first", "", "503 5.5.1 Error: send HELO first"),
        ("502 EXPN not implemented", "", "502 5.5.1 EXPN not implemented"),
        ("530 Must issue a STARTTLS command first", "",
         "530 5.7.0 Must issue a STARTTLS command first"),
        ("552 Error: Too much mail data", "", str(replies.MESSAGE_TOO_BIG)),
        ("552 Error: message size exceeds fixed maximum message size", "MAIL",
         str(replies.MESSAGE_TOO_BIG)),
        ("500 Line too long (see RFC5321 4.5.3.1.6)", "DATA", str(replies.MESSAGE_TOO_BIG)),
        ("252 Cannot VRFY user, but will accept message and attempt delivery", "",
         "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"),
        ("555 MAIL FROM parameters not recognized or not implemented", "MAIL",
         "555 5.5.4 MAIL FROM parameters not recognized or not implemented"),
        ("553 5.1.3 Error: malformed address", "MAIL",
         "501 5.1.7 Bad sender address syntax: cannot parse the address"),
        ("553 5.1.3 Error: malformed address", "RCPT",
         "553 5.1.3 Bad recipient address syntax: cannot parse the address"),
        ("599 Something new", "", "599 5.0.0 Something new"),
    ],
)
def test_aiosmtpd_replies_get_enhanced_codes(line: str, verb: str, expected: str) -> None:
    assert enhance(line, verb=verb) == expected


@pytest.mark.parametrize(
    "line",
    [
        "220 gateway.test ESMTP",  # greeting
        "354 End data with <CR><LF>.<CR><LF>",
        "334 VXNlcm5hbWU6",
        "250 2.1.5 Recipient OK",  # already has one
        "535 5.7.8 Authentication credentials invalid",
        "421 4.7.0 AUTH sent too many times",
    ],
)
def test_exempt_and_already_enhanced_replies_are_untouched(line: str) -> None:
    assert enhance(line) == line


def test_helo_and_ehlo_answers_are_exempt() -> None:
    assert enhance("250 gateway.test", helo=True) == "250 gateway.test"
    assert enhance("250 ENHANCEDSTATUSCODES", helo=True) == "250 ENHANCEDSTATUSCODES"
    # ... but an error answering EHLO still gets a code
    assert enhance("501 Syntax: EHLO hostname", helo=True) == "501 5.5.4 Syntax: EHLO hostname"


def test_reply_text_about_addresses_is_ascii() -> None:
    reply = replies.bad_recipient("bad character: 'ü'")
    assert str(reply).isascii()
    assert str(reply) == "553 5.1.3 Bad recipient address syntax: bad character: '?'"


def test_queued_reply_text() -> None:
    assert str(replies.queued("01ABC")) == "250 2.0.0 Ok: queued as 01ABC"
