#!/usr/bin/env python3
"""Two gateway nodes against one, on this machine (issue 8, §4): messages per second
through the whole path — SMTP intake with the policy checks on the shared state,
spool, delivery to a sink — with every node on the same PostgreSQL and Redis.

How to run it (from the repository root, with the project's venv; PostgreSQL on
127.0.0.1:5432 with trust auth and Redis on 127.0.0.1:6379 running, as
install-deps / .ci/run leave them):

    .venv/bin/python bench/two_nodes.py                      # 4000 messages, 8 clients
    .venv/bin/python bench/two_nodes.py --messages 10000 --clients 16 --workers auto \\
        --pg postgresql://postgres@127.0.0.1:5432/postgres --redis redis://127.0.0.1:6379/0

What it does, for 1 node and then for 2 nodes (bounded: --messages in all, and
--timeout seconds at most for each layout):

1. Creates a PostgreSQL database of its own (gwbench_nodes_<hex>, migrated;
   dropped at the end) and a Redis key prefix of its own; one timing sink
   (bench/gateway_harness.py) per layout.
2. Starts each node as in production with gateway_harness.start_gateway
   (`python -m gateway serve`, durable spool, --workers intake processes): its
   own data_dir and spool under --dir, `state:` the shared database,
   `rate_limits:` the shared Redis, `node_name: n1`/`n2`, a suppression list
   and a per-recipient limit (so every RCPT asks PostgreSQL and Redis), and one
   smarthost route to the sink.
3. --clients SMTP client threads send --messages messages (one recipient each,
   all different, 1 KiB), the clients split evenly over the nodes as a load
   balancer would; each client keeps its session for 50 messages.
4. Times from the first connection to the last 250 (accepted/s) and to the
   sink having every message (delivered/s), then stops the nodes (SIGTERM).

Prints a Markdown table, with the load average before each layout: the machine
may be shared, and on one machine two nodes compete for the same CPUs — what
the figure shows is the cost of the shared state, not the gain of a second
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import smtplib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from gateway_harness import TimingSink, free_port, send, start_gateway, stop_gateway, write_config

from gateway.model import Secret
from gateway.state.settings import StateConfig
from gateway.state.store import StateStore

SESSION_MESSAGES = 50
SIZE = 1024
CONSENT = """\
    categories:
      transactional: {basis: contract}
    default: transactional
"""
POLICIES = {
    "suppression.yaml": "entries:\n  - {address: blocked@example.net, reason: manual}\n",
    "ratelimits.yaml": ("limits:\n  - name: per-guest\n    key: [recipient]\n"
                        "    rate: 100/m\n    burst: 20\n"),
}


@dataclass
class Result:
    nodes: int
    messages: int
    accepted_s: float  # seconds from the first connection to the last 250
    delivered_s: float  # ... to the sink having them all
    errors: int
    load: str

    def row(self) -> str:
        return (f"| {self.nodes} | {self.messages} | {self.messages / self.accepted_s:.0f} "
                f"| {self.messages / self.delivered_s:.0f} | {self.delivered_s:.1f} s "
                f"| {self.errors} | {self.load} |")


def node_config(directory: Path, port: int, sink_port: int, name: str, dsn: str, redis: str,
                prefix: str, workers: str) -> Path:
    # Nodes sharing a state database must share the erasure key (README, several nodes).
    key = directory.parent.parent / "erasure.key"
    extra = (f"node_name: {name}\nstate: {dsn}\nrate_limits: {redis}\n"
             f"rate_limits_prefix: \"{prefix}\"\nretention: {{erasure_key_file: {key}}}\n")
    config = write_config(directory, port, sink_port, extra=extra, consent=CONSENT,
                          workers=workers)
    for file, text in POLICIES.items():
        (directory / "policies" / file).write_text(text)
    return config


def client(port: int, first: int, count: int, errors: list[int], layout: str) -> None:
    """Send messages first … first+count-1. Their Message-IDs name the layout: the
    layouts share one state database, whose idempotency keys would take the second
    layout's messages for resends of the first's."""
    conn: smtplib.SMTP | None = None
    for i in range(first, first + count):
        try:
            if conn is None:
                conn = smtplib.SMTP("127.0.0.1", port, timeout=60)
                conn.ehlo("bench.example")
            send(port, f"{layout}-n{i}", [f"guest{i}@example.net"], size=SIZE, conn=conn)
            if (i - first + 1) % SESSION_MESSAGES == 0:
                conn.quit()
                conn = None
        except (smtplib.SMTPException, OSError, AssertionError):
            errors.append(i)
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.quit()


def run_layout(nodes: int, args: argparse.Namespace, dsn: str, prefix: str) -> Result:
    base = Path(args.dir) / f"{nodes}-node"
    shutil.rmtree(base, ignore_errors=True)
    sink = TimingSink().start()
    ports = [free_port() for _ in range(nodes)]
    configs = [node_config(base / f"n{k + 1}", ports[k], sink.port, f"n{k + 1}", dsn,
                           args.redis, prefix, args.workers) for k in range(nodes)]
    procs: list[subprocess.Popen[bytes]] = []
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        for config, port in zip(configs, ports, strict=True):
            procs.append(start_gateway(config, port))
        errors: list[int] = []
        share = args.messages // args.clients
        layout = f"{nodes}nodes"
        threads = [threading.Thread(target=client, daemon=True,
                                    args=(ports[c % nodes], c * share, share, errors, layout))
                   for c in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.timeout)
        accepted = time.monotonic() - started
        total = share * args.clients
        deadline = started + args.timeout
        while sink.count < total - len(errors) and time.monotonic() < deadline:
            time.sleep(0.05)
        delivered = time.monotonic() - started
        if sink.count < total - len(errors):
            print(f"{nodes} node(s): the sink has {sink.count} of {total} after "
                  f"{args.timeout:.0f}s", file=sys.stderr)
        return Result(nodes, total, accepted, delivered, len(errors), load)
    finally:
        for proc in procs:
            stop_gateway(proc)
        sink.stop()


async def make_database(pg_admin: str) -> str:
    name = f"gwbench_nodes_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_admin)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = pg_admin.rsplit("/", 1)[0] + "/" + name
    await StateStore(Path("/nonexistent/state.db"), StateConfig(dsn=Secret(dsn))).migrate()
    return dsn


async def drop_database(pg_admin: str, dsn: str) -> None:
    admin = await asyncpg.connect(pg_admin)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[1]} WITH (FORCE)")
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=4000, help="per layout, in all")
    parser.add_argument("--clients", type=int, default=8, help="SMTP client threads")
    parser.add_argument("--workers", default="auto", help="intake_workers of each node")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per layout")
    parser.add_argument("--dir", default="/tmp/two-nodes-bench")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    dsn = asyncio.run(make_database(args.pg))
    prefix = f"bench:two-nodes:{secrets.token_hex(4)}:"
    try:
        results = [run_layout(n, args, dsn, prefix + f"{n}:") for n in (1, 2)]
    finally:
        asyncio.run(drop_database(args.pg, dsn))
    print(f"\n{os.cpu_count()} CPUs; each node: intake_workers {args.workers}; "
          f"{args.clients} clients; {SIZE} B messages, one recipient each\n")
    print("| nodes | messages | accepted/s | delivered/s | all delivered in | errors "
          "| load before |\n|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
