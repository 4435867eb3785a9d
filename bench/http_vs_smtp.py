#!/usr/bin/env python3
"""The HTTP submission API against SMTP, same gateway, same run (issue 18): messages per
second accepted and delivered end to end, the same messages through each door.

How to run it (from the repository root, with the project's venv):

    .venv/bin/python bench/http_vs_smtp.py                       # 3 rounds of 2000 each
    .venv/bin/python bench/http_vs_smtp.py --messages 4000 --clients 16 --rounds 5

What it does (bounded: --messages per door and round, --timeout seconds per run):

1. Starts one gateway as in production (`python -m gateway serve`, durable spool,
   log_level warning) with its SMTP relay listener, an `api:` listener on loopback
   and one API key; one timing sink (bench/gateway_harness.py) behind a smarthost
   route. --workers is the gateway's intake_workers: 1 by default, so that SMTP and
   HTTP are served by the same single process (the API listener runs in the master;
   with more workers SMTP would get more processes than HTTP).
2. Per round, SMTP first then HTTP (the order alternates each round, so that
   neither always runs on a warmer or a more crowded machine):
   - SMTP: --clients threads, smtplib, a session kept for 50 messages;
   - HTTP: --clients asyncio tasks, aiohttp with keep-alive, POST /v1/messages;
   the same booking confirmation (~0.9 KiB text, one recipient each, all different),
   each with an idempotency key (SMTP: its Message-ID, HTTP: `idempotency_key`), so
   both doors pay for the same idempotency claim.
3. Times from the first request to the last 250/202 (accepted/s) and to the sink
   having every message of the run (delivered/s), and reads the gateway's CPU time
   (/proc: utime + stime of it and its workers) over the run: CPU ms per message
   is the figure a crowded machine disturbs least.

Prints a Markdown table with every run, the load average before each, and the
HTTP/SMTP ratios of the medians. The machine may be shared: compare the ratios of
one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import smtplib
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from gateway_harness import (
    TimingSink,
    children,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

from gateway.api.keys import make_key, write_keys

SESSION_MESSAGES = 50
TEXT = ("Dear guest,\n\nyour room at Hotel Example is booked for 12-14 March.\n"
        "Booking reference: {ref}\n\n" + "We look forward to welcoming you. " * 20 + "\n")


@dataclass(frozen=True)
class Run:
    door: str
    round: int
    messages: int
    accepted_s: float  # seconds from the first request to the last acceptance
    delivered_s: float  # ... to the sink having every message
    load: float
    cpu_s: float  # CPU time the gateway's processes used during the run

    @property
    def cpu_ms(self) -> float:
        """Gateway CPU per message: less noisy than the rates on a shared machine."""
        return self.cpu_s / self.messages * 1000

    @property
    def accepted_rate(self) -> float:
        return self.messages / self.accepted_s

    @property
    def delivered_rate(self) -> float:
        return self.messages / self.delivered_s


def smtp_message(bench_id: str, rcpt: str) -> bytes:
    """What an app's mail library writes for the booking confirmation the API builds."""
    body = TEXT.format(ref=bench_id).replace("\n", "\r\n")
    return (f"From: App <app@example.com>\r\nTo: {rcpt}\r\nSubject: {bench_id}\r\n"
            f"Message-ID: <{bench_id}@bench.example>\r\nX-Bench-Id: {bench_id}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n" + body).encode()


def smtp_run(port: int, ids: list[str], clients: int) -> None:
    chunks = [ids[i::clients] for i in range(clients)]
    errors: list[BaseException] = []

    def client(mine: list[str]) -> None:
        try:
            for start in range(0, len(mine), SESSION_MESSAGES):
                with smtplib.SMTP("127.0.0.1", port, timeout=60) as conn:
                    conn.ehlo("bench.example")
                    for bench_id in mine[start:start + SESSION_MESSAGES]:
                        rcpt = f"{bench_id}@guests.example"
                        refused = conn.sendmail("app@example.com", [rcpt],
                                                smtp_message(bench_id, rcpt))
                        assert not refused, refused
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


async def http_run(port: int, key: str, ids: list[str], clients: int) -> None:
    chunks = [ids[i::clients] for i in range(clients)]
    headers = {"Authorization": f"Bearer {key}"}

    async def client(mine: list[str]) -> None:
        async with aiohttp.ClientSession(headers=headers) as session:
            for bench_id in mine:
                body = {"from": {"name": "App", "address": "app@example.com"},
                        "to": f"{bench_id}@guests.example", "subject": bench_id,
                        "text": TEXT.format(ref=bench_id), "idempotency_key": bench_id,
                        "headers": {"X-Bench-Id": bench_id}}
                async with session.post(f"http://127.0.0.1:{port}/v1/messages",
                                        json=body) as reply:
                    if reply.status != 202:
                        raise AssertionError(f"{reply.status} {await reply.text()}")

    await asyncio.gather(*(client(c) for c in chunks))


def wait_delivered(sink: TimingSink, ids: list[str], deadline: float) -> float:
    while True:
        with sink.lock:
            if all(i in sink.arrivals for i in ids):
                return max(sink.arrivals[i] for i in ids)
        if time.monotonic() > deadline:
            raise AssertionError(f"only {sum(i in sink.arrivals for i in ids)} of {len(ids)} "
                                 "delivered before the timeout")
        time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the gateway and its intake workers (/proc, clock ticks)."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def one_run(door: str, rnd: int, args: argparse.Namespace, sink: TimingSink, smtp_port: int,
            api_port: int, key: str, pid: int) -> Run:
    ids = [f"{door}-{rnd}-{i}" for i in range(args.messages)]
    load = os.getloadavg()[0]
    cpu = cpu_seconds(pid)
    started = time.monotonic()
    if door == "smtp":
        smtp_run(smtp_port, ids, args.clients)
    else:
        asyncio.run(http_run(api_port, key, ids, args.clients))
    accepted = time.monotonic()
    delivered = wait_delivered(sink, ids, started + args.timeout)
    return Run(door, rnd, len(ids), accepted - started, delivered - started, load,
               cpu_seconds(pid) - cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="per door and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1", help="the gateway's intake_workers")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-http-vs-smtp"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    new = make_key("bench", "send", ("example.com",), None, time.time())
    write_keys(args.dir / "api_keys.yaml", (new.key,))
    sink = TimingSink().start()
    smtp_port, api_port = free_port(), free_port()
    config = write_config(args.dir, smtp_port, sink.port, workers=args.workers, extra=(
        f"api:\n  address: 127.0.0.1\n  port: {api_port}\n  keys_file: api_keys.yaml\n"))
    proc = start_gateway(config, smtp_port)
    runs: list[Run] = []
    try:
        for rnd in range(args.rounds):
            doors = ("smtp", "http") if rnd % 2 == 0 else ("http", "smtp")
            for door in doors:
                runs.append(one_run(door, rnd, args, sink, smtp_port, api_port, new.secret,
                                    proc.pid))
                print(f"round {rnd} {door}: {runs[-1].accepted_rate:.0f} accepted/s, "
                      f"{runs[-1].delivered_rate:.0f} delivered/s, "
                      f"{runs[-1].cpu_ms:.2f} CPU ms/msg", flush=True)
    finally:
        stop_gateway(proc)
        sink.stop()
    report(runs, args)
    return 0


def report(runs: list[Run], args: argparse.Namespace) -> None:
    print(f"\n{args.messages} messages per door and round, {args.clients} clients, "
          f"intake_workers {args.workers}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| round | door | accepted/s | delivered/s | gateway CPU ms/msg | load avg before |")
    print("|---|---|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r.round} | {r.door} | {r.accepted_rate:.0f} | {r.delivered_rate:.0f} "
              f"| {r.cpu_ms:.2f} | {r.load:.2f} |")
    med = {door: (statistics.median(r.accepted_rate for r in runs if r.door == door),
                  statistics.median(r.delivered_rate for r in runs if r.door == door),
                  statistics.median(r.cpu_ms for r in runs if r.door == door))
           for door in ("smtp", "http")}
    for door, label in (("smtp", "SMTP"), ("http", "HTTP")):
        print(f"median {label}: {med[door][0]:.0f} accepted/s, {med[door][1]:.0f} delivered/s,"
              f" {med[door][2]:.2f} gateway CPU ms/msg")
    print(f"HTTP/SMTP: accepted {med['http'][0] / med['smtp'][0]:.0%}, "
          f"delivered {med['http'][1] / med['smtp'][1]:.0%}, "
          f"SMTP/HTTP CPU per message {med['smtp'][2] / med['http'][2]:.0%}")


if __name__ == "__main__":
    raise SystemExit(main())
