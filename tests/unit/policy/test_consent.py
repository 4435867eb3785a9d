"""The category decision and header handling, without SMTP."""

from __future__ import annotations

import re

from gateway.policy.consent import HeaderSection, classify
from gateway.policy.rules_file import CategoryRule, ConsentSettings

RULES = ConsentSettings(rules=(
    CategoryRule("bulk", "marketing", precedence_bulk=True),
    CategoryRule("campaign", "marketing", header="x-campaign",
                 header_pattern=re.compile("^spring", re.IGNORECASE)),
    CategoryRule("news", "marketing", sender_domains=frozenset({"news.example.com"})),
))


def head(text: str) -> HeaderSection:
    return HeaderSection.parse(text.encode())


def test_header_wins_then_rules_then_default() -> None:
    assert classify(RULES, head("X-Gateway-Category: Marketing\r\n\r\nx"), "a@b.c") == (
        "marketing", "header")
    # An undeclared value is ignored: the rules decide.
    assert classify(RULES, head("X-Gateway-Category: promo\r\n\r\nx"), "a@b.c") == (
        "transactional", "default")
    assert classify(RULES, head("Precedence: bulk\r\n\r\nx"), "a@b.c") == (
        "marketing", "rule:bulk")
    assert classify(RULES, head("X-Campaign: Spring-2026\r\n\r\n"), "a@b.c")[1] == (
        "rule:campaign")
    assert classify(RULES, head("X-Campaign: autumn\r\n\r\n"), "a@b.c")[1] == "default"
    assert classify(RULES, head("Subject: x\r\n\r\n"), "Offers@NEWS.example.com")[1] == (
        "rule:news")


def test_folded_fields_and_removal() -> None:
    content = (b"Subject: one\r\nX-Gateway-Category:\r\n marketing\r\nTo: a@b.c\r\n"
               b"\r\nX-Gateway-Category: body text stays\r\n")
    header = HeaderSection.parse(content)
    assert header.get("x-gateway-category") == "marketing"
    assert header.without(content, "x-gateway-category") == (
        b"Subject: one\r\nTo: a@b.c\r\n\r\nX-Gateway-Category: body text stays\r\n")
    assert header.without(content, "cc") is content


def test_a_message_without_header() -> None:
    header = HeaderSection.parse(b"just a body line\r\n")
    assert header.fields == () and header.end == 0


def test_folded_fields_are_unfolded_and_the_body_is_never_read() -> None:
    content = (b"Subject: spring\r\n sale\r\n\tnow\r\nX-Campaign:Spring-2026\r\n"
               b"\r\nPrecedence: bulk\r\n")
    header = HeaderSection.parse(content)
    assert [name for name, *_ in header.fields] == ["subject", "x-campaign"]
    assert header.get("subject") == "spring sale\tnow"  # CRLF removed, WSP kept (RFC 5322)
    assert header.get("x-campaign") == "Spring-2026"
    assert header.get("precedence") is None  # a body line, after the empty line
    assert content[header.end:].startswith(b"\r\nPrecedence")
    assert header.without(content, "subject") == content[content.index(b"X-Campaign"):]
