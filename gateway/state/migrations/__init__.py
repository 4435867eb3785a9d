"""Versioned schema migrations for the state store, one numbered list per database.

Each database records what it has applied in `schema_migrations` (version,
name, time). Migrations only ever get appended to a list: a new table or
column is a new `Migration(next number, ...)`, never an edit of an old one.

- SQLite (embedded, one node): state.db and policy.db are migrated when they
  are opened, as before; there is only this gateway to agree with.
- PostgreSQL (shared by every node): `smtp-gateway db migrate` applies them,
  under an advisory lock so two nodes cannot migrate at once. A node does not
  migrate by itself at start: during a rolling upgrade the old nodes still run
  against the schema.

Either way a gateway refuses to run against a schema newer than it knows
(a newer gateway migrated it; this one might misread it) — SchemaError, with
what to do — and a PostgreSQL node also refuses an older one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import ConfigError, ConfigProblem

__all__ = ["MIGRATIONS_TABLE", "Migration", "SchemaError", "check_numbering", "check_version",
           "latest",
           "migrate_sqlite", "sqlite_version"]

MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


class SchemaError(ConfigError):
    """The database's schema is not the one this gateway runs with: refuse to start."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__([ConfigProblem(where, 0, 0, message)])


def latest(migrations: Sequence[Migration]) -> int:
    return migrations[-1].version if migrations else 0


def check_version(where: str, found: int, migrations: Sequence[Migration], *,
                  older_ok: bool) -> None:
    known = latest(migrations)
    if found > known:
        raise SchemaError(where, f"schema version {found} is newer than this gateway knows "
                          f"({known}): a newer smtp-gateway migrated it. Run that version "
                          "(or restore the database from before the upgrade)")
    if found < known and not older_ok:
        raise SchemaError(where, f"schema version {found}, this gateway needs {known}: "
                          "run `smtp-gateway db migrate`")


def check_numbering(migrations: Sequence[Migration]) -> None:
    """Versions are 1, 2, 3, … in order (a test runs this over every list)."""
    for i, m in enumerate(migrations, start=1):
        if m.version != i:
            raise ValueError(f"migration {m.name!r} has version {m.version}, expected {i}")


_CREATE_SQLITE = (f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY,"
                  " name TEXT NOT NULL, applied REAL NOT NULL)")


def sqlite_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (MIGRATIONS_TABLE,)).fetchone()
    if exists is None:
        return 0
    row = conn.execute(f"SELECT max(version) FROM {MIGRATIONS_TABLE}").fetchone()
    return int(row[0] or 0)


def migrate_sqlite(conn: sqlite3.Connection, where: str,
                   migrations: Sequence[Migration]) -> list[Migration]:
    """Apply what `conn`'s database lacks, in one transaction; return what was applied.

    Version 1 of each list uses CREATE … IF NOT EXISTS, so a database made before
    migrations existed is adopted as version 1.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_CREATE_SQLITE)
        found = sqlite_version(conn)
        check_version(where, found, migrations, older_ok=True)
        applied = [m for m in migrations if m.version > found]
        for m in applied:
            for statement in m.statements:
                conn.execute(statement)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?, ?)",
                         (m.version, m.name, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied
