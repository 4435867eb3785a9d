#!/usr/bin/env bash
# The production path against the bare relay and Postfix, in one run (issue 15):
# gateway bare, + idempotency, + policies, + DKIM RSA-2048, + all three, all three with
# Ed25519 instead of RSA, Postfix bare and Postfix + OpenDKIM (RSA-2048), at 2 KiB and
# 50 KiB, interleaved round by round, through ../shared/bench/relay_bench.sh
# (smtp-source -> relay -> smtp-sink).
#
#   bench/production_path.sh [ROUNDS=2] [N2=3000] [N50=1000] [S=20] [WARMUP=300] [BASELINE=dir]
#
# BASELINE: another checkout of the gateway (e.g. `git clone` of main before a change);
# modes named base-gw-* (in MODES) run it, with this checkout's Python environment, in
# the same run: before and after side by side.
#
# "bare": no policy files, DKIM off, `idempotency.enabled: false`. Policies:
# suppression (3 entries), consent (2 categories, one rule) and one rate limit that
# never refuses (this measures the cost, not the effect). smtp-source writes
# From: <from@example.com> and a Message-Id, so with DKIM on every message is
# signed and with idempotency on every message is claimed. All gateway modes share
# one data directory, so only the configuration differs.
#
# The machine may be shared: compare rows of one run. Each run's 1-minute load
# average (before it) is kept beside the CSV; CPU ms/msg is the relay's whole
# process tree from /proc (relay_bench.sh), and for Postfix + OpenDKIM, OpenDKIM's
# own CPU is measured the same way and shown separately.
# Needs root, postfix, opendkim, opendkim-tools (.ci/install-deps).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
for kv in "$@"; do export "${kv?}"; done
ROUNDS=${ROUNDS:-2} N2=${N2:-3000} N50=${N50:-1000} S=${S:-20} WARMUP=${WARMUP:-300}
GW_PORT=${GW_PORT:-2575} SINK_PORT=${SINK_PORT:-2576} PF_PORT=${PF_PORT:-2577}
OD_PORT=${OD_PORT:-8897}
PYTHON=${PYTHON:-python3}
MODES=${MODES:-"gw-bare gw-idempotency gw-policies gw-dkim-rsa gw-all-rsa gw-all-ed25519 postfix postfix-opendkim"}
SIZES=${SIZES:-"2 50"}
OUT=${OUT:-$HERE/results}
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
CSV=$OUT/production-$STAMP.csv
EXTRA=$OUT/production-$STAMP.extra.csv  # label,size,run,load1,opendkim_cpu_s
WORK=$(mktemp -d /tmp/gwprod.XXXXXX)
chmod 755 "$WORK"  # Postfix and OpenDKIM run as their own users under it
export PF_PORT SINK_PORT OD_PORT
export PF_ROOT=$WORK/pf OD_ROOT=$WORK/od
GW_PID=
cleanup() {
    if [[ -n $GW_PID ]]; then kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; fi
    "$SHARED/postfix_relay.sh" stop >/dev/null 2>&1 || true
    "$SHARED/opendkim_milter.sh" stop >/dev/null 2>&1 || true
    [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

gateway_config() {  # gateway_config MODE -> $WORK/config.yaml (base-gw-X configures as gw-X)
    local idem="idempotency: {enabled: false}" policies=$WORK/policies-off
    local dkim="dkim: {enabled: false}"
    local rsa=$'dkim:\n  domains:\n    example.com:\n      - {selector: rsa1, algorithm: rsa, active: true}'
    local ed=$'dkim:\n  domains:\n    example.com:\n      - {selector: ed1, algorithm: ed25519, active: true}'
    case ${1#base-} in
    gw-bare) ;;
    gw-idempotency) idem="idempotency: {enabled: true}" ;;
    gw-policies) policies=$WORK/policies-on ;;
    gw-dkim-rsa) dkim=$rsa ;;
    gw-all-rsa) idem="idempotency: {enabled: true}"; policies=$WORK/policies-on; dkim=$rsa ;;
    gw-all-ed25519) idem="idempotency: {enabled: true}"; policies=$WORK/policies-on; dkim=$ed ;;
    esac
    cat >"$WORK/config.yaml" <<YAML
hostname: gateway.bench.invalid
data_dir: $WORK/var
policies_dir: $policies
log_level: warning
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
$idem
$dkim
YAML
}

mkdir -p "$WORK/policies-off" "$WORK/policies-on"
cat >"$WORK/policies-on/suppression.yaml" <<'YAML'
entries:
  - {address: blocked@example.net, reason: manual}
  - {domain: complainers.example, reason: complaint}
  - {address: to@example.net, reason: unsubscribe, scope: marketing}
YAML
cat >"$WORK/policies-on/consent.yaml" <<'YAML'
categories:
  transactional: {basis: contract}
  marketing: {basis: consent}
rules:
  - {name: news, category: marketing, sender_domain: [news.example.com]}
YAML
cat >"$WORK/policies-on/ratelimits.yaml" <<'YAML'
limits:
  - {name: per-client, key: [client_ip], rate: 1000000/s, burst: 1000000}
YAML
gateway_config gw-bare
(cd "$ROOT" && $PYTHON -m gateway dkim keygen -c "$WORK/config.yaml" --domain example.com \
    --selector rsa1 --algo rsa >/dev/null && $PYTHON -m gateway dkim keygen \
    -c "$WORK/config.yaml" --domain example.com --selector ed1 --algo ed25519 >/dev/null)

"$SHARED/opendkim_milter.sh" setup >/dev/null
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
load1() { cut -d' ' -f1 /proc/loadavg; }
echo "label,size_kb,round,load1,opendkim_cpu_s" >"$EXTRA"

run_mode() {  # run_mode MODE SIZE ROUND
    local mode=$1 size=$2 round=$3 n pid od_pid="" od0=0 load
    n=$([[ $size == 2 ]] && echo "$N2" || echo "$N50")
    case $mode in
    gw-*|base-gw-*)
        gateway_config "$mode"
        local src=$ROOT
        [[ $mode == base-* ]] && src=${BASELINE:?base-gw modes need BASELINE=dir}
        # On a loaded machine the intake workers may miss the master's 30 s start
        # deadline: try again (twice), and skip the run if it still does not start.
        for _ in 1 2 3; do
            (cd "$src" && exec $PYTHON -m gateway serve -c "$WORK/config.yaml") \
                >>"$WORK/$mode.log" 2>&1 &
            GW_PID=$!
            for _ in $(seq 1 900); do
                ss -ltnH "sport = :$GW_PORT" | grep -q . && break
                kill -0 "$GW_PID" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$GW_PID" 2>/dev/null && break
            wait "$GW_PID" || true
            echo "$mode: the gateway did not start (see $WORK/$mode.log); again" >&2
            GW_PID=
        done
        [[ -n $GW_PID ]] || { echo "$mode,$size,$round,$(load1),start failed" >>"$EXTRA"; return 0; }
        sleep 1
        pid=$GW_PID port=$GW_PORT
        ;;
    postfix|postfix-opendkim)
        if [[ $mode == postfix-opendkim ]]; then
            "$SHARED/opendkim_milter.sh" start >/dev/null
            od_pid=$(tr -d ' \n' <"$OD_ROOT/opendkim.pid")
            PF_MILTER=inet:127.0.0.1:$OD_PORT "$SHARED/postfix_relay.sh" setup >/dev/null
        else
            PF_MILTER= "$SHARED/postfix_relay.sh" setup >/dev/null
        fi
        "$SHARED/postfix_relay.sh" start >/dev/null
        pid=$("$SHARED/postfix_relay.sh" pid) port=$PF_PORT
        ;;
    esac
    load=$(load1)
    if [[ -n $od_pid ]]; then od0=$(cpu_of "$od_pid"); fi
    "$SHARED/relay_bench.sh" TARGET_PORT="$port" SINK_PORT="$SINK_PORT" N="$n" S="$S" \
        SIZE_KB="$size" REPEAT=1 WARMUP="$WARMUP" LABEL="$mode" MTA_PID="$pid" CSV="$CSV" \
        | grep -v '^#\|^label' || true
    local od_cpu=""
    if [[ -n $od_pid ]]; then
        od_cpu=$(awk -v a="$(cpu_of "$od_pid")" -v b="$od0" -v t="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.2f", (a - b) / t }')
    fi
    echo "$mode,$size,$round,$load,$od_cpu" >>"$EXTRA"
    case $mode in
    gw-*|base-gw-*) kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" || true; GW_PID= ;;
    postfix*)
        "$SHARED/postfix_relay.sh" wait-drained 60 >/dev/null || true
        "$SHARED/postfix_relay.sh" stop >/dev/null
        if [[ -n $od_pid ]]; then "$SHARED/opendkim_milter.sh" stop >/dev/null; fi
        ;;
    esac
}

for round in $(seq 1 "$ROUNDS"); do
    for size in $SIZES; do
        for mode in $MODES; do
            run_mode "$mode" "$size" "$round"
        done
    done
done
echo "CSV: $CSV"
$PYTHON "$HERE/production_path_summary.py" "$CSV" "$EXTRA" --warmup "$WARMUP"
