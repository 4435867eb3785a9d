#!/usr/bin/env python3
"""What idempotency keys cost intake: gateway CPU per message, keys off and on.

    python3 bench/idempotency_cost.py [--messages 3000] [--clients 8] [--rounds 3]

Runs the gateway as in production (`python -m gateway serve`, two intake
workers, durable spool, no policies, a sink in this process), off and on
interleaved round by round. Every message has its own Message-ID, so with
keys on each one costs a claim and a "stored" write in idempotency.db, shared
by both intake processes. The figure is the CPU time (user + system) of the
gateway's processes, from /proc, per message accepted and delivered — the
Python SMTP clients here are slower than the gateway, so msg/s says more about
them than about it. Writes bench/results/idempotency-<UTC time>.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import smtplib
import sys
import threading
import time
from pathlib import Path

from gateway_harness import (
    ROOT,
    TimingSink,
    children,
    free_port,
    send,
    start_gateway,
    stop_gateway,
    write_config,
)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    return total


def load(port: int, count: int, clients: int, tag: str) -> None:
    def client(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as conn:
            conn.ehlo("bench.example")
            for i in range(n, count, clients):
                send(port, f"{tag}-{i}", [f"guest{i}@example.net"], size=1024, conn=conn)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)


def one(mode: str, rnd: int, args: argparse.Namespace) -> dict[str, object]:
    base = Path(args.dir) / f"{mode}-{rnd}"
    shutil.rmtree(base, ignore_errors=True)
    sink = TimingSink().start()
    port = free_port()
    enabled = "true" if mode == "on" else "false"
    config = write_config(base, port, sink.port, extra=f"idempotency: {{enabled: {enabled}}}\n")
    proc = start_gateway(config, port)
    try:
        load(port, 200, args.clients, f"warm-{mode}-{rnd}")  # warm-up: imports, connections
        deadline = time.monotonic() + 60
        while sink.count < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu0, t0, base_count = cpu_seconds(proc.pid), time.monotonic(), sink.count
        load(port, args.messages, args.clients, f"{mode}-{rnd}")
        while sink.count < base_count + args.messages and time.monotonic() < deadline + 600:
            time.sleep(0.01)
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
        delivered = sink.count - base_count
    finally:
        stop_gateway(proc)
        sink.stop()
    row = {"mode": mode, "round": rnd, "messages": delivered, "seconds": round(elapsed, 2),
           "msg_per_s": round(delivered / elapsed, 1),
           "cpu_ms_per_msg": round(cpu * 1e3 / max(1, delivered), 3)}
    print(row, flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/idempotency-bench")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench" / "results" / f"idempotency-{stamp}.csv"
    rows = [one(mode, rnd, args) for rnd in range(1, args.rounds + 1) for mode in ("off", "on")]
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
