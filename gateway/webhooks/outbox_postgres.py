"""The webhook outbox on PostgreSQL (several nodes): a cursor that never passes an
event committed late, and one node at a time sending each webhook.

Reading in an order no later commit can break
---------------------------------------------
`events.seq` (bigserial) is taken at INSERT and becomes visible at COMMIT. With
several writers — each node's event flusher, its intake workers, a CLI run — a
row with seq 100 can become visible after seq 101; a cursor that moved to 101
would never send 100. So each row also names the transaction that wrote it
(`xid`: `pg_current_xact_id()`, a column default, 64 bits, never wraps) and
the outbox is read in (xid, seq) order, only below a *horizon*: the oldest
transaction that may still be running in this database, as the read's own
snapshot has it (`pg_current_snapshot()`: its running xids, else its xmax).
Every transaction below the horizon had ended when the snapshot was taken, so
the rows below it can no longer change — the committed ones are all visible,
aborted ones never will be. A read takes up to a batch in (cursor, horizon);
the cursor moves to the last row taken, or, when the batch was not full, to
(horizon, 0). A row of a transaction at or above the horizon simply waits
until every older one ended. The cost: one more index entry per event, and a
read is one range scan of it (and a look at pg_stat_activity, below).

Transaction ids are the server's, not the database's: a snapshot lists the
running transactions of every database. One that pg_stat_activity shows
running in another database is left out of the horizon (its xid never names a
row here), so another application's long transaction on the same server does
not hold webhooks back. One it does not show (another role's, unless the
gateway's role has pg_read_all_stats; a prepared transaction) counts, to be
safe. Here, any transaction that has *written* something (read-only ones take
no xid) and stays open holds every webhook back until it ends: set
`idle_in_transaction_session_timeout`. A lease logs a warning when the horizon
has not moved for HELD_WARNING seconds while committed events wait above it.

Rejected: a plain cursor over `seq` (SQLite's: loses rows as above); `seq` and
a delay ("rows older than 5 s": a bet on how long a commit takes, lost under
load or a slow fsync); serialising writers (a lock held from nextval to
COMMIT: every node's event writes single-file, and one stalled writer stops
all); commit timestamps (`track_commit_timestamp`: a server setting to
require, and its order is not the order rows become visible in); a cursor per
writer (the writers — nodes, workers, CLI runs — come and go, each needing a
cursor per webhook and clean-up); a row per (event, webhook) deleted once
sent, taken with SKIP LOCKED (every event written once more per webhook, by
intake and delivery, which by design write nothing for webhooks).

One node per webhook: a session advisory lock
---------------------------------------------
Each node's sender for a webhook keeps a connection of its own (outside the
pool) and asks `pg_try_advisory_lock(OUTBOX_LOCK, <the webhook's lock_key>)`
on it every poll_interval until it gets it. The lock lives as long as that
session: a node that stops, crashes or is killed -9 loses it as soon as the
server sees the socket close, and the next node to ask takes over from the
cursor in `webhook_cursors`. A node cut off by the network loses it when the
server's keepalive gives up on it (~25 s, gateway.state.postgres). The
holder reads and moves its cursor over that same connection, so a holder that
lost its session cannot move the cursor: its next statement fails and it asks
for the lock again. A batch it POSTed meanwhile may be POSTed again by the new
holder (at-least-once; receivers drop duplicates by `id`).

The cursor is written with `synchronous_commit = off` on that session: a
server crash may forget its last moves (the events go again), never skip one,
and a batch costs no fsync.

Rejected: a lease row with an expiry that the holder renews. Failover would
wait out the lease instead of following the socket's close; the expiry needs
clocks that agree across nodes; the holder writes a row every few seconds. The
lock's price is a connection per node and webhook, and session pooling (not
PgBouncer's transaction mode) between the nodes and the server. Each
webhook's key is its own row's number, so two names never share a lock.

Security: webhook names come from config.yaml; they and every value are bound
parameters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.clock import Clock
from gateway.errors import StateUnavailable
from gateway.state.postgres import HORIZON, Conn, PostgresPool, is_unavailable
from gateway.webhooks.outbox import (
    CATEGORY_TAG,
    OutboxLease,
    Position,
    ReadResult,
    categorized,
    outbox_event,
)

__all__ = ["HELD_WARNING", "OUTBOX_LOCK", "PostgresOutbox"]

log = logging.getLogger(__name__)

T = TypeVar("T")
OUTBOX_LOCK = 0x67776862  # "gwhb": the advisory lock class of webhook leases
HELD_WARNING = 60.0  # seconds the horizon may stand still while events wait
_PENDING_CAP = 1_000_000  # the lag metric counts this far at most

_ENSURE = (
    "WITH new AS (INSERT INTO webhook_cursors (name, xid, seq, updated, holder)"
    " VALUES ($1, pg_snapshot_xmin(pg_current_snapshot()), 0, $2, '')"
    " ON CONFLICT (name) DO NOTHING RETURNING lock_key)"
    " SELECT lock_key FROM new UNION ALL"
    " SELECT lock_key FROM webhook_cursors WHERE name = $1 LIMIT 1")
_TAKE = ("UPDATE webhook_cursors c SET holder = $2, updated = $3 FROM"
         " (SELECT holder FROM webhook_cursors WHERE name = $1 FOR UPDATE) before"
         " WHERE c.name = $1 RETURNING c.xid, c.seq, before.holder")
_ADVANCE = ("UPDATE webhook_cursors SET xid = $2, seq = $3, updated = $4"
            " WHERE name = $1 AND (xid, seq) < ($2::xid8, $3::bigint)")
# One round trip: the horizon (computed once), whether committed rows wait above it (the
# newest xid: one index probe), and the batch below it with each event's category tag.
_READ = (
    f"WITH h AS MATERIALIZED ({HORIZON})"
    " SELECT h.horizon, coalesce((SELECT max(xid) FROM events) >= h.horizon, false) AS held,"
    " e.* FROM h LEFT JOIN LATERAL ("
    "  SELECT v.seq, v.time, v.type, v.queue_id, v.recipient, v.message_id, v.route, v.host,"
    "  v.reply_code, v.reply_enhanced, v.reply_text, v.detail, v.xid, t.value AS tag"
    "  FROM events v LEFT JOIN message_tags t ON t.queue_id = v.queue_id AND t.name = $5"
    "  WHERE (v.xid, v.seq) > ($1::xid8, $2::bigint) AND v.xid < h.horizon"
    "  AND v.type = ANY($3::text[]) ORDER BY v.xid, v.seq LIMIT $4) e ON true")


def node_name() -> str:
    """Who holds a lease, as `webhook_cursors.holder` shows it to an operator."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class PostgresOutbox:
    """The shared events table and webhook_cursors; a lease per webhook and node."""

    def __init__(self, pool: PostgresPool, clock: Clock, holder: str | None = None) -> None:
        self._pool = pool
        self._clock = clock
        self.holder = holder or node_name()

    async def open(self) -> None:
        pass  # a server that is down must not stop the start: leases connect when asked

    def lease(self, name: str) -> OutboxLease:
        return _PostgresLease(self._pool, self._clock, name, self.holder)

    def __repr__(self) -> str:
        return f"<PostgresOutbox {self._pool.where} holder={self.holder!r}>"


class _PostgresLease:
    def __init__(self, pool: PostgresPool, clock: Clock, name: str, holder: str) -> None:
        self._pool = pool
        self._clock = clock
        self.name = name
        self._holder = holder
        self._conn: Conn | None = None  # the session that holds (or asks for) the lock
        self.held = False
        self._standing_by = False  # logged once per stretch
        self._horizon = (0, 0.0)  # (last horizon seen, since when: clock)
        self._warned = False

    def __repr__(self) -> str:
        state = "HELD" if self.held else ("ASKING" if self._conn is not None else "IDLE")
        return f"<PostgresLease {self.name} {state} holder={self._holder!r}>"

    async def acquire(self, now: float) -> Position | None:
        async def take(c: Conn) -> Position | None:
            key = await c.fetchval(_ENSURE, self.name, now)
            if not await c.fetchval("SELECT pg_try_advisory_lock($1, $2)", OUTBOX_LOCK, key):
                await self._stand_by(c)
                return None
            xid, seq, before = await c.fetchrow(_TAKE, self.name, self._holder, now)
            self.held, self._standing_by = True, False
            log.info("webhook %s: sent from this node now, from %s (held before by %s)",
                     self.name, Position(int(xid), int(seq)), before or "nobody")
            return Position(int(xid), int(seq))
        return await self._on_session(take)

    async def _stand_by(self, c: Conn) -> None:
        if not self._standing_by:
            holder = await c.fetchval("SELECT holder FROM webhook_cursors WHERE name = $1",
                                      self.name)
            log.info("webhook %s: sent by %s; this node stands by", self.name,
                     holder or "another node")
            self._standing_by = True

    async def read(self, after: Position, types: tuple[str, ...], limit: int) -> ReadResult:
        rows = await self._on_session(lambda c: c.fetch(
            _READ, after.xid, after.seq, list(types), limit, CATEGORY_TAG))
        horizon, held = int(rows[0][0]), bool(rows[0][1])
        self._watch_horizon(horizon, held)
        events = [categorized(outbox_event(tuple(r)[2:14], xid=int(r[14])), r[15])
                  for r in rows if r[2] is not None]
        if len(events) >= limit:
            return ReadResult(events, events[-1].position)
        return ReadResult(events, max(after, Position(horizon, 0)))

    def _watch_horizon(self, horizon: int, held: bool) -> None:
        """Warn once when committed events have waited HELD_WARNING seconds behind a
        transaction that does not end."""
        now = self._clock.now()
        if horizon != self._horizon[0] or not held:
            self._horizon, self._warned = (horizon, now), False
            return
        if not self._warned and now - self._horizon[1] >= HELD_WARNING:
            self._warned = True
            log.warning("webhook %s: events wait behind transaction %d, open for %.0fs or"
                        " more on the PostgreSQL server (see pg_stat_activity.backend_xid);"
                        " they are sent when it ends", self.name, horizon,
                        now - self._horizon[1])

    async def advance(self, to: Position, now: float) -> None:
        await self._on_session(lambda c: c.execute(_ADVANCE, self.name, to.xid, to.seq, now))

    async def pending(self, after: Position) -> int:
        # On the pool: the lease's session may be busy with the sender's read.
        count = await self._pool.run(lambda c: c.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE (xid, seq) > ($1::xid8, $2)"
            " LIMIT $3) s", after.xid, after.seq, _PENDING_CAP))
        return int(count)

    async def release(self) -> None:
        """Close the session: the server drops the lock with it."""
        conn, self._conn, self.held = self._conn, None, False
        if conn is None:
            return
        try:
            await asyncio.wait_for(conn.close(), timeout=2.0)
        except Exception:  # busy (a cancelled read) or already broken: just drop it
            conn.terminate()

    async def _on_session(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """`fn` on the lease's session. Any failure ends the session — and the lock with
        it — so the sender asks again; a server that is away is StateUnavailable."""
        if self._conn is None:
            self._conn = await self._pool.connect({"synchronous_commit": "off"})
        try:
            return await fn(self._conn)
        except Exception as exc:
            conn: Any = self._conn
            self._conn, self.held = None, False
            conn.terminate()
            if is_unavailable(exc):
                raise StateUnavailable(f"webhook {self.name}: state database "
                                       f"{self._pool.where}: {type(exc).__name__}") from None
            raise
