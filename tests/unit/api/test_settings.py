"""The `api:` config section: defaults, TLS off loopback, `file:line:col` errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.fixtures.tls import make_certs


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("hostname: gw.test\n" + text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_no_section_no_listener_and_loopback_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).api is None
    api = load_config(write(tmp_path, "api: {}\n")).api
    assert api is not None and (api.address, api.port, api.tls) == ("127.0.0.1", 9587, False)
    assert api.keys_file == tmp_path / "api_keys.yaml"
    assert load_config(write(tmp_path, "api: {enabled: false}\n")).api is None


def test_off_loopback_only_with_tls(tmp_path: Path) -> None:
    text = problems(tmp_path, "api:\n  address: 0.0.0.0\n")
    assert "config.yaml:3:12: the API listener on 0.0.0.0 (not loopback) needs TLS" in text
    certs = make_certs(tmp_path)
    api = load_config(write(tmp_path, f"api:\n  address: 0.0.0.0\n  cert_file: {certs.cert_file}\n"
                                      f"  key_file: {certs.key_file}\n")).api
    assert api is not None and api.tls


def test_mistakes_are_reported_with_their_place(tmp_path: Path) -> None:
    key = tmp_path / "open.key"
    key.write_text("x")
    key.chmod(0o644)
    text = problems(tmp_path, f"api:\n  address: nowhere\n  port: 70000\n  cert_file: gone.crt\n"
                              f"  key_file: {key}\n  max_body: lots\n  colour: blue\n")
    for expected in ("'nowhere' is not an IP address", "70000 must be at least 0 and 65535",
                     "no such file", "readable by other users", "max_body",
                     "unknown key 'colour'"):
        assert expected in text, text
