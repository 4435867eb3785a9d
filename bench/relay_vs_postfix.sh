#!/usr/bin/env bash
# The gateway against Postfix, same machine, same run, with ../shared/bench's harness
# (Postfix's smtp-source as the client, smtp-sink as the next hop, on loopback).
#
#   bench/relay_vs_postfix.sh [REPEAT=3] [WORKLOADS="..."] [OUT=bench/results]
#
# For each workload it runs the gateway, then Postfix (interleaved, so drift
# hits both), and finally prints the median table with each relay's end-to-end
# rate as a % of Postfix's. The gateway runs on its durable spool (fsync before
# 250, exactly as in production), relaying every message to the sink through a
# smarthost route. Also runs latency_probe.sh against both.
# Needs root, postfix and swaks (see ../shared/bench/README.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-1000}
OUT=${OUT:-$HERE/results}
GW_PORT=${GW_PORT:-2535}
SINK_PORT=${SINK_PORT:-2526}
PF_PORT=2525
WORKLOADS=${WORKLOADS:-"N=10000,S=20,SIZE_KB=2 N=10000,S=50,SIZE_KB=2 N=2000,S=20,SIZE_KB=50"}
for kv in "$@"; do export "${kv?}"; done
[[ -x $SHARED/relay_bench.sh ]] || { echo "no harness at $SHARED" >&2; exit 1; }

mkdir -p "$OUT"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
CSV=$OUT/relay-$stamp.csv
WORK=$(mktemp -d /tmp/gwbench.XXXXXX)
GW_PID=
cleanup() {
    [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null || true
    "$SHARED/postfix_relay.sh" stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/config.yaml" <<YAML
hostname: gateway.bench.invalid
data_dir: $WORK/var
log_level: warning
intake_workers: auto        # one SMTP process per core; the master queues and delivers
listeners:
  - name: relay
    kind: relay
    address: 127.0.0.1
    port: $GW_PORT
    networks: [127.0.0.0/8]
limits:
  max_sessions: 500
  max_sessions_per_ip: 500
delivery:
  helo_name: gateway.bench.invalid
routes:
  - name: sink
    type: smarthost
    smarthosts:
      - name: sink
        host: 127.0.0.1
        port: $SINK_PORT
        tls: none
        max_connections: 20
        messages_per_connection: 1000
YAML

start_gateway() {
    python3 -m gateway serve -c "$WORK/config.yaml" >"$WORK/gateway.log" 2>&1 &
    GW_PID=$!
    for _ in $(seq 1 100); do
        ss -ltnH "sport = :$GW_PORT" | grep -q . && return 0
        sleep 0.1
    done
    cat "$WORK/gateway.log" >&2; exit 1
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" || true; GW_PID=; }

"$SHARED/postfix_relay.sh" setup >/dev/null
for w in $WORKLOADS; do
    args=(${w//,/ })
    start_gateway
    "$SHARED/relay_bench.sh" TARGET_PORT=$GW_PORT SINK_PORT=$SINK_PORT "${args[@]}" \
        REPEAT="$REPEAT" WARMUP="$WARMUP" LABEL=gateway MTA_PID="$GW_PID" CSV="$CSV"
    stop_gateway
    "$SHARED/postfix_relay.sh" start >/dev/null
    "$SHARED/relay_bench.sh" TARGET_PORT=$PF_PORT SINK_PORT=$SINK_PORT "${args[@]}" \
        REPEAT="$REPEAT" WARMUP="$WARMUP" LABEL=postfix \
        MTA_PID="$("$SHARED/postfix_relay.sh" pid)" CSV="$CSV"
    "$SHARED/postfix_relay.sh" stop >/dev/null
done

LAT=$OUT/latency-$stamp.csv
start_gateway
"$SHARED/latency_probe.sh" TARGET_PORT=$GW_PORT SINK_PORT=$SINK_PORT LABEL=gateway CSV="$LAT"
stop_gateway
"$SHARED/postfix_relay.sh" start >/dev/null
"$SHARED/latency_probe.sh" TARGET_PORT=$PF_PORT SINK_PORT=$SINK_PORT LABEL=postfix CSV="$LAT"
"$SHARED/postfix_relay.sh" stop >/dev/null

echo
echo "== $CSV"
python3 "$SHARED/summarize.py" "$CSV" --ref postfix
echo "== machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(lscpu | sed -n 's/Model name: *//p')"
python3 --version
