#!/usr/bin/env python3
"""The table of bench/production_path.sh: one row per (size, configuration), medians
over the rounds, and the ratios the issue's goals are stated in (issue 15).

    production_path_summary.py RESULTS.csv RESULTS.extra.csv [--warmup 300]

Ratios are of median end-to-end rates of this run only. OpenDKIM's CPU (a separate
process, outside Postfix's tree) is per message over the warm-up and the run.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict

_GATEWAY = ["gw-bare", "gw-idempotency", "gw-policies", "gw-dkim-rsa", "gw-dkim-ed25519",
            "gw-all-rsa", "gw-all-ed25519"]
ORDER = [*_GATEWAY, *(f"base-{m}" for m in _GATEWAY), "postfix", "postfix-opendkim"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv")
    p.add_argument("extra")
    p.add_argument("--warmup", type=int, default=300)
    a = p.parse_args()
    runs: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    with open(a.csv) as fh:
        for row in csv.DictReader(fh):
            if row["status"] == "ok":
                runs[(row["size_kb"], row["label"])].append(row)
    extra: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    with open(a.extra) as fh:
        for row in csv.DictReader(fh):
            extra[(row["size_kb"], row["label"])].append(row)
    print("| size | configuration | e2e msg/s | vs bare gateway | vs Postfix | vs Postfix + "
          "OpenDKIM | CPU ms/msg | peak PSS MB | load (1 min) | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sorted({s for s, _ in runs}, key=float):
        med = {label: statistics.median(float(r["e2e_mps"]) for r in rows)
               for (s, label), rows in runs.items() if s == size}
        for label in [x for x in ORDER if x in med]:
            rows = runs[(size, label)]
            cpu = statistics.median(float(r["cpu_ms_per_msg"]) for r in rows)
            cpu_text = f"{cpu:.2f}"
            od = [float(e["opendkim_cpu_s"]) for e in extra[(size, label)]
                  if e["opendkim_cpu_s"].replace(".", "", 1).isdigit()]
            if od:
                n = int(rows[0]["n"]) + a.warmup
                cpu_text += f" + OpenDKIM {1000 * statistics.median(od) / n:.2f}"
            loads = [e["load1"] for e in extra[(size, label)]
                     if e["opendkim_cpu_s"] != "start failed"]
            e2e = [float(r["e2e_mps"]) for r in rows]
            spread = f" [{min(e2e):.0f}-{max(e2e):.0f}]" if len(e2e) > 1 else ""
            print(f"| {size} KiB | {label} | {med[label]:.0f}{spread} | "
                  f"{_ratio(med, label, 'gw-bare')} | {_ratio(med, label, 'postfix')} | "
                  f"{_ratio(med, label, 'postfix-opendkim')} | {cpu_text} | "
                  f"{max(float(r['peak_pss_mb']) for r in rows):.0f} | {', '.join(loads)} | "
                  f"{len(rows)} |")
    return 0


def _ratio(med: dict[str, float], label: str, ref: str) -> str:
    return f"{med[label] / med[ref]:.2f}x" if med.get(ref) else "-"


if __name__ == "__main__":
    raise SystemExit(main())
