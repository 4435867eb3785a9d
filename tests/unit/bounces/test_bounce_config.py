"""policies/bounces.yaml and config.yaml's `bounces:` section: defaults, the shipped
example, and every error at file:line:col (also through `check-config`)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from gateway.bounces.rules import BounceRules
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.policy.rules_file import load_policies

EXAMPLE = Path(__file__).resolve().parents[3] / "policies" / "bounces.yaml.example"


def _policy(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir(exist_ok=True)
    (directory / "bounces.yaml").write_text(textwrap.dedent(text))
    return directory


def _problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_policies(directory)
    return [str(p) for p in info.value.problems]


def test_example_and_defaults(tmp_path: Path) -> None:
    directory = _policy(tmp_path, EXAMPLE.read_text())
    policies = load_policies(directory)
    assert policies is not None and policies.bounces == BounceRules()
    assert "bounces.yaml" in policies.files
    empty = load_policies(_policy(tmp_path, "{}\n"))
    assert empty is not None and empty.bounces == BounceRules()


def test_bounces_yaml_errors_at_line_and_column(tmp_path: Path) -> None:
    directory = _policy(tmp_path, """\
        hard:
          action: delete
        complaint:
          scope: newsletters
        soft:
          count: 0
          window: soon
          burst: 3
        """)
    path = directory / "bounces.yaml"
    assert _problems(directory) == [
        f"{path}:2:11: 'hard.action': 'delete' is not one of: suppress, ignore",
        f"{path}:4:10: unknown category 'newsletters' (scope is 'all' or one of: "
        "transactional, marketing)",
        f"{path}:6:10: 'soft.count': 0 must be at least 1 and 1000",
        f"{path}:7:11: 'soft.window': 'soon' is not a duration (use e.g. 30s, 5m, 1h, 5d)",
        f"{path}:8:3: unknown key 'burst' in 'soft'",
    ]


def _config(tmp_path: Path, bounces: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("listeners:\n  - name: relay\n    networks: [127.0.0.0/8]\n"
                    + textwrap.dedent(bounces))
    return path


def test_bounces_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_VERP_KEY", "k" * 32)
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    config = load_config(_config(tmp_path, """\
        bounces:
          verp: {domain: Bounces.Example.COM., key_env: GW_TEST_VERP_KEY}
          smtp: {listeners: [relay]}
          maildir: mail/bounces
          imap: {host: imap.example.com, username: b, password_file: pw}
          poll_interval: 2m
        """))
    b = config.bounces
    assert b.verp is not None and b.domain == "bounces.example.com"
    assert "k" * 32 not in repr(b)  # the key is a Secret
    assert b.smtp_listeners == ("relay",)
    assert b.maildir == tmp_path / "mail" / "bounces"
    assert b.imap is not None and (b.imap.port, b.imap.tls) == (993, "implicit")
    assert b.imap.password.value == "secret" and b.poll_interval == 120.0


def test_bounces_section_errors(tmp_path: Path) -> None:
    (tmp_path / "short.key").write_text("short")
    (tmp_path / "short.key").chmod(0o600)
    os.chmod(tmp_path / "short.key", 0o600)
    path = _config(tmp_path, """\
        bounces:
          verp:
            domain: bounces.example.com
            key_file: short.key
          smtp:
            listeners: [relay, mx]
          imap:
            host: imap.example.com
            username: b
            password: hunter2
        routes:
          - name: default
            verp: maybe
        """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:7:15: the VERP key must be at least 16 bytes",
        f"{path}:9:24: no listener named 'mx'",
        f"{path}:13:15: put the password in a file ('password_file') or the environment "
        "('password_env'), not in config.yaml",
        f"{path}:16:11: 'routes[0].verp': 'maybe' is not true or false",
    ]


def test_check_config_reports_bounces_yaml(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _policy(tmp_path, "soft: {window: never}\n")
    config = _config(tmp_path, "")
    assert main(["check-config", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/policies/bounces.yaml:1:16: 'soft.window': 'never' is not a duration" in err


def test_route_verp_true_needs_bounces_verp(tmp_path: Path) -> None:
    path = _config(tmp_path, "routes:\n  - name: default\n    verp: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:5:3: a route has 'verp: true' but 'bounces.verp' is not configured"]
