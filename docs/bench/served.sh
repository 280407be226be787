# Sourced by the served benchmark scripts (cpu-per-request.sh, path-profile.sh,
# answer-path.sh): starts the release `warrant serve` the way the served benchmarks run
# it. Needs `bin` (the warrant binary); sets `port` and `server` (its pid). The caller's
# exit trap stops it (`finish_served`, or the caller's own).

# A free loopback port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_served WORK: writes WORK/server.toml (data in WORK/data, a free loopback port,
# guardrails and rate limits off), starts the server with its output in WORK/server.log
# and waits until /healthz answers (fails after 10 s).
start_served() {
    local work=$1 tries
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

# finish_served FILE...: an exit trap for a script that sets `work` (its scratch
# directory, removed), `server` and `bench` (pids, stopped when set). When the script
# failed, prints FILE... (the server's and the load's output) first.
finish_served() {
    local status=$?
    if [ -n "${bench:-}" ]; then kill "$bench" 2> /dev/null || true; fi
    if [ -n "${server:-}" ]; then kill "$server" 2> /dev/null || true; fi
    wait 2> /dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "failed; the output so far:" >&2
        cat "$@" >&2 2> /dev/null || true
    fi
    rm -rf "$work"
}
