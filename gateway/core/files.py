"""Paths named in configuration files: they must exist, and private ones must stay private.

Shared by the stages' settings (listener keys, `delivery.ca_file`, …).
"""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.core.yamlnodes import Section

__all__ = ["check_private_file", "existing_path"]


def existing_path(sec: Section, key: str, base: Path) -> Path | None:
    text = sec.opt_str(key)
    if text is None:
        return None
    path = base / text
    if not path.exists():
        sec.error(key, f"'{text}': no such file")
    return path


def check_private_file(sec: Section, key: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        sec.error(key, f"'{path}' is readable by other users: chmod 600 it")
