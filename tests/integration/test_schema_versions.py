"""Schema versions from the command line: `db migrate` / `db status` on the SQLite
files, and `serve` refusing a state.db that a newer gateway migrated."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.state.migrations import MIGRATIONS_TABLE
from tests.fixtures.gateway import write_config


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60)


def test_migrate_status_and_refusing_a_newer_schema(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, 1))
    var = tmp_path / "var"
    status = gateway("db", "status", "-c", config)
    assert status.returncode == 1 and "needs `db migrate`" in status.stdout
    done = gateway("db", "migrate", "-c", config)
    assert done.returncode == 0, done.stderr
    assert (f"{var / 'state.db'}: version 0 -> 5 (1 events, 2 webhook cursors, "
            "3 message_tags, 4 event counts, 5 events by recipient, host counts)"
            in done.stdout)
    assert (f"{var / 'policy.db'}: version 0 -> 2 (1 suppressions, consent, audit, "
            "2 consent purposes)" in done.stdout)
    assert (f"{var / 'tls.db'}: version 0 -> 1 (1 mta-sts policies, tls report counts)"
            in done.stdout)
    assert "up to date" in gateway("db", "migrate", "-c", config).stdout
    assert gateway("db", "status", "-c", config).returncode == 0
    with sqlite3.connect(var / "policy.db") as conn:
        conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (3, 'from the future', 0)")
    served = gateway("serve", "-c", config)
    assert served.returncode == 1
    assert (f"{var / 'policy.db'}: schema version 3 is newer than this gateway knows (2)"
            in served.stderr)
    assert "newer than this gateway" in gateway("db", "status", "-c", config).stdout
