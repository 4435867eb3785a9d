#!/usr/bin/env bash
# What metrics and event log lines cost intake: the same relay run five ways,
# interleaved round by round, through ../shared/bench/relay_bench.sh
# (smtp-source → gateway → smtp-sink).
#
#   bench/metrics_cost.sh [N=3000] [S=20] [ROUNDS=3] [SIZE_KB=2] [BASE=<commit>]
#      [MODES="base metrics base-info text-log json-log"]
#
#   base      the gateway at BASE (default: the commit before metrics), log_level warning
#   metrics   this tree: every counter and histogram recorded, log_level warning
#             (no event lines: they are INFO)
#   base-info the gateway at BASE, log_level info (its own INFO lines, aiosmtpd's too)
#   text-log  this tree, log_level info, text format: base-info plus one line per event
#   json-log  this tree, log_level info, logging.format json with partial
#             redaction: every line JSON, addresses rewritten
# `intake_workers: auto` (2 here), so the worker → master metrics pipe runs too.
# Needs postfix (smtp-source, smtp-sink).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
for kv in "$@"; do export "${kv?}"; done
N=${N:-3000} S=${S:-20} ROUNDS=${ROUNDS:-3} SIZE_KB=${SIZE_KB:-2} BASE=${BASE:-3dcfd19}
MODES=${MODES:-base metrics base-info text-log json-log}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
GW_PORT=${GW_PORT:-2547} SINK_PORT=${SINK_PORT:-2548}
OUT=${OUT:-$HERE/results}
mkdir -p "$OUT"
CSV=$OUT/metrics-$(date -u +%Y%m%dT%H%M%SZ).csv
WORK=$(mktemp -d /tmp/gwmetrics.XXXXXX)
. "$HERE/lib.sh"
GW_PID=
trap 'gw_stop; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT

# The base tree: `python -m gateway` run from there imports its own package first.
mkdir -p "$WORK/base"
git -C "$ROOT" archive "$BASE" gateway | tar -x -C "$WORK/base"

config() {  # config MODE LEVEL EXTRA -> writes $WORK/config-MODE.yaml
    LOG_LEVEL=$2 gw_config "$WORK/config-$1.yaml" "$WORK/var-$1" \
        "policies_dir: $WORK/no-policies"$'\n'"dkim: {enabled: false}"$'\n'"$3"
}
config base warning ""
config metrics warning ""
config base-info info ""
config text-log info ""
config json-log info "logging: {format: json, redact_addresses: partial}"

for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        dir=$ROOT
        [[ $mode == base* ]] && dir=$WORK/base
        gw_start "$WORK/config-$mode.yaml" "$WORK/gw-$mode.log" "$dir"
        "$SHARED/relay_bench.sh" TARGET_PORT=$GW_PORT SINK_PORT=$SINK_PORT N="$N" S="$S" \
            SIZE_KB="$SIZE_KB" REPEAT=1 WARMUP=300 LABEL="$mode" MTA_PID=$GW_PID CSV="$CSV"
        gw_stop
    done
done
for mode in $MODES; do
    echo "$mode: $(wc -l <"$WORK/gw-$mode.log") log lines, $(grep -c 'gateway.events' "$WORK/gw-$mode.log" || true) event lines"
done
"$PYTHON" "$SHARED/summarize.py" "$CSV" --ref base
