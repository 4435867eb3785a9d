"""`smtp-gateway erase ADDRESS`: GDPR erasure (a thin layer over gateway.state.retention)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable

from gateway.config import load_config
from gateway.state.retention import ErasureReport, erase_address
from gateway.state.store import open_state

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    er = with_config(sub.add_parser(
        "erase", help="remove an address from events, consent and audit (GDPR erasure); "
        "its suppressions stay in force under a keyed hash"))
    er.add_argument("address")
    er.add_argument("--by", help="who asks, for the audit log (default: cli:<login name>)")
    er.add_argument("--json", action="store_true")
    er.set_defaults(func=_erase)


def _erase(args: argparse.Namespace) -> int:
    config = load_config(args.config, read_keys=False)
    actor = args.by or f"cli:{getpass.getuser()}"

    async def go() -> ErasureReport:
        state = open_state(config)
        await state.open()
        try:
            return await erase_address(state, args.address, actor)
        finally:
            await state.close()

    try:
        report = asyncio.run(go())
    except ValueError as exc:
        print(f"erase: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
        return 0
    print(f"erased; the address is now {report.token}")
    for table, count in sorted(report.changed.items()):
        print(f"  {table}: {count} rows")
    if not report.checkpointed:
        print("  (a database was busy: the old bytes go at its next checkpoint)")
    return 0
