"""Event counts on PostgreSQL: the same roll-up and overview as gateway.state.counts
(SQLite), on the shared database, so that every node's console shows the cluster's
figures.

What differs is the cursor. `events.seq` is taken at INSERT and becomes visible at
COMMIT, so with several writers (each node's event flusher, a CLI run) seq 100 can
become visible after seq 101; a `seq` cursor that moved to 101 would never count
100. The roll-up therefore reads as the webhook outbox does
(gateway.webhooks.outbox_postgres): in (xid, seq) order, only below the horizon
(gateway.state.postgres.HORIZON), and the cursor is an (xid, seq) position — the
last row taken, or (horizon, 0) when a batch was not full. A long-open writing
transaction holds the counts back until it ends; it never makes them skip or count
an event twice.

Several nodes roll up into the same tables: each batch takes a transaction-level
advisory lock first, so batches run one at a time across the cluster, and each reads
the cursor the previous one committed (READ COMMITTED: a statement's snapshot is
taken after the lock was granted). The counts and the cursor move in one
transaction, so a node killed mid-batch leaves neither.

Events written before migration 4 have no xid and are never counted (they predate
the console).
"""

from __future__ import annotations

from gateway.state.counts import (
    BUCKET,
    CATEGORY_TAG,
    DOMAIN_BUCKET,
    ROLLUP_BATCH,
    CountRow,
    Overview,
    rollup_rows,
)
from gateway.state.postgres import HORIZON, Conn, PostgresPool

__all__ = ["PostgresEventCounts"]

ROLLUP_LOCK = 0x67776374  # "gwct": the advisory lock class of the roll-up
_CURSOR = "counts"

# One round trip: the horizon, and up to $3 events above the cursor and below it, each
# with its category tag and, for a delivery, when its message was accepted.
_SELECT_NEW = (
    f"WITH h AS MATERIALIZED ({HORIZON})"
    " SELECT h.horizon, e.* FROM h LEFT JOIN LATERAL ("
    "  SELECT v.seq, v.time, v.type, v.recipient, COALESCE(v.route, ''), v.reply_code,"
    "  v.reply_enhanced, v.detail, COALESCE(t.value, ''),"
    "  CASE WHEN v.type = 'delivered' THEN (SELECT MIN(a.time) FROM events a"
    "   WHERE a.queue_id = v.queue_id AND a.type = 'accepted') END, COALESCE(v.host, ''),"
    "  v.xid"
    "  FROM events v LEFT JOIN message_tags t ON t.queue_id = v.queue_id AND t.name = $4"
    "  WHERE (v.xid, v.seq) > ($1::xid8, $2::bigint) AND v.xid < h.horizon"
    "  ORDER BY v.xid, v.seq LIMIT $3) e ON true")
_UPSERT_EVENTS = (
    "INSERT INTO event_counts (bucket, type, category, route, reason, n)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::bigint[]) ON CONFLICT (bucket, type, category, route, reason)"
    " DO UPDATE SET n = event_counts.n + excluded.n")
_UPSERT_DOMAINS = (
    "INSERT INTO domain_counts (bucket, domain, type, n)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
    " ON CONFLICT (bucket, domain, type) DO UPDATE SET n = domain_counts.n + excluded.n")
_UPSERT_LATENCY = (
    "INSERT INTO latency_counts (bucket, le, n)"
    " SELECT * FROM unnest($1::bigint[], $2::float8[], $3::bigint[])"
    " ON CONFLICT (bucket, le) DO UPDATE SET n = latency_counts.n + excluded.n")
_UPSERT_HOSTS = (
    "INSERT INTO host_counts (bucket, route, host, type, n)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])"
    " ON CONFLICT (bucket, route, host, type) DO UPDATE SET n = host_counts.n + excluded.n")
_ADVANCE = (
    "INSERT INTO rollup_cursor (name, xid, seq) VALUES ($1, $2::xid8, $3)"
    " ON CONFLICT (name) DO UPDATE SET xid = excluded.xid, seq = excluded.seq"
    " WHERE (rollup_cursor.xid, rollup_cursor.seq) < (excluded.xid, excluded.seq)")


def _columns(rows: list[tuple[object, ...]], width: int) -> list[list[object]]:
    """unnest()'s arrays: one list per column (one statement per table, not per row)."""
    return [[r[i] for r in rows] for i in range(width)]


async def _rollup_batch(c: Conn, limit: int) -> int:
    # No JIT: the planner prices the batch's per-delivery subquery high enough to compile
    # it, which took ~0.4 s a batch — forty times the read itself — nothing new or not.
    await c.execute("SET LOCAL jit = off")
    await c.execute("SELECT pg_advisory_xact_lock($1)", ROLLUP_LOCK)
    cursor = await c.fetchrow("SELECT xid, seq FROM rollup_cursor WHERE name = $1", _CURSOR)
    xid, seq = (int(cursor[0]), int(cursor[1])) if cursor else (0, 0)
    rows = await c.fetch(_SELECT_NEW, xid, seq, limit, CATEGORY_TAG)
    horizon = int(rows[0][0])
    taken = [tuple(r)[1:] for r in rows if r[1] is not None]
    if len(taken) >= limit:
        xid, seq = int(taken[-1][-1]), int(taken[-1][0])
    elif horizon > xid:
        xid, seq = horizon, 0
    if taken:
        batch = rollup_rows(t[:-1] for t in taken)
        for sql, counts, width in ((_UPSERT_EVENTS, batch.events, 6),
                                   (_UPSERT_DOMAINS, batch.domains, 4),
                                   (_UPSERT_LATENCY, batch.latency, 3),
                                   (_UPSERT_HOSTS, batch.hosts, 5)):
            await c.execute(sql, *_columns([(*k, n) for k, n in counts.items()], width))
    await c.execute(_ADVANCE, _CURSOR, xid, seq)
    return len(taken)


async def _overview(c: Conn, since: float) -> Overview:
    first = int(since // BUCKET * BUCKET)
    out = Overview(since)
    for kind, category, route, reason, n in await c.fetch(
            "SELECT type, category, route, reason, SUM(n) FROM event_counts"
            " WHERE bucket >= $1 GROUP BY 1, 2, 3, 4", first):
        out.rows.append(CountRow(kind, category, route, reason, int(n)))
    for bucket, kind, n in await c.fetch(
            "SELECT bucket, type, SUM(n) FROM event_counts WHERE bucket >= $1"
            " GROUP BY 1, 2", first):
        out.series.setdefault(kind, {})[int(bucket)] = int(n)
    for domain, kind, n in await c.fetch(
            "SELECT domain, type, SUM(n) FROM domain_counts WHERE bucket >= $1 GROUP BY 1, 2",
            int(since // DOMAIN_BUCKET * DOMAIN_BUCKET)):
        out.domains.setdefault(domain, {})[kind] = int(n)
    for le, n in await c.fetch(
            "SELECT le, SUM(n) FROM latency_counts WHERE bucket >= $1 GROUP BY 1", first):
        out.latency[float(le)] = int(n)
    for route, host, kind, n in await c.fetch(
            "SELECT route, host, type, SUM(n) FROM host_counts WHERE bucket >= $1"
            " GROUP BY 1, 2, 3", int(since // DOMAIN_BUCKET * DOMAIN_BUCKET)):
        out.hosts.setdefault((route, host), {})[kind] = int(n)
    return out


class PostgresEventCounts:
    """The roll-up and the overview query on the shared database (EventCounts' API)."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool

    async def rollup(self, limit: int = ROLLUP_BATCH) -> int:
        """Add the events committed below the horizon since the last roll-up (by any
        node); the number added, in transactions of at most `limit` events."""
        total = 0
        while True:
            done = await self._pool.run(lambda c: _rollup_batch(c, limit), transaction=True)
            total += done
            if done < limit:
                return total

    async def overview(self, since: float) -> Overview:
        return await self._pool.run(lambda c: _overview(c, since))

    async def close(self) -> None:
        pass  # the pool is the StateStore's

    def __repr__(self) -> str:
        return f"<PostgresEventCounts {self._pool.where}>"
