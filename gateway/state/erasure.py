"""Removing one address from the state files, and purging old events (the SQL side).

An address is replaced, wherever it occurs in a text column, by its keyed
hash (gateway.state.address_hash): in events (recipient, sender in the detail,
remote replies quoting it), suppressions (the entry keeps holding, under the
hash), consent records and the audit log. Rate counters keyed by it and its
soft-bounce counts (bounces.db) are deleted (they only shape the next minutes
or days). `+tag` variants of the address
(`guest+booking@` for `guest@`) are the same person and go too.

Which columns of which tables hold addresses is one list (SCRUBBED), which the
PostgreSQL backend uses too (gateway.state.erasure_postgres). Rows are found
by a scan in SQLite (`LIKE`, in C) and rewritten in Python, in one short
write transaction per file. `secure_delete` makes SQLite overwrite
the old content with zeros instead of leaving it in free space, and a
TRUNCATE checkpoint then empties the WAL, so the address is gone from the
files' bytes, not only from query results.

Security: the address comes from an operator or the admin API; it is only
used as a bound parameter and in an escaped regular expression.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.policy.addresses import normalize_address
from gateway.state.audit import AUDIT_INSERT, audit_row

__all__ = ["SCRUBBED", "AddressMatcher", "ScrubbedTable", "checkpoint_file", "erase_files",
           "erase_node_counters", "purge_events", "scrub_bounces", "scrub_policy", "scrub_rates",
           "scrub_state"]

# Characters that, just before a match, make it the tail of a longer local part. "=" is
# left out on purpose: it separates a key from its value (rate counters, `to=` in logs).
_LOCAL_CHARS = r"A-Za-z0-9.!#$%&'*+/?^_`{|}~\-"


@dataclass(frozen=True)
class AddressMatcher:
    """Finds an address and its +tag variants in text, and names their hashes."""

    address: str  # normalized
    tokenize: Callable[[str], str]  # normalized address → its keyed hash

    @property
    def pattern(self) -> re.Pattern[str]:
        local, _, domain = self.address.rpartition("@")
        tag = "" if "+" in local else r"(?:\+[^@\s<>\"'(),;:]*)?"
        return re.compile(rf"(?<![{_LOCAL_CHARS}]){re.escape(local)}{tag}@{re.escape(domain)}"
                          r"(?![A-Za-z0-9\-]|\.[A-Za-z0-9])", re.IGNORECASE)

    @property
    def like(self) -> str:
        """A LIKE pattern every matching text fits (case-insensitive in SQLite for ASCII)."""
        local, _, domain = self.address.rpartition("@")
        return f"%{_like_escape(local)}%@{_like_escape(domain)}%"

    def scrub(self, text: str | None) -> str | None:
        if text is None:
            return None
        return self.pattern.sub(lambda m: self.tokenize(normalize_address(m.group(0))), text)

    def rewrite(self, values: tuple[object, ...]) -> tuple[object, ...] | None:
        """A row's scrubbed column values, or None when none of them changes (a LIKE
        match that is not the address: `myguest@` for `guest@`)."""
        new = tuple(self.scrub(v) if isinstance(v, str) else v for v in values)
        return None if new == values else new


@dataclass(frozen=True)
class ScrubbedTable:
    """A table that may hold addresses: its primary key and the columns to scrub."""

    name: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]


# Where addresses are kept (both backends; SQLite: the first two in state.db, the rest in
# policy.db). A suppression's target is scrubbed too: the entry holds under the hash.
SCRUBBED = (
    ScrubbedTable("events", ("seq",), ("recipient", "message_id", "route", "host",
                                       "reply_text", "detail")),
    ScrubbedTable("message_tags", ("queue_id", "name"), ("value",)),
    ScrubbedTable("suppressions", ("target", "scope"), ("target", "note", "added_by")),
    ScrubbedTable("consent", ("seq",), ("address", "source")),
    ScrubbedTable("audit", ("seq",), ("actor", "detail")),
)
_TABLES = {t.name: t for t in SCRUBBED}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _scrub_table(conn: sqlite3.Connection, matcher: AddressMatcher, name: str) -> int:
    """Rewrite the matching rows of one table; return how many changed. A rewritten key
    that meets an existing row replaces it (same entry)."""
    if not _has_table(conn, name):
        return 0
    table = _TABLES[name]
    keys, columns = table.keys, table.columns
    where = " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns)
    rows = conn.execute(f"SELECT {', '.join(keys + columns)} FROM {name} WHERE {where}",
                        (matcher.like,) * len(columns)).fetchall()
    width = len(keys)
    sets = ", ".join(f"{c} = ?" for c in columns)
    match = " AND ".join(f"{k} = ?" for k in keys)
    changed = 0
    for row in rows:
        new = matcher.rewrite(tuple(row[width:]))
        if new is not None:
            conn.execute(f"UPDATE OR REPLACE {name} SET {sets} WHERE {match}",
                         (*new, *row[:width]))
            changed += 1
    return changed


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (name,)).fetchone()
    return row is not None


def scrub_state(conn: sqlite3.Connection, matcher: AddressMatcher) -> dict[str, int]:
    """state.db: events (and message tags, where that table exists)."""
    conn.execute("PRAGMA secure_delete = ON")
    out = {"events": _scrub_table(conn, matcher, "events")}
    if _has_table(conn, "message_tags"):
        out["message_tags"] = _scrub_table(conn, matcher, "message_tags")
    return out


def scrub_policy(conn: sqlite3.Connection, matcher: AddressMatcher) -> dict[str, int]:
    """policy.db: suppressions (kept, under the hash), consent records, audit log."""
    conn.execute("PRAGMA secure_delete = ON")
    return {name: _scrub_table(conn, matcher, name)
            for name in ("suppressions", "consent", "audit")}


def scrub_rates(conn: sqlite3.Connection, matcher: AddressMatcher) -> int:
    """ratelimits.db: counters keyed by the address are deleted."""
    conn.execute("PRAGMA secure_delete = ON")
    if not _has_table(conn, "rate_counters"):
        return 0
    keys = [k for (k,) in conn.execute("SELECT key FROM rate_counters WHERE key LIKE ?"
                                       " ESCAPE '\\'", (matcher.like,))
            if matcher.pattern.search(k)]
    conn.executemany("DELETE FROM rate_counters WHERE key = ?", [(k,) for k in keys])
    return len(keys)


def scrub_bounces(conn: sqlite3.Connection, matcher: AddressMatcher) -> int:
    """bounces.db: the address's soft-bounce counts are deleted (they only count towards
    a suppression within a window); processed-message keys name no address."""
    conn.execute("PRAGMA secure_delete = ON")
    if not _has_table(conn, "soft_bounces"):
        return 0
    rows = [(a, q) for a, q in conn.execute(
        "SELECT address, queue_id FROM soft_bounces WHERE address LIKE ? ESCAPE '\\'",
        (matcher.like,)) if matcher.pattern.search(a)]
    conn.executemany("DELETE FROM soft_bounces WHERE address = ? AND queue_id = ?", rows)
    return len(rows)


def erase_files(files: tuple[Path, Path, Path, Path], matcher: AddressMatcher, actor: str,
                now: float) -> dict[str, int]:
    """Scrub the address from (state.db, policy.db, ratelimits.db, bounces.db), each in
    one write transaction of its own connection (blocking: run it in a thread). The
    audit row of the erasure, under the hash, is written with the policy changes."""
    events_path, policy_path, rates_path, bounces_path = files
    counts = _in_file(events_path, lambda c: scrub_state(c, matcher))
    counts.update(erase_node_counters((rates_path, bounces_path), matcher))
    token = matcher.tokenize(matcher.address)

    def policy(c: sqlite3.Connection) -> dict[str, int]:
        changed = scrub_policy(c, matcher)
        if _has_table(c, "audit"):
            c.execute(AUDIT_INSERT, audit_row(now, actor, "erase", {
                "address": token, **counts, **changed}))
        return changed
    counts.update(_in_file(policy_path, policy))
    return counts


def erase_node_counters(files: tuple[Path, Path], matcher: AddressMatcher) -> dict[str, int]:
    """Delete the address's counters from (ratelimits.db, bounces.db): files of this node
    whichever backend holds the shared state (blocking)."""
    rates_path, bounces_path = files
    return {
        "rate_counters": _in_file(rates_path, lambda c: {"n": scrub_rates(c, matcher)}
                                  ).get("n", 0),
        "soft_bounces": _in_file(bounces_path,
                                 lambda c: {"n": scrub_bounces(c, matcher)}).get("n", 0),
    }


def _in_file(path: Path, fn: Callable[[sqlite3.Connection], dict[str, int]]
             ) -> dict[str, int]:
    if not path.is_file():  # never created: nothing stored in it
        return {}
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()


def checkpoint_file(path: Path) -> bool:
    """Copy the WAL into the database file and empty it; False if a reader in another
    process kept it from finishing. Blocking."""
    if not path.is_file():
        return True
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return row is not None and int(row[0]) == 0
    finally:
        conn.close()


def purge_events(conn: sqlite3.Connection, before: float, limit: int) -> int:
    """Delete up to `limit` events older than `before` (the oldest first), and the tags
    of messages left without events; return how many events went."""
    queue_ids = [str(q) for (q,) in conn.execute(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE time < ?"
        " ORDER BY time LIMIT ?) RETURNING queue_id", (before, limit))]
    if queue_ids and _has_table(conn, "message_tags"):
        conn.executemany(
            "DELETE FROM message_tags WHERE queue_id = ?"
            " AND NOT EXISTS (SELECT 1 FROM events WHERE events.queue_id = ?)",
            [(q, q) for q in set(queue_ids)])
    return len(queue_ids)
