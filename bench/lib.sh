# Sourced by the bench/*.sh scripts that run the gateway under
# ../shared/bench/relay_bench.sh: one relay-to-sink configuration, one policy set and
# one way to start and stop the gateway, so the scripts measure the same thing.
# Reads ROOT, GW_PORT and SINK_PORT; gw_start sets GW_PID.

# gw_config FILE DATA_DIR [EXTRA_YAML]: a relay listener on GW_PORT and one smarthost
# route to the sink on SINK_PORT; EXTRA_YAML adds top-level keys (dkim:, policies_dir:,
# idempotency: ...). LOG_LEVEL overrides the log level (warning).
gw_config() {
    cat >"$1" <<YAML
hostname: gateway.bench.invalid
data_dir: $2
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
${3:-}
YAML
}

# gw_policies DIR KEY...: the benchmarks' policy set: suppression (3 entries), consent
# (2 categories, one rule) and, per KEY (recipient, client_ip ...), a rate limit that
# never refuses: the cost is measured, not the effect.
gw_policies() {
    local dir=$1 key
    shift
    mkdir -p "$dir"
    cat >"$dir/suppression.yaml" <<'YAML'
entries:
  - {address: blocked@example.net, reason: manual}
  - {domain: complainers.example, reason: complaint}
  - {address: to@example.net, reason: unsubscribe, scope: marketing}
YAML
    cat >"$dir/consent.yaml" <<'YAML'
categories:
  transactional: {basis: contract}
  marketing: {basis: consent}
rules:
  - {name: news, category: marketing, sender_domain: [news.example.com]}
YAML
    echo "limits:" >"$dir/ratelimits.yaml"
    for key in "$@"; do
        echo "  - {name: per-${key//_/-}, key: [$key], rate: 1000000/s, burst: 1000000}" \
            >>"$dir/ratelimits.yaml"
    done
}

# gw_start CONFIG LOG [SRC]: `python -m gateway serve` from SRC (default ROOT; another
# checkout for before/after runs: run from there, it imports its own package first),
# then wait until GW_PORT listens. On a loaded machine the intake workers may miss the
# master's start deadline: two more tries. Returns 1 (GW_PID empty) if it never starts.
gw_start() {
    local config=$1 log=$2 src=${3:-$ROOT} _try _wait
    for _try in 1 2 3; do
        (cd "$src" && exec "${PYTHON:-python3}" -m gateway serve -c "$config") >>"$log" 2>&1 &
        GW_PID=$!
        for _wait in $(seq 1 900); do
            ss -ltnH "sport = :$GW_PORT" | grep -q . && break
            kill -0 "$GW_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$GW_PID" 2>/dev/null; then
            sleep 1  # the intake workers' listeners come up just after the master's
            return 0
        fi
        wait "$GW_PID" || true
        echo "the gateway did not start (see $log); again" >&2
        GW_PID=
    done
    return 1
}

gw_stop() {
    if [[ -n ${GW_PID:-} ]]; then
        kill "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" || true
        GW_PID=
    fi
}
