# Sourced by the served benchmark scripts (cpu-per-request.sh, path-profile.sh,
# answer-path.sh): starts the release `warrant serve` the way the served benchmarks run
# it. Needs `bin` (the warrant binary) and `work` (the caller's scratch directory); sets
# `port` and `server` (its pid). The caller's exit trap, `finish_served`, stops it.

# A free loopback port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_served: writes WORK/server.toml (data in WORK/data, a free loopback port,
# guardrails and rate limits off), starts the server with its output in WORK/server.log
# and waits until /healthz answers (fails after 10 s).
start_served() {
    local tries
    port=$(free_port)
    cat > "$work/server.toml" <<TOML
data = "$work/data"
listen = "127.0.0.1:$port"
[guard]
enabled = false
[limits]
token_rate_per_client = "off"
token_rate_per_ip = "off"
anonymous_rate_per_ip = "off"
TOML
    mkdir -p "$work/data"
    WARRANT_LOG=warn "$bin" serve --config "$work/server.toml" > "$work/server.log" 2>&1 &
    server=$!
    for tries in $(seq 100); do
        if curl -sf "http://127.0.0.1:$port/healthz" > /dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "the server did not answer /healthz within $((tries / 10)) s" >&2
    return 1
}

# drive_authorize CONC: `warrant bench --scenario authorize --concurrency CONC` against
# the server in the background (8 s points after 1 s of warm-up, then one short
# open-loop point at 100/s), its output in WORK/bench.out. It measures the disk's floor
# (a fraction of a second) and its own endpoint (1 s + 8 s) first, so the authorize
# point runs from about 10 s to 19 s after the start; this returns 11 s after it, inside
# the point. Sets `bench` (its pid).
drive_authorize() {
    local conc=$1
    "$bin" bench --server "http://127.0.0.1:$port" --data "$work/data" --scenario authorize \
        --concurrency "$conc" --duration 8 --warmup 1 --rate 100 > "$work/bench.out" 2>&1 &
    bench=$!
    sleep 11
}

# authorize_point: waits for drive_authorize's bench and sets `rate` (decisions per
# second) and `p50` (ms) from its authorize row.
authorize_point() {
    local line
    wait "$bench"
    line=$(grep 'authorize  ┆' "$work/bench.out")
    rate=$(echo "$line" | awk -F'┆' '{gsub(/ /, "", $3); print $3}')
    p50=$(echo "$line" | awk -F'┆' '{gsub(/ /, "", $5); print $5}')
}

# finish_served FILE...: an exit trap for a script that sets `work` (its scratch
# directory, removed): stops every process the script left in the background (the
# server, the bench, a stand-in) and, when the script failed, prints FILE... (their
# output) first.
finish_served() {
    local status=$? pids
    pids=$(jobs -p)
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086 # one pid per word
        kill $pids 2> /dev/null || true
    fi
    wait 2> /dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "failed; the output so far:" >&2
        cat "$@" >&2 2> /dev/null || true
    fi
    rm -rf "$work"
}

# Bash runs no EXIT trap when a signal it does not trap kills it (Ctrl-C, `kill`, a reader
# of its output gone away): each of those exits instead, so finish_served still stops the
# background jobs and removes the scratch directory.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
