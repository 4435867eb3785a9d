#!/usr/bin/env python3
"""Tracking hits: CPU per hit, the rate sustained, and what they cost SMTP intake.

    python3 bench/tracking_hits.py [--rate 2000] [--seconds 10] [--messages 3000] [--rounds 3]

One gateway subprocess as in production (durable spool, `intake_workers: auto`, the
tracking listener in the master process, events to state.db), relaying to a sink in
this process. Load comes from two other processes: Postfix's `smtp-source`
(20 sessions, 2 KiB messages) and a paced HTTP client (this script with
`--client`: asyncio streams, 64 keep-alive connections) fetching open pixels with valid
tokens at `--rate` per second.

Rounds, interleaved `--rounds` times: SMTP alone, then SMTP with hits at `--rate`
(the intake rate of the two is compared within each round); then once: hits alone
for `--seconds`, and the same time idle. CPU per hit = (master's CPU time during
hits - during idle) / hits, from /proc/<pid>/stat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway_harness import (  # noqa: E402
    TimingSink,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

from gateway.tracking.token import Hit, HitKind, TokenKeys, seal  # noqa: E402

KEY = bytes(range(48))
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent, tracking: true}
    """
WORKERS = 64
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client(url: str, rate: float, seconds: float, tokens: list[str]) -> dict[str, float]:
    """Paced GETs over `WORKERS` keep-alive connections, with asyncio streams and the
    least parsing that reads a response (an HTTP library's client costs several times
    the server's CPU per request, and shares these two cores with it)."""
    host, port = url.removeprefix("http://").split(":")
    done, failed, latencies = 0, 0, []
    start = time.monotonic() + 0.2

    async def worker(k: int) -> None:
        nonlocal done, failed
        reader, writer = await asyncio.open_connection(host, int(port))
        j = 0
        while True:
            due = start + (j * WORKERS + k) / rate
            if due > start + seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.monotonic()
            token = tokens[(j * WORKERS + k) % len(tokens)]
            writer.write(f"GET /o/{token} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {UA}"
                         "\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            ok = head.startswith(b"HTTP/1.1 200")
            done += ok
            failed += not ok
            latencies.append(time.monotonic() - sent)
            j += 1
        writer.close()

    await asyncio.gather(*(worker(k) for k in range(WORKERS)))
    took = time.monotonic() - start
    latencies.sort()
    return {"hits": done, "failed": failed, "seconds": took, "rate": done / took,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def tokens(count: int) -> list[str]:
    keys = TokenKeys(KEY)
    return [seal(keys, Hit(HitKind.OPEN, f"01BENCH{i:010d}", f"g{i}@d{i % 50}.example",
                           "marketing")) for i in range(count)]


def hits_process(url: str, rate: float, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--client", url, "--rate", str(rate),
                             "--seconds", str(seconds)], stdout=subprocess.PIPE)


def smtp_source(port: int, messages: int) -> float:
    """msg/s accepted by the gateway (smtp-source's wall time for `messages`)."""
    start = time.monotonic()
    subprocess.run(["smtp-source", "-s", "20", "-l", "2048", "-m", str(messages),
                    "-f", "from@example.com", "-t", "to@example.net", f"127.0.0.1:{port}"],
                   check=True, timeout=600, stdout=subprocess.DEVNULL)
    return messages / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client")
    args = parser.parse_args()
    if args.client:
        result = asyncio.run(client(args.client, args.rate, args.seconds, tokens(5000)))
        print(json.dumps(result))
        return
    assert shutil.which("smtp-source"), "smtp-source (Debian package postfix) is needed"
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
          f" load {os.getloadavg()[0]:.1f}")
    sink = TimingSink()
    sink.start()
    port, tport = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="tracking-bench-") as tmp:
        directory = Path(tmp)
        (directory / "tracking.key").write_bytes(KEY)
        (directory / "tracking.key").chmod(0o600)
        config = write_config(directory, port, sink.port, consent=CONSENT, extra=f"""\
            tracking:
              url: http://127.0.0.1:{tport}
              address: 127.0.0.1
              port: {tport}
              key_file: tracking.key
            """)
        proc = start_gateway(config, port)
        url = f"http://127.0.0.1:{tport}"
        try:
            run(proc.pid, port, url, args)
        finally:
            stop_gateway(proc)
            sink.stop()


def run(pid: int, port: int, url: str, args: argparse.Namespace) -> None:
    smtp_source(port, 500)  # warm-up
    alone, loaded, rates = [], [], []
    for i in range(args.rounds):
        alone.append(smtp_source(port, args.messages))
        # Hits for as long as the SMTP run takes (estimated from the run before).
        hitter = hits_process(url, args.rate, args.messages / alone[-1] * 1.1)
        loaded.append(smtp_source(port, args.messages))
        out, _ = hitter.communicate(timeout=600)
        result = json.loads(out)
        rates.append(result["rate"])
        print(f"round {i + 1}: SMTP alone {alone[-1]:.0f} msg/s, with hits {loaded[-1]:.0f} "
              f"msg/s ({100 * (loaded[-1] / alone[-1] - 1):+.1f}%); hits {result['rate']:.0f}/s "
              f"(failed {result['failed']}, p50 {result['p50_ms']:.1f} ms, "
              f"p99 {result['p99_ms']:.1f} ms)")
    ratio = statistics.median(b / a for a, b in zip(alone, loaded, strict=True))
    print(f"median intake with hits / without: {100 * ratio:.1f}%; "
          f"hits sustained: median {statistics.median(rates):.0f}/s")
    time.sleep(5)  # let delivery of the last SMTP round finish
    before = cpu_seconds(pid)
    time.sleep(args.seconds)
    idle = cpu_seconds(pid) - before
    before = cpu_seconds(pid)
    hitter = hits_process(url, args.rate, args.seconds)
    out, _ = hitter.communicate(timeout=600)
    busy = cpu_seconds(pid) - before
    result = json.loads(out)
    per_hit = (busy - idle * result["seconds"] / args.seconds) / result["hits"]
    print(f"hits alone: {result['rate']:.0f}/s for {result['seconds']:.1f} s; master CPU "
          f"{busy:.2f} s (idle {idle:.2f} s per {args.seconds:.0f} s) → "
          f"{per_hit * 1e6:.0f} µs CPU per hit (request, token check, event write)")


if __name__ == "__main__":
    main()
