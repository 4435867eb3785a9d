#!/usr/bin/env python3
"""Soak (issue 7, §5): a steady rate for a bounded time; RSS, latency and queue, every ~10 s.

    python3 bench/soak.py [--minutes 10] [--rate 100] [--sample 10] [--dir /tmp/soak]

The gateway runs as in production (`python -m gateway serve`, durable spool,
intake workers, policies with four categories, idempotency on) and relays to a
timing sink in this process. Client threads submit --rate messages a second
over SMTP (sessions reused for up to 20 messages, as an app's pool would):

- sizes: 60% ~1 KiB, 30% ~10 KiB, 10% ~100 KiB;
- categories: booking (critical) 10%, waitlist (high) 10%, transactional
  (normal) 40%, marketing (low) 40%;
- destinations: 90% accept; 5% defer (451 twice, then accept: retried after
  5 s and 10 s); 5% bounce (550 at RCPT). The route's circuit breaker keeps
  its default (3 failures): mailbox 4xx replies at RCPT do not count against it.

Every --sample seconds one CSV row: messages sent and delivered, client errors,
the queue (files in incoming/active/deferred), RSS of the master and of each
intake worker (from /proc), and the latency percentiles (connect → arrival at
the sink) of the first-attempt deliveries that arrived in the interval. After
the run the queue must drain (bounded wait); the summary compares the first
and the last minutes. Writes bench/results/soak-<UTC time>.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import queue
import random
import shutil
import smtplib
import sys
import threading
import time
from pathlib import Path

from gateway_harness import (
    ROOT,
    TimingSink,
    free_port,
    percentile,
    rss_kib,
    send,
    start_gateway,
    stop_gateway,
    write_config,
)

CONSENT = """\
    categories:
      transactional: {basis: contract}
      booking: {basis: contract}
      waitlist: {basis: contract}
      marketing: {basis: legitimate_interest}
    default: transactional
"""
CATEGORIES = [("booking", 10), ("waitlist", 10), ("transactional", 40), ("marketing", 40)]
SIZES = [(1024, 60), (10 * 1024, 30), (100 * 1024, 10)]
SESSION_MESSAGES = 20


def pick(rng: random.Random, table: list[tuple[object, int]]) -> object:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


class Load:
    """Paced submissions: a dispatcher hands out send times, client threads send."""

    def __init__(self, port: int, rate: float, seconds: float, clients: int) -> None:
        self.port = port
        self.rate = rate
        self.seconds = seconds
        self.jobs: queue.Queue[tuple[int, float] | None] = queue.Queue(maxsize=clients * 4)
        self.sent: dict[str, float] = {}  # bench id → connect time (first-attempt mail)
        self.count = 0
        self.errors = 0
        self.late = 0  # sends that started more than a second behind schedule
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(clients)]

    def run(self) -> None:
        for t in self.threads:
            t.start()
        start = time.monotonic()
        total = int(self.rate * self.seconds)
        for i in range(total):
            due = start + i / self.rate
            time.sleep(max(0.0, due - time.monotonic()))
            self.jobs.put((i, due))
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join(120)

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        conn: smtplib.SMTP | None = None
        used = 0
        while (job := self.jobs.get()) is not None:
            i, due = job
            if time.monotonic() - due > 1.0:
                with self.lock:
                    self.late += 1
            kind = rng.choices(["ok", "defer", "bounce"], weights=[90, 5, 5])[0]
            bench_id = f"m{i}"
            rcpt = f"{'guest' if kind == 'ok' else kind}{i}@example.net"
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", self.port, timeout=60)
                    conn.ehlo("soak.example")
                    used = 0
                send(self.port, bench_id, [rcpt], category=str(pick(rng, CATEGORIES)),
                     size=int(str(pick(rng, SIZES))), conn=conn)
                used += 1
                with self.lock:
                    self.count += 1
                    if kind == "ok":
                        self.sent[bench_id] = t0
            except (smtplib.SMTPException, OSError, AssertionError):
                with self.lock:
                    self.errors += 1
                conn = _close(conn)
            if conn is not None and used >= SESSION_MESSAGES:
                conn = _close(conn)
        _close(conn)


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()
    return None


def queued(spool: Path) -> int:
    return sum(len(os.listdir(spool / d)) for d in ("incoming", "active", "deferred"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--drain", type=float, default=180.0, help="max seconds to drain")
    parser.add_argument("--dir", default="/tmp/soak-bench")
    args = parser.parse_args()
    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    sink = TimingSink(defer_attempts=2).start()
    port = free_port()
    config = write_config(base, port, sink.port, consent=CONSENT)
    proc = start_gateway(config, port)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench" / "results" / f"soak-{stamp}.csv"
    fields = ["t_s", "sent", "delivered", "rejected_rcpts", "client_errors", "late_sends",
              "queued", "rss_master_mib", "rss_workers_mib", "rss_total_mib", "arrived",
              "p50_ms", "p95_ms", "p99_ms", "max_ms"]
    load = Load(port, args.rate, args.minutes * 60, args.clients)
    loader = threading.Thread(target=load.run, daemon=True)
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    started = time.monotonic()
    loader.start()
    spool = base / "var" / "spool"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        draining_since: float | None = None
        while True:
            time.sleep(max(0.0, started + (len(rows) + 1) * args.sample - time.monotonic()))
            now = time.monotonic()
            with load.lock, sink.lock:
                fresh = [(b, t) for b, t in sink.arrivals.items() if b not in seen]
                lat = [(t - load.sent[b]) * 1e3 for b, t in fresh if b in load.sent]
                seen.update(b for b, _ in fresh)
                sent, errors, late = load.count, load.errors, load.late
                delivered, rejected = sink.count, sink.rejected
            rss = rss_kib(proc.pid)
            master = rss.pop(proc.pid, 0)
            row: dict[str, object] = {
                "t_s": round(now - started), "sent": sent, "delivered": delivered,
                "rejected_rcpts": rejected, "client_errors": errors, "late_sends": late,
                "queued": queued(spool), "rss_master_mib": round(master / 1024, 1),
                "rss_workers_mib": " ".join(str(round(v / 1024, 1)) for v in rss.values()),
                "rss_total_mib": round((master + sum(rss.values())) / 1024, 1),
                "arrived": len(lat), "p50_ms": round(percentile(lat, 50), 1),
                "p95_ms": round(percentile(lat, 95), 1), "p99_ms": round(percentile(lat, 99), 1),
                "max_ms": round(max(lat, default=float("nan")), 1)}
            writer.writerow(row)
            fh.flush()
            rows.append(row)
            print(row, flush=True)
            if loader.is_alive():
                continue
            draining_since = draining_since or now
            if row["queued"] == 0 or now - draining_since > args.drain:
                break
    code = stop_gateway(proc)
    sink.stop()
    summary(rows, args, load, sink, code, out)
    return 0 if rows[-1]["queued"] == 0 else 1


def summary(rows: list[dict[str, object]], args: argparse.Namespace, load: Load,
            sink: TimingSink, code: int, out: Path) -> None:
    per_min = max(1, int(60 / args.sample))
    loaded = [r for r in rows if int(str(r["t_s"])) <= args.minutes * 60]
    first, last = loaded[1:1 + per_min], loaded[-per_min:]  # skip the start-up sample

    def avg(rs: list[dict[str, object]], key: str) -> float:
        vals = [float(str(r[key])) for r in rs if str(r[key]) not in ("nan", "")]
        return sum(vals) / len(vals) if vals else float("nan")

    print(f"wrote {out}")
    print(f"sent {load.count} in {args.minutes:g} min at {args.rate:g}/s target; "
          f"client errors {load.errors}; late sends {load.late}; "
          f"delivered {sink.count}; rejected RCPTs {sink.rejected}; "
          f"queue at end {rows[-1]['queued']}; gateway exit {code}")
    for key in ("rss_total_mib", "rss_master_mib", "p50_ms", "p95_ms", "p99_ms"):
        print(f"{key}: first minute {avg(first, key):.1f}, last minute {avg(last, key):.1f}, "
              f"max {max(float(str(r[key])) for r in loaded if str(r[key]) != 'nan'):.1f}")


if __name__ == "__main__":
    sys.exit(main())
