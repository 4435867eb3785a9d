#!/usr/bin/env bash
# Intake throughput with DKIM signing off, Ed25519, RSA-2048 and dual, in one run,
# through ../shared/bench/relay_bench.sh (smtp-source → gateway → smtp-sink).
#
#   bench/signing_throughput.sh [N=3000] [S=20] [REPEAT=3] [SIZE_KB=2]
#
# Every message's From: is example.com (smtp-source writes From: <FROM>), so
# every message is signed when signing is on. Needs root, postfix (smtp-source).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
for kv in "$@"; do export "${kv?}"; done
N=${N:-3000} S=${S:-20} REPEAT=${REPEAT:-3} SIZE_KB=${SIZE_KB:-2}
GW_PORT=${GW_PORT:-2535} SINK_PORT=${SINK_PORT:-2526}
OUT=${OUT:-$HERE/results}
mkdir -p "$OUT"
CSV=$OUT/signing-$(date -u +%Y%m%dT%H%M%SZ).csv
WORK=$(mktemp -d /tmp/gwsign.XXXXXX)
. "$HERE/lib.sh"
GW_PID=
trap 'gw_stop; rm -rf "$WORK"' EXIT

config() {  # config MODE -> writes $WORK/config.yaml
    local dkim
    case $1 in
    off) dkim="dkim: {enabled: false}" ;;
    rsa) dkim=$'dkim:\n  domains:\n    example.com:\n      - {selector: rsa1, algorithm: rsa, active: true}' ;;
    ed25519) dkim=$'dkim:\n  domains:\n    example.com:\n      - {selector: ed1, algorithm: ed25519, active: true}' ;;
    dual) dkim=$'dkim:\n  dual_sign: true\n  domains:\n    example.com:\n      - {selector: rsa1, algorithm: rsa, active: true}\n      - {selector: ed1, algorithm: ed25519, active: true}' ;;
    esac
    gw_config "$WORK/config.yaml" "$WORK/var-$1" "$dkim"
}

config off
python3 -m gateway dkim keygen -c "$WORK/config.yaml" --domain example.com --selector rsa1 --algo rsa >/dev/null
python3 -m gateway dkim keygen -c "$WORK/config.yaml" --domain example.com --selector ed1 --algo ed25519 >/dev/null
for mode in off ed25519 rsa dual; do
    config "$mode"
    gw_start "$WORK/config.yaml" "$WORK/gw-$mode.log"
    "$SHARED/relay_bench.sh" TARGET_PORT=$GW_PORT SINK_PORT=$SINK_PORT N="$N" S="$S" \
        SIZE_KB="$SIZE_KB" REPEAT="$REPEAT" WARMUP=300 LABEL="dkim-$mode" MTA_PID=$GW_PID CSV="$CSV"
    gw_stop
done
python3 "$SHARED/summarize.py" "$CSV" --ref dkim-off
