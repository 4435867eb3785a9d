"""Erasure and the retention purge on the shared PostgreSQL state database (the SQLite
side: gateway.state.erasure; the callers: gateway.state.retention).

Erasure rewrites, in one transaction, every row of the SCRUBBED tables in
which the address (or a +tag variant) occurs — found with ILIKE, checked and
rewritten by the same AddressMatcher as on SQLite — and writes the `erase`
audit row with it; a suppression keeps holding under the hash on every node.
The address's soft-bounce counts (soft_bounces, shared since migration 3) are
deleted, as on SQLite: they only count towards a suppression within a window.
That needs every node to hash with the same key: the key's fingerprint is
kept in `erasure_key` (the first node or erase to come stores it), and a node
or an erase with another key is refused (`check_erasure_key`).

Then each changed table is vacuumed (with index clean-up), so the old row
versions leave the table and its indexes. PostgreSQL has no secure_delete:
the freed bytes can stay in pages' free space until reused, and the old values
are in the WAL (and its archive, and backups) until those are recycled. The
README says so.

The purge deletes events older than the cut-off in bounded batches, each in a
short transaction under a transaction-level advisory lock: while one node
purges, another's run ends at once (idempotent either way; the lock keeps two
nodes from racing over the same rows and over a message's tags).

Security: the address comes from an operator or the admin API; it is only
used as a bound parameter (an escaped pattern) and in an escaped regex.
"""

from __future__ import annotations

import logging

from gateway.errors import ConfigError, ConfigProblem
from gateway.state.address_hash import AddressHasher
from gateway.state.audit import audit_row
from gateway.state.erasure import SCRUBBED, AddressMatcher, ScrubbedTable
from gateway.state.postgres import Conn, PostgresPool
from gateway.state.postgres_stores import _AUDIT

__all__ = ["check_erasure_key", "erase_in_postgres", "purge_events_in_postgres",
           "vacuum_tables"]

log = logging.getLogger(__name__)

_PURGE_LOCK = 0x736D7470_7067  # "smtppg": one purging node at a time
_DELETE_OLD = ("DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE time < $1"
               " ORDER BY time LIMIT $2) RETURNING queue_id")
_DELETE_ORPHAN_TAGS = ("DELETE FROM message_tags t WHERE t.queue_id = ANY($1::text[])"
                       " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.queue_id = t.queue_id)")


async def purge_events_in_postgres(pool: PostgresPool, before: float, limit: int) -> int:
    """Delete up to `limit` events older than `before` (the oldest first), and the tags
    of messages left without events; 0 if another node is purging now."""
    async def run(c: Conn) -> int:
        if not await c.fetchval("SELECT pg_try_advisory_xact_lock($1)", _PURGE_LOCK):
            return 0
        rows = await c.fetch(_DELETE_OLD, before, limit)
        if rows:
            await c.execute(_DELETE_ORPHAN_TAGS, sorted({str(r[0]) for r in rows}))
        return len(rows)
    return await pool.run(run, transaction=True)


async def check_erasure_key(c: Conn, hasher: AddressHasher, now: float) -> None:
    """Store the key's fingerprint if none is stored yet; ConfigError if another is."""
    mine = hasher.fingerprint()
    stored = await c.fetchval(
        "WITH new AS (INSERT INTO erasure_key (fingerprint, created) VALUES ($1, $2)"
        " ON CONFLICT (one) DO NOTHING RETURNING fingerprint)"
        " SELECT fingerprint FROM new UNION ALL SELECT fingerprint FROM erasure_key LIMIT 1",
        mine, now)
    if stored != mine:
        raise ConfigError([ConfigProblem(str(hasher.path), 0, 0, (
            "this erasure key is not the one the other nodes sharing the state database "
            f"use (fingerprint {mine}, theirs {stored}): copy their key file here, or an "
            "erased address that is suppressed could be mailed from this node"))])


async def erase_in_postgres(pool: PostgresPool, hasher: AddressHasher,
                            matcher: AddressMatcher, actor: str, now: float,
                            node_counts: dict[str, int]) -> dict[str, int]:
    """Scrub the address from every SCRUBBED table, with the audit row (which also
    counts `node_counts`: this node's files), in one transaction; return the rows
    changed per table."""
    token = matcher.tokenize(matcher.address)

    async def run(c: Conn) -> dict[str, int]:
        await check_erasure_key(c, hasher, now)
        changed = {t.name: await _scrub(c, matcher, t) for t in SCRUBBED}
        # A node's bounces.db may still hold counts from before it used PostgreSQL.
        changed["soft_bounces"] = (await _delete_soft_bounces(c, matcher)
                                   + node_counts.get("soft_bounces", 0))
        await c.execute(_AUDIT, *audit_row(now, actor, "erase", {
            "address": token, **node_counts, **changed}))
        return changed
    return await pool.run(run, transaction=True)


async def _scrub(c: Conn, matcher: AddressMatcher, table: ScrubbedTable) -> int:
    keys, columns = table.keys, table.columns
    where = " OR ".join(f"{col} ILIKE $1" for col in columns)
    rows = await c.fetch(f"SELECT {', '.join(keys + columns)} FROM {table.name}"
                         f" WHERE {where}", matcher.like)
    width = len(keys)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(columns, start=1))
    match = " AND ".join(f"{k} = ${i}" for i, k in enumerate(keys, start=len(columns) + 1))
    at_key = " AND ".join(f"{k} = ${i}" for i, k in enumerate(keys, start=1))
    changed = 0
    for row in rows:
        old_key, values = tuple(row)[:width], tuple(row)[width:]
        new = matcher.rewrite(values)
        if new is None:
            continue
        new_key = _new_key(table, old_key, new)
        if new_key != old_key:  # a hashed entry may be there already: this one replaces it
            await c.execute(f"DELETE FROM {table.name} WHERE {at_key}", *new_key)
        await c.execute(f"UPDATE {table.name} SET {sets} WHERE {match}", *new, *old_key)
        changed += 1
    return changed


async def _delete_soft_bounces(c: Conn, matcher: AddressMatcher) -> int:
    rows = await c.fetch("SELECT address, queue_id FROM soft_bounces WHERE address ILIKE $1",
                         matcher.like)
    gone = [(r[0], r[1]) for r in rows if matcher.pattern.search(r[0])]
    await c.executemany("DELETE FROM soft_bounces WHERE address = $1 AND queue_id = $2", gone)
    return len(gone)


def _new_key(table: ScrubbedTable, old_key: tuple[object, ...],
             new: tuple[object, ...]) -> tuple[object, ...]:
    """The row's primary key after the rewrite (a scrubbed column may be part of it)."""
    values = dict(zip(table.columns, new, strict=True))
    return tuple(values.get(k, old) for k, old in zip(table.keys, old_key, strict=True))


async def vacuum_tables(pool: PostgresPool, names: list[str]) -> bool:
    """VACUUM the tables an erasure changed, so the old row versions leave them and
    their indexes; False (logged) if one could not be vacuumed now."""
    done = True
    for name in names:
        async def vacuum(c: Conn, table: str = name) -> None:
            await c.execute(f"VACUUM (INDEX_CLEANUP ON) {table}")
        try:
            await pool.run(vacuum)
        except Exception as exc:  # e.g. the server went away: autovacuum gets it later
            log.warning("erase: VACUUM %s failed (%s); autovacuum removes the old row"
                        " versions later", name, type(exc).__name__)
            done = False
    return done
