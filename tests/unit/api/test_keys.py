"""API keys: made, written 0600, read back with file:line errors, checked (scrypt once,
then the cache), refused once revoked or when the file changes under them."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.api.keys import KeyRing, load_keys, make_key, write_keys
from gateway.errors import ConfigError


def test_a_key_is_its_id_and_a_secret_and_the_file_keeps_only_a_hash(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.yaml"
    new = make_key("booking-app", "send", ("Example.COM",), "600/m", time.time())
    write_keys(path, (new.key,))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert new.secret.startswith(f"sgw_{new.key.id}_") and new.secret not in path.read_text()
    (key,) = load_keys(path)
    assert key == new.key and key.sender_domains == ("example.com",)
    assert key.may_send_from("app@EXAMPLE.com") and not key.may_send_from("a@other.example")
    assert key.interval == pytest.approx(0.1) and not key.can_read


@pytest.mark.parametrize(("name", "scope", "rate"), [
    ("has space", "send", None), ("ok", "admin", None), ("ok", "send", "fast")])
def test_make_key_refuses_bad_values(name: str, scope: str, rate: str | None) -> None:
    with pytest.raises(ValueError):
        make_key(name, scope, ("example.com",), rate, 0.0)


def test_a_bad_file_says_where(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.yaml"
    path.write_text("keys:\n  - id: xyz\n    name: a b\n    hash: nope\n    scope: all\n"
                    "    rate: lots\n    colour: blue\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_keys(path)
    text = str(info.value)
    for expected in ("readable by other users", ":2:", "16 hexadecimal", "not a key name",
                     "not a password hash", "sender domains", "is not a rate",
                     "unknown key 'colour'", "'all' is not one of"):
        assert expected in text, text


async def test_the_ring_checks_caches_and_notices_a_revocation(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.yaml"
    a = make_key("a", "send", ("*",), None, 0.0)
    b = make_key("b", "send+read", ("example.com",), None, 0.0)
    write_keys(path, (a.key, b.key))
    ring = KeyRing(path)
    ring.refresh()
    assert await ring.check(a.secret) == a.key
    assert await ring.check(a.secret) == a.key  # from the cache now
    assert await ring.check(b.secret) == b.key
    assert await ring.check(a.secret[:-1] + ("A" if a.secret[-1] != "A" else "B")) is None
    assert await ring.check(f"sgw_{'0' * 16}_{'x' * 43}") is None  # unknown id: decoy
    assert await ring.check("Bearer nonsense") is None
    write_keys(path, (replace(a.key, revoked="2026-12-07T12:00:00Z"), b.key))
    ring.refresh()
    assert await ring.check(a.secret) is None and len(ring) == 1
    assert await ring.check(b.secret) == b.key
