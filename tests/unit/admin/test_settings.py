"""The `admin:` config section: defaults, tokens from files and the environment, and
`file:line:col` errors for everything an operator can get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

TOKEN = "0123456789abcdef-token"
ROOT = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def token_file(tmp_path: Path, name: str = "admin.token", value: str = TOKEN,
               mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


def test_no_section_no_admin_listener(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "hostname: gw.test\n")).admin is None


def test_defaults_are_loopback_9025_without_token(tmp_path: Path) -> None:
    admin = load_config(write(tmp_path, "admin: {}\n")).admin
    assert admin is not None
    assert (admin.address, admin.port, admin.tokens) == ("127.0.0.1", 9025, ())
    assert admin.correlation_headers == ()
    assert (admin.unsubscribe_interval, admin.unsubscribe_burst) == (6.0, 10)


def test_enabled_false_turns_it_off(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "admin:\n  enabled: false\n")).admin is None


def test_token_file_is_read_and_never_shown(tmp_path: Path) -> None:
    token_file(tmp_path)
    admin = load_config(write(tmp_path, "admin:\n  token_file: admin.token\n")).admin
    assert admin is not None
    (token,) = admin.tokens
    assert (token.name, token.secret.value) == ("admin", TOKEN)
    assert TOKEN not in repr(admin) and TOKEN not in str(token.secret)


def test_token_env_and_named_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_ADMIN_TOKEN", TOKEN + "-env")
    token_file(tmp_path, "ops.token", TOKEN + "-ops")
    admin = load_config(write(tmp_path, (
        "admin:\n"
        "  token_env: GW_ADMIN_TOKEN\n"
        "  tokens:\n"
        "    - {name: ops, token_file: ops.token}\n"))).admin
    assert admin is not None
    assert [(t.name, t.secret.value) for t in admin.tokens] == [
        ("admin", TOKEN + "-env"), ("ops", TOKEN + "-ops")]


def test_non_loopback_without_token_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, "admin:\n  address: 0.0.0.0\n") == [
        f"{tmp_path}/config.yaml:2:12: the admin listener on 0.0.0.0 (not loopback) needs a "
        "token: set 'admin.token_file' or 'admin.token_env'"]


def test_non_loopback_with_token_is_allowed(tmp_path: Path) -> None:
    token_file(tmp_path)
    admin = load_config(write(tmp_path, "admin:\n  address: '::'\n  token_file: admin.token\n"
                              )).admin
    assert admin is not None and not admin.is_loopback


@pytest.mark.parametrize(("text", "expected"), [
    ("admin:\n  token: abc\n", "2:10: put the admin token in a file ('token_file') or the "
     "environment ('token_env'), not in config.yaml"),
    ("admin:\n  token_env: GW_TEST_UNSET_VARIABLE\n", "2:14: environment variable "
     "GW_TEST_UNSET_VARIABLE is not set"),
    ("admin:\n  port: 70000\n", "2:9: 'admin.port': 70000 must be at least 0 and 65535"),
    ("admin:\n  address: example.com\n", "2:12: 'admin.address': 'example.com' is not an IP "
     "address"),
    ("admin:\n  correlation_headers: ['X Booking']\n", "2:25: 'X Booking' is not a header "
     "field name"),
    ("admin:\n  unsubscribe_limit: {rate: lots}\n", "2:29: 'lots' is not a rate (use e.g. "
     "20/m, 5/s, 100/h, 3/10m)"),
    ("admin:\n  trusted_proxies: [nope]\n", "2:21: 'nope' is not an IP network (CIDR)"),
    ("admin:\n  prot: 9025\n", "2:3: unknown key 'prot' in 'admin'"),
    ("admin:\n  tokens:\n    - {token_env: X}\n", "3:7: every admin token needs a 'name' "
     "(letters, digits, - and _)"),
])
def test_errors_point_at_the_place(tmp_path: Path, text: str, expected: str) -> None:
    assert f"{tmp_path}/config.yaml:{expected}" in problems(tmp_path, text)


def test_a_missing_token_file_is_named_at_its_place(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "admin:\n  token_file: missing.token\n")
    assert found == (f"{tmp_path}/config.yaml:2:15: cannot read '{tmp_path}/missing.token': "
                     "No such file or directory")


def test_short_and_world_readable_token_files(tmp_path: Path) -> None:
    token_file(tmp_path, "short.token", "abc")
    token_file(tmp_path, "open.token", TOKEN, 0o644)
    found = problems(tmp_path, "admin:\n  tokens:\n"
                     "    - {name: a, token_file: short.token}\n"
                     "    - {name: b, token_file: open.token}\n")
    assert any(":3:29: the admin token must have at least 16 characters" in p for p in found)
    assert any(":4:29: '" in p and "open.token' is readable by other users: chmod 600 it" in p
               for p in found)


def test_duplicate_token_names(tmp_path: Path) -> None:
    token_file(tmp_path)
    found = problems(tmp_path, "admin:\n  token_file: admin.token\n  tokens:\n"
                     "    - {name: admin, token_file: admin.token}\n")
    assert any("admin token name 'admin' is used twice" in p for p in found)


def test_correlation_headers_lower_cased_once(tmp_path: Path) -> None:
    admin = load_config(write(tmp_path, "admin:\n  correlation_headers: "
                              "[X-Booking-Id, x-booking-id, X-Tenant]\n")).admin
    assert admin is not None
    assert admin.correlation_headers == ("x-booking-id", "x-tenant")


def test_shipped_config_has_the_admin_listener_on_loopback() -> None:
    admin = load_config(ROOT / "config.yaml").admin
    assert admin is not None and admin.is_loopback and admin.port == 9025
