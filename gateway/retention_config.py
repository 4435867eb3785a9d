"""The `retention:` section of config.yaml → RetentionConfig (gateway/retention.py uses it).

Apart from gateway.retention, which needs the state store, so that reading the
configuration never imports the stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.yamlnodes import Section

__all__ = ["RetentionConfig", "parse_retention"]

DAY = 86400.0


@dataclass(frozen=True)
class RetentionConfig:
    events: float = 90 * DAY  # events older than this are purged
    purge_interval: float = 3600.0  # how often the purge runs
    erasure_key_file: Path | None = None  # None: <data_dir>/erasure.key


def parse_retention(sec: Section, base: Path) -> RetentionConfig:
    d = RetentionConfig()
    key_file = sec.opt_str("erasure_key_file")
    out = RetentionConfig(
        events=sec.duration("events", d.events),
        purge_interval=sec.duration("purge_interval", d.purge_interval),
        erasure_key_file=base / key_file if key_file else None,
    )
    if out.events < 3600:
        sec.error("events", "'retention.events' must be at least 1h")
    if out.purge_interval < 1:
        sec.error("purge_interval", "'retention.purge_interval' must be at least 1s")
    sec.done()
    return out
