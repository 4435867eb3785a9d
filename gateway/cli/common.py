"""What every verb group of the command line shares: the default config path."""

from __future__ import annotations

import argparse
import os

__all__ = ["DEFAULT_CONFIG", "with_config"]

DEFAULT_CONFIG = os.environ.get("SMTP_GATEWAY_CONFIG", "config.yaml")


def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a verb the `-c/--config` option (default: $SMTP_GATEWAY_CONFIG or config.yaml)."""
    sp.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    return sp
