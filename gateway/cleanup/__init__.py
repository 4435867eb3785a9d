"""Cleanup: app mail repaired before it is signed, so that it leaves standards-clean
and verifiably signed (Postfix cleanup(8)). See stage.py."""

from __future__ import annotations

from gateway.cleanup.lines import MAX_LINE_LENGTH, has_long_line, replace_stray_cr_lf
from gateway.cleanup.mime import reencode
from gateway.cleanup.stage import Cleaned, Cleanup, is_refusal, seven_bit

__all__ = [
    "MAX_LINE_LENGTH",
    "Cleaned",
    "Cleanup",
    "has_long_line",
    "is_refusal",
    "reencode",
    "replace_stray_cr_lf",
    "seven_bit",
]
