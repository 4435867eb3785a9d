"""Which submissions count as the same: the key and the client scope."""

from __future__ import annotations

from gateway.clock import ManualClock
from gateway.intake.idempotency import MAX_KEY, IdempotencyGuard
from gateway.intake.settings import IdempotencyConfig
from gateway.model import Client, Envelope

CONTENT = b"Subject: hi\r\nMessage-ID: <m1@example.com>\r\n\r\nbody\r\n"


def guard() -> IdempotencyGuard:
    return IdempotencyGuard(None, None, IdempotencyConfig(), ManualClock())  # type: ignore[arg-type]


def env(rcpts: tuple[str, ...] = ("a@example.net",), user: str | None = None,
        ip: str = "192.0.2.1") -> Envelope:
    return Envelope("app@example.com", rcpts, Client("submission", ip, auth_user=user), 0.0)


def test_scope_is_the_user_when_authenticated_else_the_address() -> None:
    g = guard()
    assert g.key_of(env(user="booking-app"), CONTENT, "<m1@example.com>")[0] == (  # type: ignore[index]
        "user:booking-app")
    assert g.key_of(env(ip="192.0.2.7"), CONTENT, "<m1@example.com>")[0] == "ip:192.0.2.7"  # type: ignore[index]


def test_message_id_key_includes_the_envelope_but_not_its_order() -> None:
    g = guard()
    one = g.key_of(env(("a@x.example", "b@x.example")), CONTENT, "<m1@example.com>")
    same = g.key_of(env(("b@x.example", "a@x.example")), CONTENT, "<m1@example.com>")
    other = g.key_of(env(("c@x.example",)), CONTENT, "<m1@example.com>")
    assert one == same and one != other


def test_idempotency_key_header_is_the_whole_key_and_is_capped() -> None:
    g = guard()
    keyed = b"Idempotency-Key: " + b"k" * 5000 + b"\r\n" + CONTENT
    a = g.key_of(env(("a@x.example",)), keyed, "<m1@example.com>")
    b = g.key_of(env(("c@x.example",)), keyed, "<other@example.com>")
    assert a == b and a is not None and len(a[1]) == MAX_KEY


def test_the_cap_is_in_octets_and_cuts_between_characters() -> None:
    keyed = ("Idempotency-Key: " + "\u4e2d" * 400 + "\r\n").encode() + CONTENT
    found = guard().key_of(env(), keyed, None)
    assert found is not None
    assert found[1] == "key:" + "\u4e2d" * 331  # 4 + 331 * 3 = 997 octets: 998 cuts one
    nul = guard().key_of(env(), b"Idempotency-Key: a\0b\r\n" + CONTENT, None)
    assert nul is not None and nul[1] == "key:a\ufffdb"


def test_no_message_id_no_key() -> None:
    assert guard().key_of(env(), b"Subject: hi\r\n\r\nbody\r\n", None) is None
