#!/usr/bin/env python3
"""Critical-message latency during a 100,000-message marketing backlog (issue 7, §1).

    python3 bench/priority_latency.py [--backlog 100000] [--critical 120] [--interval 0.5]
                                      [--compare] [--dir /tmp/prio]

1. Writes --backlog marketing messages (category marketing → priority low) into
   the spool of a fresh gateway before it starts: the quickest way to have the
   whole backlog queued at once (intake would take minutes to accept it).
2. Starts the gateway as in production (`python -m gateway serve`, durable
   spool, intake workers) relaying to a timing sink (--sink-delay per DATA,
   --sink-connections sessions), and waits until the backlog is draining.
3. Submits --critical booking confirmations over SMTP (X-Gateway-Category:
   booking → critical), one every --interval seconds, and notes for each the
   time from connecting to arrival at the sink, and how much of the backlog
   was still queued then.

--compare runs steps 1-3 again with priorities off (every category normal, one
lane at 100%), the gateway as it was before: the critical messages then queue
behind the backlog; those not delivered within --give-up seconds are counted.
Writes bench/results/priority-<UTC time>.csv (one row per critical message).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import shutil
import sys
import time
from pathlib import Path

from gateway_harness import (
    ROOT,
    TimingSink,
    free_port,
    percentile,
    send,
    start_gateway,
    stop_gateway,
    write_config,
)

from gateway.clock import SystemClock
from gateway.model import Client, Envelope, Priority
from gateway.spool import Spool

CONSENT = """\
    categories:
      transactional: {basis: contract}
      booking: {basis: contract}
      marketing: {basis: legitimate_interest}
    default: transactional
"""
FLAT = """\
    priorities:
      categories: {}
      lanes:
        low: {share: 100%}
        normal: {share: 100%}
        high: {share: 100%}
"""
BODY = b"Subject: Spring offers\r\nX-Bench-Id: news\r\n\r\n" + (b"x" * 76 + b"\r\n") * 26


async def seed(spool_dir: Path, count: int, priority: Priority) -> float:
    started = time.monotonic()
    spool = Spool(spool_dir, SystemClock(), fsync=False)  # set-up only; intake fsyncs
    await spool.open()
    try:
        for i in range(count):
            env = Envelope("news@example.com", (f"reader{i}@example.net",),
                           Client("relay", "127.0.0.1"), time.time(),
                           message_id=f"<news-{i}@bench.example>", category="marketing",
                           priority=priority)
            await spool.put(env, BODY)
    finally:
        await spool.close()
    return time.monotonic() - started


def run(mode: str, args: argparse.Namespace, writer: csv.DictWriter[str]) -> dict[str, object]:
    base = Path(args.dir) / mode
    shutil.rmtree(base, ignore_errors=True)
    sink = TimingSink(data_delay=args.sink_delay).start()
    port = free_port()
    config = write_config(base, port, sink.port, consent=CONSENT,
                          extra=FLAT if mode == "flat" else "",
                          sink_connections=args.sink_connections)
    priority = Priority.LOW if mode == "lanes" else Priority.NORMAL
    seeded = asyncio.run(seed(base / "var" / "spool", args.backlog, priority))
    print(f"[{mode}] seeded {args.backlog} backlog messages in {seeded:.0f}s", flush=True)
    proc = start_gateway(config, port)
    try:
        deadline = time.monotonic() + 300
        while sink.count < 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
        drain_started, drained_before = time.monotonic(), sink.count
        submitted: dict[str, tuple[float, float, int]] = {}
        for i in range(args.critical):
            bench_id = f"{mode}-critical-{i}"
            t0 = time.monotonic()
            send(port, bench_id, [f"guest{i}@example.net"], category="booking")
            submitted[bench_id] = (t0, time.monotonic(), sink.count)
            time.sleep(max(0.0, t0 + args.interval - time.monotonic()))
        give_up = time.monotonic() + args.give_up
        while time.monotonic() < give_up and not all(b in sink.arrivals for b in submitted):
            time.sleep(0.05)
        rate = (sink.count - drained_before) / (time.monotonic() - drain_started)
        latencies = []
        for bench_id, (t0, t250, backlog_done) in submitted.items():
            arrived = sink.arrivals.get(bench_id)
            latency = None if arrived is None else arrived - t0
            if latency is not None:
                latencies.append(latency)
            writer.writerow({"mode": mode, "id": bench_id, "accept_ms": f"{(t250 - t0) * 1e3:.1f}",
                             "latency_ms": "" if latency is None else f"{latency * 1e3:.1f}",
                             "backlog_left": args.backlog - backlog_done})
        left = args.backlog - sink.count + len(latencies)
    finally:
        stop_gateway(proc)
        sink.stop()
    result = {"mode": mode, "sent": len(submitted), "delivered": len(latencies),
              "p50_ms": percentile(latencies, 50) * 1e3, "p95_ms": percentile(latencies, 95) * 1e3,
              "max_ms": max(latencies, default=float("nan")) * 1e3,
              "backlog_rate": rate, "backlog_left_at_end": left}
    print(f"[{mode}] {result}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--critical", type=int, default=120)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--sink-delay", type=float, default=0.02)
    parser.add_argument("--sink-connections", type=int, default=20)
    parser.add_argument("--give-up", type=float, default=60.0)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--dir", default="/tmp/priority-bench")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench" / "results" / f"priority-{stamp}.csv"
    results = []
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["mode", "id", "accept_ms", "latency_ms", "backlog_left"])
        writer.writeheader()
        for mode in ("lanes", "flat") if args.compare else ("lanes",):
            results.append(run(mode, args, writer))
    print(f"wrote {out}")
    for r in results:
        print(" | ".join(f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
