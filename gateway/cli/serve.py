"""`smtp-gateway serve | check-config` (and the internal `intake-worker`): run the gateway,
or prove that its configuration loads (Postfix's `postfix start` and `postfix check`).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.policy.rules_file import load_policies

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    s = with_config(sub.add_parser("serve", help="run the gateway"))
    s.set_defaults(func=_serve)
    # Started by `serve` for intake_workers > 1; not for people to run.
    w = with_config(sub.add_parser("intake-worker"))
    w.add_argument("--ports", default="", help="listener=port,... as bound by the master")
    w.set_defaults(func=_intake_worker)
    s = with_config(sub.add_parser("check-config", help="validate the configuration"))
    s.set_defaults(func=_check_config)


def _serve(args: argparse.Namespace) -> int:
    from gateway.supervisor import serve

    _setup_logging(load_config(args.config))
    return _run(serve(Path(args.config)))


def _intake_worker(args: argparse.Namespace) -> int:
    from gateway.intake.worker import parse_ports, run_worker

    _setup_logging(load_config(args.config))
    return _run(run_worker(Path(args.config), parse_ports(args.ports)))


def _setup_logging(config: Config) -> None:
    from gateway.logs import setup_logging

    setup_logging(config.log_level, config.logging, config.data_dir, config.node_name)


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # raises ConfigError → main() prints, exit 1
    print(f"{config.path}: ok ({len(config.listeners)} listeners, {len(config.routes)} routes)")
    policies = load_policies(config.policies_dir) if config.policies_dir else None
    if policies is None:
        print(f"{config.policies_dir}: no policy files (policies off)")
    else:
        print(f"{config.policies_dir}: ok ({', '.join(policies.files)})")
    return 0
