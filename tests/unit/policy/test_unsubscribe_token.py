"""Unsubscribe tokens: round trip, and every forgery or malformed token refused."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.unsubscribe_token import TokenSigner, UnsubscribeRequest

KEY = b"k" * 32
SIGNER = TokenSigner(KEY, "https://gw.example/unsubscribe")


def test_round_trip() -> None:
    token = SIGNER.token("guest@example.net", "marketing")
    assert SIGNER.verify(token) == UnsubscribeRequest("guest@example.net", "marketing")
    assert SIGNER.url("guest@example.net", "marketing").startswith(
        "https://gw.example/unsubscribe?token=v1.")


def test_another_key_refuses() -> None:
    token = SIGNER.token("guest@example.net", "marketing")
    assert TokenSigner(b"x" * 32).verify(token) is None


def test_changed_address_or_category_refused() -> None:
    token = SIGNER.token("guest@example.net", "marketing")
    version, _, mac = token.split(".")
    for payload in ("marketing\nother@example.net", "transactional\nguest@example.net"):
        forged = f"{version}.{base64.urlsafe_b64encode(payload.encode()).decode()}.{mac}"
        assert SIGNER.verify(forged.rstrip("=")) is None


def test_tokens_differ_per_address() -> None:
    a = SIGNER.token("a@example.net", "marketing")
    b = SIGNER.token("b@example.net", "marketing")
    assert a.split(".")[2] != b.split(".")[2]


@given(st.text(max_size=300))
def test_garbage_never_verifies_nor_raises(token: str) -> None:
    assert SIGNER.verify(token) is None


def test_repr_hides_key() -> None:
    assert "kkkk" not in repr(SIGNER)
