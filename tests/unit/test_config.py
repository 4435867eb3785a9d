from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


def test_shipped_config_loads_with_documented_defaults() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert cfg.data_dir == ROOT / "var"
    (relay,) = cfg.listeners
    assert (relay.kind, relay.address, relay.port) == ("relay", "127.0.0.1", 2525)
    assert cfg.retry.delays == (60, 300, 900, 1800, 3600)
    assert cfg.retry.max_age == 5 * 86400
    assert [r.name for r in cfg.routes] == ["default"]


def test_empty_file_gives_a_working_default(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg.listeners[0].port == 2525
    assert cfg.routes[0].kind == "mx"


def test_unknown_key_reported_with_line_and_column(tmp_path: Path) -> None:
    text = "hostname: gw.test\nlimits:\n  max_recipients: 10\n  max_recipents: 5\n"
    path = str(tmp_path / "config.yaml")
    assert problems(tmp_path, text) == [f"{path}:4:3: unknown key 'max_recipents' in 'limits'"]


def test_wrong_types_and_values_all_reported(tmp_path: Path) -> None:
    text = (
        "limits:\n"
        "  max_recipients: many\n"
        "  command_timeout: 5 minutes\n"
        "retry:\n"
        "  delays: [1s, soon]\n"
        "listeners:\n"
        "  - kind: relay\n"
        "    port: 70000\n"
        "    networks: [10.0.0.0/33]\n"
    )
    found = problems(tmp_path, text)
    assert any(":2:19: 'limits.max_recipients'" in p and "not a whole number" in p for p in found)
    assert any(":3:20:" in p and "not a duration" in p for p in found)
    assert any(":5:16: 'retry.delays': 'soon' is not a duration" in p for p in found)
    assert any(":8:11:" in p and "70000 must be at least 0 and 65535" in p for p in found)
    assert any(":9:16:" in p and "not an IP network" in p for p in found)


def test_yaml_syntax_error_points_at_the_spot(tmp_path: Path) -> None:
    (p,) = problems(tmp_path, "limits:\n  max_recipients: [1, 2\n")
    assert p.startswith(str(tmp_path / "config.yaml") + ":3:")
    assert "YAML syntax" in p


def test_routes_need_a_catch_all_last(tmp_path: Path) -> None:
    text = (
        "routes:\n"
        "  - name: all\n"
        "    type: mx\n"
        "  - name: special\n"
        "    type: mx\n"
        "    match: {recipient_domains: [example.com]}\n"
    )
    (p,) = problems(tmp_path, text)
    assert "route 'all' matches everything" in p


def test_smarthost_password_never_inline_and_read_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = (
        "routes:\n"
        "  - name: out\n"
        "    type: smarthost\n"
        "    smarthosts:\n"
        "      - host: smtp.example.net\n"
        "        username: u\n"
    )
    (p,) = problems(tmp_path, base + "        password: hunter2\n")
    assert ":7:19:" in p and "not in config.yaml" in p
    monkeypatch.setenv("GW_TEST_SECRET", "hunter2")
    cfg = load_config(write(tmp_path, base + "        password_env: GW_TEST_SECRET\n"))
    host = cfg.routes[0].smarthosts[0]
    assert host.password is not None and host.password.value == "hunter2"
    assert "hunter2" not in repr(cfg)


def test_submission_listener_requires_tls(tmp_path: Path) -> None:
    text = "listeners:\n  - name: sub\n    kind: submission\n    port: 587\n"
    (p,) = problems(tmp_path, text)
    assert ":2:5:" in p and "AUTH only over TLS" in p


def test_world_readable_tls_key_refused(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    key = tmp_path / "key.pem"
    key.write_text("x")
    key.chmod(0o644)
    text = ("listeners:\n  - kind: submission\n    tls: starttls\n"
            "    cert: cert.pem\n    key: key.pem\n")
    found = problems(tmp_path, text)
    assert any(":5:10:" in p and "readable by other users" in p for p in found)


def test_check_config_command_prints_file_line_and_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "limits:\n  burst: 3\n")
    run = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == f"{path}:2:3: unknown key 'burst' in 'limits'"
    ok = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c",
                         str(ROOT / "config.yaml")], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ": ok (" in ok.stdout


def test_route_retry_overrides_the_global_schedule_key_by_key(tmp_path: Path) -> None:
    text = (
        "retry:\n  delays: [1m, 5m]\n  max_age: 2d\n"
        "routes:\n"
        "  - name: apps\n    type: mx\n    match: {sender_domains: [booking.example]}\n"
        "    retry: {delays: [1s, 5s, 15s], repeat: never}\n"
        "  - name: default\n    type: mx\n"
    )
    cfg = load_config(write(tmp_path, text))
    apps, default = cfg.routes
    assert apps.retry.delays == (1, 5, 15) and apps.retry.repeat is None
    assert apps.retry.max_age == 2 * 86400  # inherited from the global schedule
    assert default.retry.delays == (60, 300) and default.retry.repeat == 3600


def test_node_name_defaults_to_the_host_name_and_is_checked(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).node_name == socket.gethostname()
    assert load_config(write(tmp_path, "node_name: gw-a.eu_1\n")).node_name == "gw-a.eu_1"
    (found,) = problems(tmp_path, "node_name: gw a\n")
    assert ":1:12:" in found and "'gw a' is not a node name" in found


def test_transport_security_settings(tmp_path: Path) -> None:
    text = ("delivery:\n  dane: on\n  dns:\n    nameservers: [127.0.0.1]\n"
            "    dnssec: validating-resolver\n"
            "routes:\n  - name: default\n    type: mx\n    mta_sts: testing-only\n")
    cfg = load_config(write(tmp_path, text))
    assert cfg.delivery.dane and cfg.delivery.dns.dnssec == "validating-resolver"
    assert cfg.routes[0].mta_sts == "testing-only"
    defaults = load_config(write(tmp_path, ""))
    assert not defaults.delivery.dane and defaults.delivery.dns.dnssec == "off"
    assert defaults.routes[0].mta_sts == "enforce"


def test_dane_without_a_validating_resolver_is_refused(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "delivery:\n  dane: on\n")
    assert found.endswith("DANE needs DNSSEC-validated answers: set 'dns.dnssec: "
                          "validating-resolver' (and point dns.nameservers at a validating "
                          "resolver you trust), or 'dane: off'")
    assert ":2:" in found
    (bad,) = problems(tmp_path, "routes:\n  - name: d\n    mta_sts: maybe\n")
    assert "mta_sts" in bad
    (bad,) = problems(tmp_path, "delivery:\n  dns:\n    dnssec: yes-please\n")
    assert bad.endswith("'delivery.dns.dnssec': 'yes-please' is not one of: off, "
                        "validating-resolver")
