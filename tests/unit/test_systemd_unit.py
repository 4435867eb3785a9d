"""The shipped systemd unit is valid for systemd itself and keeps its hardening."""

from __future__ import annotations

import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "smtp-gateway.service"


def test_unit_verifies_with_systemd_analyze(tmp_path: Path) -> None:
    # Point ExecStart/ExecStartPre at a binary that exists here; everything else as shipped.
    text = UNIT.read_text().replace("/opt/smtp-gateway/.venv/bin/smtp-gateway", "/bin/true")
    unit = tmp_path / "smtp-gateway.service"
    unit.write_text(text)
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60)
    problems = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 0 and not problems, problems


def test_unit_is_hardened() -> None:
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["DynamicUser"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert settings["Restart"] == "on-failure"
    assert "kill -HUP" in settings["ExecReload"]
    assert settings["ReadWritePaths"] == "/var/lib/smtp-gateway"
