"""Event counts, rolled up from the events as they are written, so that the console's
overview of a day or a week reads a few thousand rows instead of scanning a
million events (Postfix's pflogsumm reads the whole log; KumoMTA keeps counters).

`EventCounts.rollup()` reads the events written since its cursor (in `seq` order,
which is commit order: SQLite serializes writers, as the webhook outbox relies
on) and adds them, in the same transaction that moves the cursor, to:

- `event_counts`: per 5-minute bucket, event type, category, route and reason
  (the bounce reason the event carries — `reason=` in its detail, else the reply's
  enhanced status code — or, for opens and clicks, "machine" or "human");
- `domain_counts`: per hour, recipient domain and type;
- `latency_counts`: per 5-minute bucket, delivered recipients by accepted→delivered
  latency (histogram bounds LATENCY_BOUNDS);
- `host_counts`: per hour, route, host that answered (a smarthost's name, an MX
  host) and outcome (HOST_KINDS) — which smarthost of a route carried the mail,
  so the console can count failovers to a backup.

The console rolls up before it renders and every ROLLUP_INTERVAL meanwhile, so
counts lag the events by seconds. Counts hold no addresses (domains only), so
erasure has nothing to do here; retention purges events, not these totals.
This module is the SQLite backend; gateway.state.counts_postgres is PostgreSQL's (the
same tables and figures, a cursor that survives out-of-order commits); both are
`Counts`.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.state.db import StateDb

__all__ = ["BUCKET", "HOST_KINDS", "LATENCY_BOUNDS", "ROLLUP_BATCH", "Batch", "CountRow",
           "Counts", "EventCounts", "Overview", "reason_of", "rollup_rows"]

BUCKET = 300  # seconds: the overview's resolution
DOMAIN_BUCKET = 3600
ROLLUP_BATCH = 5_000  # events per transaction: the write lock is held ~0.2 s at most
LATENCY_BOUNDS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, float("inf"))
HOST_KINDS = ("delivered", "deferred", "bounced")
_REASON = re.compile(r"\breason=(\S+)")
_CURSOR = "counts"
CATEGORY_TAG = ":category"  # as gateway.state.events writes it

_SELECT_NEW = (
    "SELECT e.seq, e.time, e.type, e.recipient, COALESCE(e.route, ''), e.reply_code,"
    " e.reply_enhanced, e.detail, COALESCE(t.value, ''),"
    " CASE WHEN e.type = 'delivered' THEN (SELECT MIN(a.time) FROM events a"
    "  WHERE a.queue_id = e.queue_id AND a.type = 'accepted') END, COALESCE(e.host, '')"
    " FROM events e LEFT JOIN message_tags t ON t.queue_id = e.queue_id AND t.name = ?"
    " WHERE e.seq > ? ORDER BY e.seq LIMIT ?")
_UPSERT_EVENTS = (
    "INSERT INTO event_counts (bucket, type, category, route, reason, n)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bucket, type, category, route, reason)"
    " DO UPDATE SET n = n + excluded.n")
_UPSERT_DOMAINS = (
    "INSERT INTO domain_counts (bucket, domain, type, n) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (bucket, domain, type) DO UPDATE SET n = n + excluded.n")
_UPSERT_LATENCY = (
    "INSERT INTO latency_counts (bucket, le, n) VALUES (?, ?, ?)"
    " ON CONFLICT (bucket, le) DO UPDATE SET n = n + excluded.n")
_UPSERT_HOSTS = (
    "INSERT INTO host_counts (bucket, route, host, type, n) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (bucket, route, host, type) DO UPDATE SET n = n + excluded.n")


@dataclass(frozen=True)
class CountRow:
    type: str
    category: str
    route: str
    reason: str
    n: int


@dataclass
class Overview:
    """Totals since a time: by (type, category, route, reason), by domain, latency
    histogram, per-bucket series of each type (for the charts), and by (route, host)."""

    since: float
    rows: list[CountRow] = field(default_factory=list)
    domains: dict[str, dict[str, int]] = field(default_factory=dict)
    latency: dict[float, int] = field(default_factory=dict)
    series: dict[str, dict[int, int]] = field(default_factory=dict)
    hosts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def total(self, kind: str, *, reason: str | None = None) -> int:
        return sum(r.n for r in self.rows
                   if r.type == kind and (reason is None or r.reason == reason))

    def by(self, kind: str, dimension: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for r in self.rows:
            if r.type == kind:
                out[getattr(r, dimension) or "none"] += r.n
        return dict(out.most_common())

    def percentile(self, q: float) -> float | None:
        """The histogram bound below which a fraction `q` of deliveries fall."""
        total = sum(self.latency.values())
        if not total:
            return None
        running = 0
        for bound in sorted(self.latency):
            running += self.latency[bound]
            if running >= q * total:
                return bound
        return None


def reason_of(kind: str, detail: str | None, code: int | None, enhanced: str | None) -> str:
    """The reason an event is counted under (module docstring)."""
    if kind in ("opened", "clicked"):
        return "machine" if detail and "machine=yes" in detail else "human"
    if kind not in ("bounced", "soft_bounced", "complained", "suppressed", "expired",
                    "deferred", "rejected", "dropped"):
        return ""
    m = _REASON.search(detail or "")
    if m:
        return m.group(1)
    if enhanced:
        return enhanced
    return str(code) if code is not None else "unknown"


@dataclass
class Batch:
    """What a batch of events adds to each counts table (keys as the tables' columns)."""

    last: int = 0  # the batch's last seq
    events: Counter[tuple[object, ...]] = field(default_factory=Counter)
    domains: Counter[tuple[object, ...]] = field(default_factory=Counter)
    latency: Counter[tuple[object, ...]] = field(default_factory=Counter)
    hosts: Counter[tuple[object, ...]] = field(default_factory=Counter)


def rollup_rows(rows: Iterable[tuple[object, ...]]) -> Batch:
    """The counts of a batch of events: (seq, time, type, recipient, route, reply code,
    enhanced code, detail, category, accepted time of a delivery, host) each."""
    out = Batch()
    for (seq, time, kind, recipient, route, code, enhanced, detail, category, accepted,
         host) in rows:
        out.last = int(str(seq))
        t = float(str(time))
        bucket = int(t // BUCKET * BUCKET)
        hour = int(t // DOMAIN_BUCKET * DOMAIN_BUCKET)
        k = str(kind)
        reason = reason_of(k, _opt(detail), None if code is None else int(str(code)),
                           _opt(enhanced))
        out.events[(bucket, k, category, route, reason)] += 1
        if recipient:
            domain = str(recipient).rpartition("@")[2].lower()
            out.domains[(hour, domain, k)] += 1
        if accepted is not None:
            seconds = t - float(str(accepted))
            le = next(b for b in LATENCY_BOUNDS if seconds <= b)
            out.latency[(bucket, le)] += 1
        if host and k in HOST_KINDS:
            out.hosts[(hour, route, host, k)] += 1
    return out


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _rollup_batch(conn: sqlite3.Connection, limit: int) -> int:
    row = conn.execute("SELECT seq FROM rollup_cursor WHERE name = ?", (_CURSOR,)).fetchone()
    cursor = int(row[0]) if row else 0
    rows = conn.execute(_SELECT_NEW, (CATEGORY_TAG, cursor, limit)).fetchall()
    if not rows:
        return 0
    batch = rollup_rows(rows)
    conn.executemany(_UPSERT_EVENTS, [(*k, n) for k, n in batch.events.items()])
    conn.executemany(_UPSERT_DOMAINS, [(*k, n) for k, n in batch.domains.items()])
    conn.executemany(_UPSERT_LATENCY, [(*k, n) for k, n in batch.latency.items()])
    conn.executemany(_UPSERT_HOSTS, [(*k, n) for k, n in batch.hosts.items()])
    conn.execute("INSERT INTO rollup_cursor (name, seq) VALUES (?, ?) ON CONFLICT (name)"
                 " DO UPDATE SET seq = excluded.seq", (_CURSOR, batch.last))
    return len(rows)


def _overview(conn: sqlite3.Connection, since: float) -> Overview:
    first = int(since // BUCKET * BUCKET)
    out = Overview(since)
    for kind, category, route, reason, n in conn.execute(
            "SELECT type, category, route, reason, SUM(n) FROM event_counts"
            " WHERE bucket >= ? GROUP BY 1, 2, 3, 4", (first,)):
        out.rows.append(CountRow(kind, category, route, reason, int(n)))
    for bucket, kind, n in conn.execute(
            "SELECT bucket, type, SUM(n) FROM event_counts WHERE bucket >= ?"
            " GROUP BY 1, 2", (first,)):
        out.series.setdefault(kind, {})[int(bucket)] = int(n)
    for domain, kind, n in conn.execute(
            "SELECT domain, type, SUM(n) FROM domain_counts WHERE bucket >= ? GROUP BY 1, 2",
            (int(since // DOMAIN_BUCKET * DOMAIN_BUCKET),)):
        out.domains.setdefault(domain, {})[kind] = int(n)
    for le, n in conn.execute(
            "SELECT le, SUM(n) FROM latency_counts WHERE bucket >= ? GROUP BY 1", (first,)):
        out.latency[float(le)] = int(n)
    for route, host, kind, n in conn.execute(
            "SELECT route, host, type, SUM(n) FROM host_counts WHERE bucket >= ?"
            " GROUP BY 1, 2, 3", (int(since // DOMAIN_BUCKET * DOMAIN_BUCKET),)):
        out.hosts.setdefault((route, host), {})[kind] = int(n)
    return out


class Counts(Protocol):
    """What the console needs of either backend's counts."""

    async def rollup(self, limit: int = ROLLUP_BATCH) -> int: ...

    async def overview(self, since: float) -> Overview: ...

    async def close(self) -> None: ...


class EventCounts:
    """The roll-up and the overview query, on a StateDb of state.db."""

    def __init__(self, db: StateDb) -> None:
        self.db = db

    async def rollup(self, limit: int = ROLLUP_BATCH) -> int:
        """Add the events written since the last roll-up; the number added. Each
        transaction takes at most `limit` events, so a backlog never holds the
        write lock long (intake workers write state.db too)."""
        total = 0
        while True:
            done = await self.db.call(lambda c: _rollup_batch(c, limit), write=True)
            total += done
            if done < limit:
                return total

    async def overview(self, since: float) -> Overview:
        return await self.db.call(lambda c: _overview(c, since))

    async def close(self) -> None:
        await self.db.close()
