#!/usr/bin/env bash
# The production path against the bare relay and Postfix, in one run (issue 15):
# gateway bare, + idempotency, + policies, + DKIM RSA-2048, + DKIM Ed25519, + all three,
# all three with Ed25519 instead of RSA, Postfix bare and Postfix + OpenDKIM (RSA-2048), at
# 2 KiB and 50 KiB, interleaved round by round, through ../shared/bench/relay_bench.sh
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
MODES=${MODES:-"gw-bare gw-idempotency gw-policies gw-dkim-rsa gw-dkim-ed25519 gw-all-rsa gw-all-ed25519 postfix postfix-opendkim"}
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
. "$HERE/lib.sh"
GW_PID=
cleanup() {
    gw_stop
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
    gw-dkim-ed25519) dkim=$ed ;;
    gw-all-rsa) idem="idempotency: {enabled: true}"; policies=$WORK/policies-on; dkim=$rsa ;;
    gw-all-ed25519) idem="idempotency: {enabled: true}"; policies=$WORK/policies-on; dkim=$ed ;;
    esac
    gw_config "$WORK/config.yaml" "$WORK/var" "policies_dir: $policies"$'\n'"$idem"$'\n'"$dkim"
}

mkdir -p "$WORK/policies-off"
gw_policies "$WORK/policies-on" client_ip
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
        gw_start "$WORK/config.yaml" "$WORK/$mode.log" "$src" \
            || { echo "$mode,$size,$round,$(load1),start failed" >>"$EXTRA"; return 0; }
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
    gw-*|base-gw-*) gw_stop ;;
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
