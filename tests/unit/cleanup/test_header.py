"""gateway.cleanup.header: the scan, the parse with its syntax repairs, folding and
RFC 2047 encoding that keep a field's value."""

from __future__ import annotations

import re
from email.header import decode_header, make_header

import pytest

from gateway.cleanup.header import (
    Field,
    UnfoldableField,
    encode_words,
    fold_field,
    parse,
    relaxed_headers_only,
    scan,
    signed_names,
)

HEAD = b"From: a@example.com\r\nSubject: hi\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"


def unfold(lines: list[bytes]) -> bytes:
    return re.sub(rb"\r\n(?=[ \t])", b"", b"\r\n".join(lines))


def test_scan_of_a_well_formed_header() -> None:
    head = scan(HEAD + b"Subject: again\r\n\r\nbody\r\n")
    assert head.well_formed and head.end == len(HEAD) + len(b"Subject: again\r\n\r\n")
    assert head.names == (b"from", b"subject", b"date", b"subject")
    assert head.duplicates() == [b"subject"]


@pytest.mark.parametrize("content", [
    HEAD.replace(b"Subject:", b"Subject :") + b"\r\nbody\r\n",  # obsolete
    HEAD + b"X-A: 1\r\n  \r\n\r\nbody\r\n",  # a fold of white space only
    HEAD + b"not a field\r\n\r\nbody\r\n",  # a line that is no field
    HEAD,  # no empty line, no body
])
def test_scan_sends_anything_odd_to_the_parser(content: bytes) -> None:
    assert not scan(content).well_formed


def test_parse_repairs_obsolete_syntax() -> None:
    section = parse(b"Subject : hi\r\nX-A\t:\t1\r\n folded\r\n \t \r\n\r\nbody\r\n")
    assert section.to_bytes() == b"Subject: hi\r\nX-A:\t1\r\n folded\r\n\r\n"
    assert section.body == b"body\r\n"
    assert section.repairs == ["obsolete_syntax", "obsolete_syntax", "obsolete_syntax"]


def test_parse_without_repair_keeps_the_bytes() -> None:
    content = b"Subject : hi\r\n \t \r\n\r\nbody\r\n"
    section = parse(content, repair=False)
    assert section.repairs == []
    assert section.to_bytes() + section.body == content


def test_a_line_that_is_no_field_starts_the_body() -> None:
    section = parse(b"From: a@example.com\r\nDear guest,\r\nhello\r\n")
    assert section.repairs == ["header_ended"]
    assert section.to_bytes() == b"From: a@example.com\r\n\r\n"
    assert section.body == b"Dear guest,\r\nhello\r\n"


def test_folding_keeps_the_unfolded_value_and_the_limit() -> None:
    value = b" " + b" ".join(b"word%d" % i for i in range(400))
    item = Field(b"Subject", [b"Subject:" + value])
    assert fold_field(item) == "long_header_folded"
    assert max(map(len, item.lines)) <= 78
    assert unfold(item.lines) == b"Subject:" + value


def test_folding_leaves_lines_within_the_limit_alone() -> None:
    short = b"References: <a@example.com>"
    item = Field(b"References", [short, b" " + b" ".join(b"<m%d@x.example>" % i
                                                         for i in range(100))])
    fold_field(item)
    assert item.lines[0] == short and max(map(len, item.lines)) <= 998


def test_an_unstructured_token_is_encoded_and_decodes_the_same() -> None:
    token = "https://example.com/" + "x" * 1500 + "/ü"
    item = Field(b"Subject", [b"Subject: before " + token.encode() + b" after"])
    assert fold_field(item) == "long_header_encoded"
    # One encoded-word a line: 75 characters or less (RFC 2047 2), after the name.
    assert max(map(len, item.lines[1:])) <= 76 and len(item.lines[0]) <= 76 + len("Subject:")
    value = unfold(item.lines).decode().removeprefix("Subject: ")
    assert str(make_header(decode_header(value))) == f"before {token} after"


@pytest.mark.parametrize("name", [b"List-Unsubscribe", b"From", b"Message-ID"])
def test_an_unfoldable_structured_field_is_refused_by_name(name: bytes) -> None:
    item = Field(name, [name + b": <" + b"x" * 1200 + b">"])
    with pytest.raises(UnfoldableField) as raised:
        fold_field(item)
    assert raised.value.name == name.decode()


def test_latin1_octets_survive_encoding() -> None:
    lines = encode_words(b"Subject", b" Caf\xe9")
    value = b"".join(lines).decode().removeprefix("Subject: ")
    assert str(make_header(decode_header(value))) == "Café"


def test_signed_names_and_canonicalization() -> None:
    fields = parse(b"DKIM-Signature: v=1; c=relaxed/simple;\r\n h=From : Subject:date;"
                   b" b=x\r\nDKIM-Signature: v=1; h=to; b=y\r\n\r\n").fields
    assert signed_names(fields) == {b"from", b"subject", b"date", b"to"}
    assert not relaxed_headers_only(fields)  # the second has no c=: simple
    assert relaxed_headers_only(fields[:1])
