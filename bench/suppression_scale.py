"""Suppression list at scale: import speed, and lookup latency as the table grows.

    python3 bench/suppression_scale.py [--rows 1000000] [--lookups 2000]

Fills a fresh state.db through the real SuppressionStore (batches of 100,000,
one transaction each, audited as one import row), times `smtp-gateway suppress
import` of a 100,000-row CSV, and measures `lookup()` — the one query each RCPT
costs — at 10k, 100k and 1M entries, for hits and misses, with its query plan.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from gateway.model import Suppression, SuppressionReason
from gateway.state.store import StateStore

BATCH = 100_000


def entries(start: int, count: int) -> list[Suppression]:
    return [Suppression(f"user{i}@domain{i % 5000}.example", SuppressionReason.HARD_BOUNCE,
                        "all", 1.0, "bench") for i in range(start, start + count)]


async def lookup_us(state: StateStore, rows: int, n: int) -> tuple[float, float, float]:
    rng = random.Random(rows)
    hits, misses = [], []
    for k in range(n):
        i = rng.randrange(rows) if k % 2 == 0 else rows + rng.randrange(10**9)
        addr = f"user{i}@domain{i % 5000}.example"
        t0 = time.perf_counter()
        found = await state.suppressions.lookup((addr, "@" + addr.split("@")[1]), 2.0)
        (hits if found else misses).append((time.perf_counter() - t0) * 1e6)
    all_ = hits + misses
    return statistics.median(hits), statistics.median(misses), sorted(all_)[int(len(all_) * .95)]


async def main(rows: int, lookups: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="supbench."))
    state = StateStore(work / "state.db")
    await state.open()
    print("| entries | lookup median, hit | median, miss | p95 | fill time of this step |")
    print("|---|---|---|---|---|")
    filled = 0
    for target in (10_000, 100_000, rows):
        t0 = time.perf_counter()
        while filled < target:
            count = min(BATCH, target - filled)
            await state.suppressions.add(entries(filled, count), "bench", 1.0)
            filled += count
        fill = time.perf_counter() - t0
        hit, miss, p95 = await lookup_us(state, filled, lookups)
        print(f"| {filled:,} | {hit:.0f} µs | {miss:.0f} µs | {p95:.0f} µs | {fill:.1f} s |")
    plan = await state._policy_db.fetchall(
        "EXPLAIN QUERY PLAN SELECT * FROM suppressions WHERE target IN (?, ?)"
        " AND (expires IS NULL OR expires > ?)", ("a", "b", 0.0))
    print("plan:", "; ".join(str(r[-1]) for r in plan))
    await state.close()

    # The CLI path: a 100,000-row CSV into a fresh store.
    cli = work / "cli"
    cli.mkdir()
    (cli / "config.yaml").write_text(textwrap.dedent("""\
        hostname: bench.invalid
        data_dir: ./var
        listeners: [{name: relay, kind: relay, port: 2599, networks: [127.0.0.0/8]}]
        """))
    csv = cli / "in.csv"
    with csv.open("w") as fh:
        fh.write("target,scope,reason\n")
        for i in range(100_000):
            fh.write(f"user{i}@domain{i % 5000}.example,all,hard_bounce\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gateway", "suppress", "import", str(csv), "-c",
                    str(cli / "config.yaml")], check=True, capture_output=True)
    print(f"CLI import of 100,000 rows (process start included): "
          f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=2000)
    a = p.parse_args()
    asyncio.run(main(a.rows, a.lookups))
