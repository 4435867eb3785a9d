"""The `metrics:` section of config.yaml (gateway.metrics.queue samples on this interval)."""

from __future__ import annotations

from gateway.core.yamlnodes import Section

__all__ = ["parse_metrics"]


def parse_metrics(sec: Section) -> float:
    interval = sec.duration("queue_sample_interval", 10.0)
    if interval <= 0:
        sec.error("queue_sample_interval", "must be more than 0")
    sec.done()
    return interval
