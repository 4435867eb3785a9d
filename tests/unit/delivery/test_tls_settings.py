"""`delivery.mta_sts` and `delivery.tls_reports`: defaults, and mistakes reported as
file:line:col like every other section."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError


def test_defaults_and_values(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("delivery:\n  mta_sts: {recheck: 30m, port: 8443}\n"
                    "  tls_reports: {enabled: true, sender: tlsrpt@example.com}\n")
    delivery = load_config(path).delivery
    assert delivery.mta_sts.enabled and delivery.mta_sts.recheck == 1800.0
    assert delivery.mta_sts.port == 8443 and delivery.mta_sts.fetch_timeout == 20.0
    assert delivery.tls_reports.enabled and delivery.tls_reports.sender == "tlsrpt@example.com"
    assert delivery.tls_reports.send_after == 3600.0


def test_mistakes_are_reported_with_their_place(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("delivery:\n"
                    "  mta_sts: {enabled: maybe, fetch_timout: 5s}\n"
                    "  tls_reports:\n"
                    "    sender: reports\n"
                    "    send_after: 25h\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:2:" in text and "'delivery.mta_sts.enabled'" in text
    assert "unknown key 'fetch_timout' in 'delivery.mta_sts'" in text
    assert f"{path}:4:13: 'delivery.tls_reports.sender' must be an address" in text
    assert f"{path}:5:17: 'delivery.tls_reports.send_after' must be less than a day" in text
