"""The `priorities:` and `idempotency:` sections: defaults, overrides, file:line errors."""

from __future__ import annotations

from pathlib import Path

from gateway.config import load_config
from gateway.model import Priority
from gateway.scheduler.settings import DEFAULT_LANES, Lane
from tests.unit.test_config import ROOT, problems, write


def test_shipped_config_matches_the_built_in_defaults() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert cfg.priorities.of("booking") is Priority.CRITICAL
    assert cfg.priorities.of("cancellation") is Priority.HIGH
    assert cfg.priorities.of("transactional") is Priority.NORMAL
    assert cfg.priorities.of("marketing") is Priority.LOW
    assert cfg.priorities.of(None) is Priority.NORMAL
    assert cfg.delivery.priority_lanes == DEFAULT_LANES
    assert (cfg.idempotency.enabled, cfg.idempotency.window) == (True, 86400.0)


def test_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """\
priorities:
  default: low
  categories: {receipts: critical}
  lanes:
    low: {share: 25%, rate: 50/s}
    high: {share: 0.5}
idempotency: {window: 2h, header: X-Request-Id}
"""))
    assert cfg.priorities.of("receipts") is Priority.CRITICAL
    assert cfg.priorities.of("booking") is Priority.LOW  # the map given replaces the default
    lanes = cfg.delivery.priority_lanes
    assert lanes[Priority.LOW] == Lane(0.25, 50.0)
    assert lanes[Priority.HIGH] == Lane(0.5)
    assert lanes[Priority.CRITICAL] == DEFAULT_LANES[Priority.CRITICAL]
    assert (cfg.idempotency.window, cfg.idempotency.header) == (7200.0, "X-Request-Id")


def test_errors_point_at_file_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
priorities:
  categories: {booking: urgent}
  lanes:
    low: {share: 150%}
    urgent: {share: 10%}
idempotency: {window: 0s}
""")
    text = "\n".join(found)
    assert "config.yaml:2:25: 'urgent' is not a priority" in text
    assert "config.yaml:4:18: 'priorities.lanes.low.share': 150% must be more than 0" in text
    assert "config.yaml:5:13: unknown priority 'urgent'" in text
    assert "unknown key" not in text
    assert "config.yaml:6:23: 'idempotency.window' must be longer than zero" in text
