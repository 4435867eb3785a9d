#!/usr/bin/env python3
"""Tracking hits: CPU per hit, the rate sustained, and what they cost SMTP intake.

    python3 bench/tracking_hits.py [--rate 2000] [--seconds 10] [--messages 3000] [--rounds 3]

Needs Postfix's `smtp-source` (Debian package postfix) and `wrk` (Debian package
wrk: `apt-get install wrk`; for this benchmark only, so not in .ci/install-deps).
Quick check that it runs (seconds, not a measurement):

    python3 bench/tracking_hits.py --rate 200 --seconds 2 --messages 200 --rounds 1

CPU per hit only (no SMTP rounds): `--rounds 0`.

One gateway subprocess as in production (durable spool, `intake_workers: auto`, the
tracking listener in the master process, events to state.db), relaying to a sink in
this process. Load comes from two other processes, both in C so that the load
generators cost little of the two cores the gateway runs on: Postfix's
`smtp-source` (20 sessions, 2 KiB messages) and `wrk` (one thread, 64 keep-alive
connections) with bench/tracking_hits.lua, which paces open-pixel GETs to `--rate`
per second and cycles through 5,000 valid tokens. (The Python client used before
cost about as much CPU per request as the server serving it.)

Rounds, interleaved `--rounds` times: SMTP alone, then SMTP with hits at `--rate`
(the intake rate of the two is compared within each round); then once: hits alone
for `--seconds`, and the same time idle. CPU per hit = (master's CPU time during
hits - during idle) / hits, from /proc/<pid>/stat (process CPU time: robust to
other load on the machine, unlike wall time). Also printed: wrk's own CPU per hit.
"""

from __future__ import annotations

import argparse
import json
import math
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
THREADS, CONNECTIONS = 1, 64
LUA = Path(__file__).resolve().parent / "tracking_hits.lua"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tokens(count: int) -> list[str]:
    keys = TokenKeys(KEY)
    return [seal(keys, Hit(HitKind.OPEN, f"01BENCH{i:010d}", f"g{i}@d{i % 50}.example",
                           "marketing")) for i in range(count)]


def hits_process(url: str, rate: float, seconds: float, tokens_file: Path
                 ) -> subprocess.Popen[str]:
    """wrk, paced to `rate` GETs a second for `seconds` (rounded up to whole seconds)."""
    return subprocess.Popen(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, math.ceil(seconds))}s",
         "--timeout", "5s", "-s", str(LUA), url, "--", str(rate), str(tokens_file),
         str(THREADS)], stdout=subprocess.PIPE, text=True)


def hits_result(proc: subprocess.Popen[str]) -> dict[str, float]:
    """wrk's RESULT line, its rate, and wrk's own CPU time (from wait4's rusage)."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line is not None, f"wrk failed:\n{out}"
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    result["hits"] = result["requests"] - result["failed"]
    result["rate"] = result["hits"] / result["seconds"]
    result["client_cpu"] = usage.ru_utime + usage.ru_stime
    return result


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
    args = parser.parse_args()
    assert shutil.which("smtp-source"), "smtp-source (Debian package postfix) is needed"
    assert shutil.which("wrk"), "wrk (Debian package wrk: apt-get install wrk) is needed"
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
          f" load {os.getloadavg()[0]:.1f}")
    sink = TimingSink()
    sink.start()
    port, tport = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="tracking-bench-") as tmp:
        directory = Path(tmp)
        (directory / "tracking.key").write_bytes(KEY)
        (directory / "tracking.key").chmod(0o600)
        tokens_file = directory / "tokens.txt"
        tokens_file.write_text("\n".join(tokens(5000)) + "\n")
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
            run(proc.pid, port, url, tokens_file, args)
        finally:
            stop_gateway(proc)
            sink.stop()


def run(pid: int, port: int, url: str, tokens_file: Path, args: argparse.Namespace) -> None:
    alone: list[float] = []
    loaded: list[float] = []
    rates: list[float] = []
    if args.rounds:
        smtp_source(port, 500)  # warm-up
    for i in range(args.rounds):
        alone.append(smtp_source(port, args.messages))
        # Hits for as long as the SMTP run takes (estimated from the run before).
        hitter = hits_process(url, args.rate, args.messages / alone[-1] * 1.1, tokens_file)
        loaded.append(smtp_source(port, args.messages))
        result = hits_result(hitter)
        rates.append(result["rate"])
        print(f"round {i + 1}: SMTP alone {alone[-1]:.0f} msg/s, with hits {loaded[-1]:.0f} "
              f"msg/s ({100 * (loaded[-1] / alone[-1] - 1):+.1f}%); hits {result['rate']:.0f}/s "
              f"(failed {result['failed']:.0f}, p50 {result['p50_ms']:.1f} ms, "
              f"p99 {result['p99_ms']:.1f} ms)")
    if args.rounds:
        ratio = statistics.median(b / a for a, b in zip(alone, loaded, strict=True))
        print(f"median intake with hits / without: {100 * ratio:.1f}%; "
              f"hits sustained: median {statistics.median(rates):.0f}/s")
        time.sleep(5)  # let delivery of the last SMTP round finish
    seconds = max(1, math.ceil(args.seconds))
    before = cpu_seconds(pid)
    time.sleep(seconds)
    idle = cpu_seconds(pid) - before
    before = cpu_seconds(pid)
    result = hits_result(hits_process(url, args.rate, seconds, tokens_file))
    busy = cpu_seconds(pid) - before
    per_hit = (busy - idle * result["seconds"] / seconds) / max(result["hits"], 1)
    print(f"hits alone: {result['rate']:.0f}/s for {result['seconds']:.1f} s "
          f"(failed {result['failed']:.0f}, p50 {result['p50_ms']:.1f} ms, p99 "
          f"{result['p99_ms']:.1f} ms); master CPU {busy:.2f} s (idle {idle:.2f} s per "
          f"{seconds} s) → {per_hit * 1e6:.0f} µs CPU per hit (request, token check, "
          f"consent, event write); wrk {result['client_cpu'] / max(result['hits'], 1) * 1e6:.0f}"
          " µs CPU per hit")


if __name__ == "__main__":
    main()
