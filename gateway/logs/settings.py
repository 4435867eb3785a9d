"""The `logging:` section of config.yaml → LogConfig (gateway.logs formats with it)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.yamlnodes import Section

__all__ = ["LogConfig", "parse_logging"]


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"  # text | json | logfmt
    redact_addresses: str = "none"  # none | partial | hash


def parse_logging(sec: Section) -> LogConfig:
    cfg = LogConfig(sec.get_str("format", "text", ("text", "json", "logfmt")),
                    sec.get_str("redact_addresses", "none", ("none", "partial", "hash")))
    sec.done()
    return cfg
