"""VERP return paths: round trip, compactness, and forgery/tampering rejected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.bounces import VerpCodec, VerpError, VerpRef, parse_bytes
from gateway.model import Secret
from gateway.spool.queue_id import new_queue_id

KEY = b"0123456789abcdef0123456789abcdef"
DOMAIN = "bounces.example.com"
DATA = Path(__file__).resolve().parents[2] / "data" / "bounces"


@pytest.fixture
def codec() -> VerpCodec:
    return VerpCodec(KEY, DOMAIN)


QID = new_queue_id(1_763_458_200.0)


@pytest.mark.parametrize("index", [0, 1, 31, 32, 999, 32**7 - 1])
def test_round_trip(codec: VerpCodec, index: int) -> None:
    address = codec.encode(QID, index)
    assert codec.decode(address) == VerpRef(QID, index)


def test_shape_is_compact_and_safe_in_a_local_part(codec: VerpCodec) -> None:
    address = codec.encode(QID, 7)
    local, domain = address.split("@")
    assert domain == DOMAIN
    assert re.fullmatch(r"b\+[a-z0-9-]+", local)
    assert len(local) <= 64  # RFC 5321 §4.5.3.1.1
    assert len(local) == 2 + 18 + 1 + 1 + 1 + 16


def test_case_folded_and_bracketed_addresses_still_verify(codec: VerpCodec) -> None:
    address = codec.encode(QID, 3)
    assert codec.decode(f"<{address.upper()}>") == VerpRef(QID, 3)


def test_secret_key_is_accepted() -> None:
    a = VerpCodec(Secret(KEY.decode()), DOMAIN).encode(QID, 1)
    assert VerpCodec(KEY, DOMAIN).decode(a) == VerpRef(QID, 1)


def _swap(ch: str) -> str:
    return "b" if ch != "b" else "c"


@pytest.mark.parametrize("position", ["queue_id", "index", "mac"])
def test_tampering_with_any_field_is_rejected(codec: VerpCodec, position: str) -> None:
    local, domain = codec.encode(QID, 5).split("@")
    qid, index, mac = local[2:].split("-")
    if position == "queue_id":
        qid = qid[:-1] + ("0" if qid[-1] != "0" else "1")
    elif position == "index":
        index = "6"
    else:
        mac = mac[:-1] + _swap(mac[-1])
    with pytest.raises(VerpError, match="does not verify"):
        codec.decode(f"b+{qid}-{index}-{mac}@{domain}")


def test_another_key_cannot_forge(codec: VerpCodec) -> None:
    forged = VerpCodec(b"another key of enough length!!", DOMAIN).encode(QID, 0)
    with pytest.raises(VerpError, match="does not verify"):
        codec.decode(forged)


@pytest.mark.parametrize("address", [
    "b+garbage@bounces.example.com",
    "b+01jd5q8w3k00ab12cd-0@bounces.example.com",
    "b+01jd5q8w3k00ab12cd-0-short@bounces.example.com",
    "b+01jd5q8w3k00ab12cd-0-aaaaaaaaaaaaaaaa-x@bounces.example.com",
])
def test_malformed_tokens_are_rejected(codec: VerpCodec, address: str) -> None:
    with pytest.raises(VerpError, match="malformed"):
        codec.decode(address)


def test_non_canonical_index_is_rejected(codec: VerpCodec) -> None:
    # "05" would carry the same MAC input only if the MAC ignored the spelling; it must not
    local, domain = codec.encode(QID, 5).split("@")
    qid, _, mac = local[2:].split("-")
    with pytest.raises(VerpError):
        codec.decode(f"b+{qid}-05-{mac}@{domain}")


@pytest.mark.parametrize("address", ["b+x@other.example.com", "c+x@bounces.example.com",
                                     "billing@example.com", "no-at-sign"])
def test_foreign_addresses_are_not_ours(codec: VerpCodec, address: str) -> None:
    assert not codec.is_ours(address)
    with pytest.raises(VerpError, match="not a VERP address"):
        codec.decode(address)


def test_encode_validates_its_input(codec: VerpCodec) -> None:
    with pytest.raises(ValueError, match="queue id"):
        codec.encode("not-a-queue-id", 0)
    with pytest.raises(ValueError, match="index"):
        codec.encode(QID, -1)
    with pytest.raises(ValueError, match="16 bytes"):
        VerpCodec(b"short", DOMAIN)


def test_repr_shows_no_key(codec: VerpCodec) -> None:
    assert "0123" not in repr(codec) and DOMAIN in repr(codec)


def _bounce_to(address: str) -> bytes:
    text = (DATA / "qmail_01.eml").read_text(encoding="utf-8")
    text = re.sub(r"^To: .*$", f"To: {address}", text, count=1, flags=re.MULTILINE)
    return text.encode()


def test_parse_reports_the_verified_reference(codec: VerpCodec) -> None:
    report = parse_bytes(_bounce_to(codec.encode(QID, 2)), verp=codec)
    assert (report.verp, report.forged) == (VerpRef(QID, 2), False)
    assert report.is_bounce


def test_parse_marks_a_forged_verp_address(codec: VerpCodec) -> None:
    # The corpus samples carry a VERP address whose MAC is made up.
    report = parse_bytes((DATA / "postfix_01.eml").read_bytes(), verp=codec)
    assert (report.verp, report.forged) == (None, True)


def test_arf_reference_comes_from_the_originals_return_path(codec: VerpCodec) -> None:
    text = (DATA / "arf_05.eml").read_text(encoding="utf-8")
    good = codec.encode(QID, 4)
    text = text.replace("Return-Path: <b+01jd5q8w3k00ab12cd-0-mfrwg33vmvzgk3ls@"
                        "bounces.example.com>", f"Return-Path: <{good}>")
    report = parse_bytes(text.encode(), verp=codec)
    assert (report.verp, report.forged) == (VerpRef(QID, 4), False)


def test_parse_without_verp_address(codec: VerpCodec) -> None:
    report = parse_bytes((DATA / "ses_03.eml").read_bytes(), verp=codec)
    assert (report.verp, report.forged) == (None, False)
