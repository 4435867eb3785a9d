#!/usr/bin/env bash
# Intake throughput without and with the cleanup stage (issue 16), interleaved in
# one run, through ../shared/bench/relay_bench.sh (smtp-source → gateway → smtp-sink).
#
#   bench/cleanup_throughput.sh [BASE=main] [N=3000] [S=20] [ROUNDS=3] [SIZE_KB=2]
#
# "off" is the code of BASE (before the cleanup stage: `git archive`, run from
# PYTHONPATH), "on" this tree; same venv, same config, one shared data directory,
# DKIM off, so the difference is the cleanup stage and the changed DATA step.
# smtp-source's messages (From, To, Date, Message-Id, short 7-bit lines) need no
# repair: this measures the common path every message pays.
# Needs root, postfix (smtp-source, smtp-sink).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
for kv in "$@"; do export "${kv?}"; done
BASE=${BASE:-main} N=${N:-3000} S=${S:-20} ROUNDS=${ROUNDS:-3} SIZE_KB=${SIZE_KB:-2}
GW_PORT=${GW_PORT:-2555} SINK_PORT=${SINK_PORT:-2556}
OUT=${OUT:-$HERE/results}
mkdir -p "$OUT"
CSV=$OUT/cleanup-$(date -u +%Y%m%dT%H%M%SZ).csv
WORK=$(mktemp -d /tmp/gwcleanup.XXXXXX)
. "$HERE/lib.sh"
GW_PID=
trap 'gw_stop; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
mkdir -p "$WORK/off"
git -C "$ROOT" archive "$BASE" gateway | tar -x -C "$WORK/off"
gw_config "$WORK/config.yaml" "$WORK/var" "dkim: {enabled: false}"
for round in $(seq 1 "$ROUNDS"); do
    for mode in off on; do
        path=$([[ $mode == off ]] && echo "$WORK/off" || echo "$ROOT")
        gw_start "$WORK/config.yaml" "$WORK/gw-$mode.log" "$path"
        "$SHARED/relay_bench.sh" TARGET_PORT=$GW_PORT SINK_PORT=$SINK_PORT N="$N" S="$S" \
            SIZE_KB="$SIZE_KB" REPEAT=1 WARMUP=300 LABEL="cleanup-$mode" MTA_PID=$GW_PID CSV="$CSV"
        gw_stop
    done
done
python3 "$SHARED/summarize.py" "$CSV" --ref cleanup-off
