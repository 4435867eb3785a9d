"""Tracking tokens: round trip, nothing readable, any change or another key → None."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
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


# A token sealed by the first implementation (a CTR cipher context per token): tokens
# already in sent mail must keep opening after the keystream is computed another way.
SEALED_BEFORE = ("uIJJpWieoTgZ7FsQ_V3g8EyiB4ye96KUTTsp1BXVOLDZ5s9pQBOkV6TIVhHgCqeNvy7vROLuh4dTNtnL"
                 "yrBkuoEFdKfx6YE53Yz_zVXb6rhG")


def test_tokens_sealed_before_still_open_to_the_same_hit() -> None:
    assert seal(KEYS, HIT) == SEALED_BEFORE
    assert open_token(KEYS, SEALED_BEFORE) == HIT


@given(st.binary(min_size=16, max_size=16), st.integers(min_value=1, max_value=300))
def test_keystream_is_aes_ctr_even_where_the_counter_wraps(counter: bytes, length: int
                                                           ) -> None:
    for start in (counter, b"\xff" * 15 + counter[-1:], b"\xff" * 16):
        ctr = Cipher(algorithms.AES(KEYS.enc), modes.CTR(start)).encryptor()
        assert KEYS.keystream(start, length) == ctr.update(bytes(length)) + ctr.finalize()
