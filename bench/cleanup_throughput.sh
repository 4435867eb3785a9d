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
GW_PID=
trap '[[ -n $GW_PID ]] && kill $GW_PID 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
mkdir -p "$WORK/off"
git -C "$ROOT" archive "$BASE" gateway | tar -x -C "$WORK/off"
cat >"$WORK/config.yaml" <<YAML
hostname: gateway.bench.invalid
data_dir: $WORK/var
log_level: ${LOG_LEVEL:-warning}
intake_workers: auto
listeners:
  - {name: relay, kind: relay, address: 127.0.0.1, port: $GW_PORT, networks: [127.0.0.0/8]}
limits: {max_sessions: 500, max_sessions_per_ip: 500}
routes:
  - name: sink
    type: smarthost
    smarthosts:
      - {name: sink, host: 127.0.0.1, port: $SINK_PORT, tls: none, max_connections: 20,
         messages_per_connection: 1000}
dkim: {enabled: false}
YAML
for round in $(seq 1 "$ROUNDS"); do
    for mode in off on; do
        path=$([[ $mode == off ]] && echo "$WORK/off" || echo "$ROOT")
        PYTHONPATH=$path python3 -m gateway serve -c "$WORK/config.yaml" \
            >>"$WORK/gw-$mode.log" 2>&1 &
        GW_PID=$!
        for _ in $(seq 1 100); do ss -ltnH "sport = :$GW_PORT" | grep -q . && break; sleep 0.1; done
        sleep 1
        "$SHARED/relay_bench.sh" TARGET_PORT=$GW_PORT SINK_PORT=$SINK_PORT N="$N" S="$S" \
            SIZE_KB="$SIZE_KB" REPEAT=1 WARMUP=300 LABEL="cleanup-$mode" MTA_PID=$GW_PID CSV="$CSV"
        kill $GW_PID; wait $GW_PID || true; GW_PID=
    done
done
python3 "$SHARED/summarize.py" "$CSV" --ref cleanup-off
