#!/usr/bin/env bash
# Intake throughput with policies off and on (suppression with 1,000,000 stored
# entries, consent, two rate limits), interleaved in one run, through
# ../shared/bench/relay_bench.sh (smtp-source → gateway → smtp-sink).
#
#   bench/policy_throughput.sh [N=3000] [S=20] [ROUNDS=3] [SIZE_KB=2] [ROWS=1000000]
#
# "on": every RCPT costs a suppression lookup and two rate-limit updates (all
# smtp-source mail goes to one recipient, so one counter row is the hottest
# possible key, shared by every intake process), every DATA a category
# decision and a scoped-suppression lookup. Limits are set high enough never
# to refuse: this measures the cost, not the effect.
#
# Both modes share one data directory (spool, state files), so that only the
# policies differ: with one each, the file system's placement of the two spools
# alone made one mode cost ~2% more CPU (ext4 inode allocation, seen with perf;
# BENCHMARKS.md). "Off" never opens policy.db (no policy files).
# Needs root, postfix (smtp-source, smtp-sink).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
for kv in "$@"; do export "${kv?}"; done
N=${N:-3000} S=${S:-20} ROUNDS=${ROUNDS:-3} SIZE_KB=${SIZE_KB:-2} ROWS=${ROWS:-1000000}
GW_PORT=${GW_PORT:-2545} SINK_PORT=${SINK_PORT:-2546}
OUT=${OUT:-$HERE/results}
mkdir -p "$OUT"
CSV=$OUT/policy-$(date -u +%Y%m%dT%H%M%SZ).csv
WORK=$(mktemp -d /tmp/gwpolicy.XXXXXX)
. "$HERE/lib.sh"
GW_PID=
trap 'gw_stop; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT

config() {  # config MODE -> writes $WORK/config.yaml
    gw_config "$WORK/config.yaml" "$WORK/var" \
        "policies_dir: $WORK/policies-$1"$'\n'"dkim: {enabled: false}"
}

mkdir -p "$WORK/policies-off"
gw_policies "$WORK/policies-on" recipient client_ip
config on
python3 - "$WORK/var/state.db" "$ROWS" <<'PY'
import asyncio, sys
from pathlib import Path
from gateway.model import Suppression, SuppressionReason
from gateway.state.store import StateStore
async def fill(path: Path, rows: int) -> None:
    state = StateStore(path); await state.open()
    for start in range(0, rows, 100_000):
        await state.suppressions.add(
            [Suppression(f"user{i}@domain{i % 5000}.example", SuppressionReason.HARD_BOUNCE,
                         "all", 1.0, "bench") for i in range(start, min(rows, start + 100_000))],
            "bench", 1.0)
    print(f"state.db: {await state.suppressions.count()} suppressions")
    await state.close()
asyncio.run(fill(Path(sys.argv[1]), int(sys.argv[2])))
PY
for round in $(seq 1 "$ROUNDS"); do
    for mode in off on; do
        config "$mode"
        gw_start "$WORK/config.yaml" "$WORK/gw-$mode.log"
        "$SHARED/relay_bench.sh" TARGET_PORT=$GW_PORT SINK_PORT=$SINK_PORT N="$N" S="$S" \
            SIZE_KB="$SIZE_KB" REPEAT=1 WARMUP=300 LABEL="policies-$mode" MTA_PID=$GW_PID CSV="$CSV"
        gw_stop
    done
done
grep -c "rejected\|Rate limit" "$WORK/gw-on.log" || true
python3 "$SHARED/summarize.py" "$CSV" --ref policies-off
