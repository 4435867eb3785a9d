"""Authenticator: scrypt checks against Config.users, off the event loop."""

from __future__ import annotations

import pytest

from gateway.intake.auth import Authenticator
from gateway.intake.passwords import hash_password


@pytest.fixture(scope="module")
def users() -> dict[str, str]:
    return {"app": hash_password("s3cret", n=2**10), "ünï": hash_password("pässword", n=2**10)}


async def test_right_password_names_the_user(users: dict[str, str]) -> None:
    auth = Authenticator(users)
    assert await auth.check(b"app", b"s3cret") == "app"
    assert await auth.check("ünï".encode(), "pässword".encode()) == "ünï"


async def test_wrong_password_unknown_user_and_bad_utf8_fail(users: dict[str, str]) -> None:
    auth = Authenticator(users)
    assert await auth.check(b"app", b"S3cret") is None
    assert await auth.check(b"nobody", b"s3cret") is None
    assert await auth.check(b"app\xff", b"s3cret") is None
    assert await auth.check(b"app", b"") is None


def test_has_users_and_repr_hide_hashes(users: dict[str, str]) -> None:
    assert Authenticator(users).has_users
    assert not Authenticator({}).has_users
    assert "scrypt" not in repr(Authenticator(users))
