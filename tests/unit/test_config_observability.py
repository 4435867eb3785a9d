"""config.yaml's `logging:` and `metrics:` sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.logs.settings import LogConfig

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_the_shipped_file() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert cfg.logging == LogConfig("text", "none")
    assert cfg.metrics_sample_interval == 10.0


def test_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("logging: {format: logfmt, redact_addresses: hash}\n"
                    "metrics: {queue_sample_interval: 30s}\n")
    cfg = load_config(path)
    assert cfg.logging == LogConfig("logfmt", "hash")
    assert cfg.metrics_sample_interval == 30.0


def test_bad_values_point_at_file_line_column(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("logging:\n  format: xml\n  redact: yes\nmetrics:\n"
                    "  queue_sample_interval: 0s\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(f"{path}:2:11:") and "xml" in p for p in found), found
    assert any(p.startswith(f"{path}:3:3:") and "unknown key 'redact'" in p for p in found)
    assert any(p.startswith(f"{path}:5:") and "more than 0" in p for p in found), found
