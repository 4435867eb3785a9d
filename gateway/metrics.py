"""Prometheus exposition for GET /metrics on the admin listener.

A minimal stand-in: the metrics work (issue 6 §1) replaces this module with the
gateway's own metric declarations; the admin API only needs `exposition()`.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["exposition"]


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the default registry in the text format."""
    return generate_latest(), CONTENT_TYPE_LATEST
