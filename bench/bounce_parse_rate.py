#!/usr/bin/env python3
"""Bounce parse rate: messages/s through gateway.bounces.parse_bytes on one core.

    python3 bench/bounce_parse_rate.py [--rounds 20] [--dir tests/data/bounces]

Reads every .eml of the corpus into memory, then parses each one --rounds
times in this one process (the stdlib MIME parse plus every detector, as
`bounce ingest` does), after a warm-up round. Prints the corpus size, the
rate, the per-format rate and the machine (nproc, CPU model). Pinned to one
CPU where the OS allows it, so the figure is per core. The goal is ≥ 2,000/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

from gateway.bounces import parse_bytes

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=ROOT / "tests" / "data" / "bounces")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    samples = [(p.stem.rsplit("_", 1)[0], p.read_bytes()) for p in sorted(args.dir.glob("*.eml"))]
    for _, data in samples:  # warm-up: imports, regex compilation, caches
        parse_bytes(data)
    per_format: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    cpu_start = time.process_time()
    for _ in range(args.rounds):
        for fmt, data in samples:
            t = time.perf_counter()
            parse_bytes(data)
            per_format[fmt] += time.perf_counter() - t
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    total = len(samples) * args.rounds
    size = sum(len(d) for _, d in samples)
    print(f"corpus: {len(samples)} messages, {size / len(samples):.0f} bytes on average")
    print(f"parsed {total} messages in {elapsed:.2f} s: {total / elapsed:,.0f} messages/s "
          f"on one core")
    # CPU seconds of this process: what one core does, less disturbed than wall time on
    # a machine other jobs share (it still counts the caches they evict).
    print(f"CPU time {cpu:.2f} s: {total / cpu:,.0f} messages per CPU-second")
    counts = defaultdict(int)
    for fmt, _ in samples:
        counts[fmt] += 1
    for fmt in sorted(per_format, key=lambda f: per_format[f] / counts[f], reverse=True):
        rate = counts[fmt] * args.rounds / per_format[fmt]
        print(f"  {fmt:<10} {counts[fmt]:>3} samples  {rate:>8,.0f}/s")
    print(f"machine: nproc={os.cpu_count()} cpu={_cpu_model()} python={platform.python_version()}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
