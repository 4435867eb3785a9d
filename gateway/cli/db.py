"""`smtp-gateway db migrate|status`: the state store's schema versions.

    db status -c CONFIG    each database: its schema version and this gateway's
    db migrate -c CONFIG   apply what is missing (PostgreSQL: under an advisory
                           lock, so run it from any one node; SQLite files are
                           also migrated when the gateway opens them)

Output names databases by path or redacted DSN, never with a password.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from gateway.config import load_config
from gateway.state.migrations import latest, sqlite_version
from gateway.state.store import open_state

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    d = sub.add_parser("db", help="state store schema: status, migrate")
    dsub = d.add_subparsers(metavar="ACTION")
    with_config(dsub.add_parser("migrate", help="apply missing schema migrations")
                ).set_defaults(func=_migrate)
    with_config(dsub.add_parser("status", help="schema version of each database")
                ).set_defaults(func=_status)


def _migrate(args: argparse.Namespace) -> int:
    config = load_config(args.config, read_keys=False)

    async def go() -> int:
        state = open_state(config)
        try:
            results = await state.migrate()
        finally:
            await state.rate_counters.close()
            if state.postgres is not None:
                await state.postgres.close()
        for where, found, applied in results:
            if applied:
                names = ", ".join(f"{m.version} {m.name}" for m in applied)
                print(f"{where}: version {found} -> {applied[-1].version} ({names})")
            else:
                print(f"{where}: version {found}, up to date")
        return 0
    return asyncio.run(go())


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config, read_keys=False)

    async def go() -> int:
        state = open_state(config)
        behind = False
        try:
            if state.postgres is not None:
                found, known = await state.postgres.version()
                rows = [(state.postgres.where, found, known)]
            else:
                rows = [(str(path), await asyncio.to_thread(_sqlite_version, path), latest(m))
                        for path, m in state.sqlite_files()]
        finally:
            if state.postgres is not None:
                await state.postgres.close()
        for where, found, known in rows:
            note = "up to date" if found == known else (
                "newer than this gateway" if found > known else "needs `db migrate`")
            behind = behind or found != known
            print(f"{where}: version {found} (this gateway: {known}) {note}")
        return 1 if behind else 0
    return asyncio.run(go())


def _sqlite_version(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sqlite_version(conn)
    finally:
        conn.close()
