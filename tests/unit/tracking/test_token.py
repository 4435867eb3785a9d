"""Tracking tokens: round trip, nothing readable, any change or another key → None."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from gateway.tracking.token import MAX_TOKEN, Hit, HitKind, TokenKeys, open_token, seal

KEYS = TokenKeys(b"a" * 32)
HIT = Hit(HitKind.CLICK, "01ABCDEF", "guest@example.net", "marketing",
          "https://shop.example/x?a=1")


def test_round_trip_and_nothing_in_clear() -> None:
    token = seal(KEYS, HIT)
    assert open_token(KEYS, token) == HIT
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for clear in (b"guest", b"example", b"shop", b"marketing", b"01ABCDEF"):
        assert clear not in raw
    assert seal(KEYS, HIT) == token  # deterministic: one link, one token


def test_another_key_or_garbage_opens_nothing() -> None:
    token = seal(KEYS, HIT)
    assert open_token(TokenKeys(b"b" * 32), token) is None
    for junk in ("", "!!!", "AAAA", "x" * (MAX_TOKEN + 1), token[:-4]):
        assert open_token(KEYS, junk) is None


@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_is_refused(position: int, flip: int) -> None:
    token = seal(KEYS, HIT)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[position % len(raw)] ^= flip
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert open_token(KEYS, altered) is None
