"""`webhooks:` and `retention:` in config.yaml: values, defaults, file:line:col errors;
the signature scheme as a receiver checks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.model import EventType, Secret
from gateway.webhooks.settings import EVENT_NAMES
from gateway.webhooks.signature import sign, signature_headers, verify

SECRET = "0123456789abcdef-webhook"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p).replace(str(path), "config.yaml") for p in info.value.problems]


def test_a_webhook_with_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    (tmp_path / "hook.secret").chmod(0o600)
    path = tmp_path / "config.yaml"
    path.write_text(
        "webhooks:\n"
        "  - name: booking\n"
        "    url: https://hooks.example.com/gw\n"
        "    secret_file: hook.secret\n"
        "    events: [delivered, bounced, complained]\n"
        "    categories: [transactional]\n"
        "    timeout: 5s\n"
        "    batch_size: 50\n"
        "    poll_interval: 500ms\n"
        "    retry_initial: 2s\n"
        "    retry_max: 1h\n"
        "    ca_file: hook.secret\n"
        "  - url: http://127.0.0.1:8080/hooks\n"
        "    secret_env: HOOK_SECRET\n"
        "retention:\n"
        "  events: 30d\n"
        "  purge_interval: 10m\n"
        "  erasure_key_file: keys/erasure.key\n")
    cfg = load_config(path)
    booking, local = cfg.webhooks
    assert (booking.name, booking.events, booking.categories) == (
        "booking", ("delivered", "bounced", "complained"), ("transactional",))
    assert (booking.timeout, booking.batch_size, booking.poll_interval) == (5.0, 50, 0.5)
    assert (booking.retry_initial, booking.retry_max) == (2.0, 3600.0)
    assert booking.secret.value == SECRET and SECRET not in repr(booking)
    assert booking.ca_file == tmp_path / "hook.secret"  # any existing file passes here
    assert local.name == "127.0.0.1/hooks" and local.categories == ()
    assert "dropped" in local.events and "accepted" not in local.events
    assert (cfg.retention.events, cfg.retention.purge_interval) == (30 * 86400, 600)
    assert cfg.erasure_key_path == tmp_path / "keys" / "erasure.key"


def test_defaults_without_the_sections(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("hostname: gw.test\n")
    cfg = load_config(path)
    assert cfg.webhooks == ()
    assert cfg.retention.events == 90 * 86400
    assert cfg.erasure_key_path == cfg.data_dir / "erasure.key"


def test_errors_point_at_the_line_and_column(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    (tmp_path / "short.secret").write_text("short")
    (tmp_path / "short.secret").chmod(0o600)
    assert problems(tmp_path, (
        "webhooks:\n"
        "  - name: a\n"
        "    url: ftp://example.com/\n"
        "    secret: inline-is-refused-here\n"
        "    events: [delivered, deliverd]\n"
        "    batch_size: 0\n"
        "  - name: a\n"
        "    url: https://example.com/\n"
        "    secret_env: NO_SUCH_SECRET\n"
        "    timeout: soon\n"
        "  - url: https://example.com/x\n"
        "    secret_file: short.secret\n"
        "    retires: 3\n"
        "  - url: https://example.com/y\n"
        "    ca_file: missing.pem\n"
        "retention:\n"
        "  events: 10m\n")) == [
        "config.yaml:2:3: webhook name 'a' is used twice",
        "config.yaml:3:10: 'webhooks[0].url' must be an http:// or https:// URL",
        "config.yaml:4:13: put the webhook secret in a file ('secret_file') or the environment"
        " ('secret_env'), not in config.yaml",
        "config.yaml:5:25: 'webhooks[0].events': unknown event type 'deliverd' (one of: "
        f"{', '.join(EVENT_NAMES)})",
        "config.yaml:6:17: 'webhooks[0].batch_size': 0 must be at least 1 and 1000",
        "config.yaml:9:17: environment variable NO_SUCH_SECRET is not set",
        "config.yaml:10:14: 'webhooks[1].timeout': 'soon' is not a duration (use e.g. 30s, "
        "5m, 1h, 5d)",
        "config.yaml:12:18: the webhook secret must be at least 16 characters",
        "config.yaml:13:5: unknown key 'retires' in 'webhooks[2]'",
        "config.yaml:14:5: 'webhooks[3]' needs 'secret_file' or 'secret_env' (the signing key)",
        "config.yaml:15:14: 'missing.pem': no such file",
        "config.yaml:17:11: 'retention.events' must be at least 1h",
    ]


def test_filters_accept_every_event_type_and_the_ones_still_to_come() -> None:
    assert {t.value for t in EventType} <= set(EVENT_NAMES)
    assert {"complained", "unsubscribed", "suppressed"} <= set(EVENT_NAMES)


def test_signature_verifies_and_refuses_tampering_replay_and_a_wrong_secret() -> None:
    secret = Secret(SECRET)
    body = b'{"events":[]}'
    headers = signature_headers(secret, 1_700_000_000.7, body)
    ts, sig = headers["X-Gateway-Timestamp"], headers["X-Gateway-Signature"]
    assert ts == "1700000000" and sig == sign(secret, 1_700_000_000, body)
    assert verify(secret, ts, sig, body, now=1_700_000_100)
    assert verify(secret, ts, f"v1=00, {sig}", body, now=1_700_000_100)  # during a rotation
    assert not verify(secret, ts, sig, body + b" ", now=1_700_000_100)
    assert not verify(secret, str(int(ts) + 1), sig, body, now=1_700_000_100)
    assert not verify(Secret("another-secret-entirely"), ts, sig, body, now=1_700_000_100)
    assert not verify(secret, ts, sig, body, now=1_700_000_301)  # replayed 5 minutes later
    assert not verify(secret, ts, sig, body, now=1_699_999_699)  # from the future
    assert not verify(secret, None, sig, body, now=1_700_000_000)
    assert not verify(secret, "-5", sig, body, now=1_700_000_000)


def test_webhooks_run_with_the_shared_state_store(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    path = tmp_path / "config.yaml"
    path.write_text("state: postgresql://gateway@127.0.0.1:5432/gateway\n"
                    "webhooks:\n"
                    "  - url: https://example.com/hooks\n"
                    "    secret_env: HOOK_SECRET\n")
    config = load_config(path)
    assert config.state.backend == "postgresql"
    assert [w.url for w in config.webhooks] == ["https://example.com/hooks"]
