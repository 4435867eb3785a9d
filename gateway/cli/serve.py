"""`smtp-gateway serve | check-config` (and the internal `intake-worker`): run the gateway,
or prove that its configuration loads (Postfix's `postfix start` and `postfix check`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.preflight import preflight

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

    # The checks check-config makes, before anything (logging included) touches data_dir:
    # a refusal here is the same lines, printed by main(), exit status 1.
    checked = preflight(args.config)
    _setup_logging(checked.config)
    status = _run(serve(checked.config))
    _exit_if_threads_linger(status)
    return status


def _intake_worker(args: argparse.Namespace) -> int:
    from gateway.intake.worker import parse_ports, run_worker

    try:
        ports = parse_ports(args.ports)
    except ValueError as exc:
        print(f"smtp-gateway intake-worker: {exc}", file=sys.stderr)
        return 2
    _setup_logging(load_config(args.config))
    return _run(run_worker(Path(args.config), ports))


def _setup_logging(config: Config) -> None:
    from gateway.logs import setup_logging

    setup_logging(config.log_level, config.logging, config.data_dir, config.node_name)


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _exit_if_threads_linger(status: int) -> None:
    """A failed start closes what it opened (supervisor.serve); should a thread still
    run, the interpreter would wait for it at exit and the process would neither
    serve nor end, so systemd would never restart it. End it now instead."""
    if status == 0:
        return
    lingering = [t.name for t in threading.enumerate()
                 if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if lingering:
        print(f"smtp-gateway: exiting with threads still running: {', '.join(lingering)}",
              file=sys.stderr)
        sys.stderr.flush()
        os._exit(status)


def _check_config(args: argparse.Namespace) -> int:
    checked = preflight(args.config)  # raises ConfigError → main() prints, exit 1
    config, policies = checked.config, checked.policies
    print(f"{config.path}: ok ({len(config.listeners)} listeners, {len(config.routes)} routes)")
    if policies is None:
        print(f"{config.policies_dir}: no policy files (policies off)")
    else:
        print(f"{config.policies_dir}: ok ({', '.join(policies.files)})")
    return 0
