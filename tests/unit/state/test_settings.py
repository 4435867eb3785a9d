"""`state:` and `rate_limits:` in config.yaml: inline, from a file or the environment;
a DSN's password never appears in an error or a repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.state.postgres import redact_dsn
from gateway.state.store import open_state

DSN = "postgresql://gw:s3cret@db.internal:5432/gateway"


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_defaults_are_the_embedded_backends(tmp_path: Path) -> None:
    state = load(tmp_path, "").state
    assert (state.backend, state.rate_limits_url, state.rate_limits_fail_open) == (
        "sqlite", None, False)


def test_dsn_inline_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load(tmp_path, f"state: {DSN}\nrate_limits: redis://127.0.0.1:6379/2\n"
                         "rate_limits_fail_open: true\n")
    state = cfg.state
    assert state.dsn is not None and state.rate_limits_url is not None
    assert state.dsn.value == DSN and state.rate_limits_url.value.endswith("/2")
    assert state.rate_limits_fail_open and "s3cret" not in repr(state)
    (tmp_path / "state.dsn").write_text(DSN + "\n")
    (tmp_path / "state.dsn").chmod(0o600)  # it may hold a password
    assert load(tmp_path, "state_file: state.dsn\n").state.dsn == cfg.state.dsn
    monkeypatch.setenv("GW_TEST_STATE", DSN)
    assert load(tmp_path, "state_env: GW_TEST_STATE\n").state.dsn == cfg.state.dsn


def test_errors_name_the_place_never_the_value(tmp_path: Path) -> None:
    text = problems(tmp_path, "state: mysql://root:s3cret@db/x\n")
    assert text.startswith(f"{tmp_path / 'config.yaml'}:1:8: 'state' must be 'sqlite' or a URL")
    assert "s3cret" not in text
    text = problems(tmp_path, f"state: {DSN}\nstate_env: X\n")
    assert "give only one of state, state_env" in text and "s3cret" not in text
    assert "environment variable GW_NOPE_UNSET is not set" in problems(
        tmp_path, "rate_limits_env: GW_NOPE_UNSET\n")


def test_redacted_dsn_keeps_user_host_and_database() -> None:
    assert redact_dsn(DSN) == "postgresql://gw@db.internal:5432/gateway"
    assert redact_dsn("postgresql://db/x?password=s3cret") == "postgresql://db/x"


def test_open_state_picks_the_backends(tmp_path: Path) -> None:
    cfg = load(tmp_path, f"state: {DSN}\nrate_limits: redis://127.0.0.1:6379/0\n")
    state = open_state(cfg)
    assert state.backend == "postgresql" and "s3cret" not in repr(state.postgres)
    assert type(state.rate_counters).__name__ == "RedisRateCounters"
