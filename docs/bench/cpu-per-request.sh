#!/usr/bin/env bash
# Server CPU per authorize decision at one connection, and the p50 of the same run.
#
# Starts `warrant serve` (the release build, guardrails and rate limits off, as the
# served benchmarks run it) on a fresh data directory under PARENT, drives it with
# `warrant bench --scenario authorize --concurrency 1`, and reads the server's user and
# system CPU time from /proc while the authorize point runs. CPU per request far above
# the decision's own cost means the time goes to threads waking each other.
#
# usage: docs/bench/cpu-per-request.sh [PARENT]    (default /dev/shm: no sync cost)
set -euo pipefail

parent=${1:-/dev/shm}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/release/warrant"
[ -x "$bin" ] || { echo "build it first: cargo build --release -p warrant-cli" >&2; exit 1; }
[ -r /proc/self/stat ] || { echo "needs Linux /proc" >&2; exit 1; }

. "$root/docs/bench/served.sh"
work=$(mktemp -d "$parent/warrant-cpu.XXXXXX")
server=
bench=
trap 'finish_served "$work/server.log" "$work/bench.out"' EXIT
start_served "$work"

# The bench measures the disk's floor (a fraction of a second), the axum baseline at c=1
# (1 s warm-up + 8 s), then authorize (1 s warm-up + 8 s): the server's CPU is read from
# 11 s to 17 s, inside the authorize point with a second's margin on either side.
"$bin" bench --server "http://127.0.0.1:$port" --data "$work/data" --scenario authorize \
    --concurrency 1 --duration 8 --warmup 1 > "$work/bench.out" 2>&1 &
bench=$!
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
sleep 11
before=$(cpu)
sleep 6
after=$(cpu)
wait "$bench"
bench=
line=$(grep 'authorize  ┆' "$work/bench.out")
rate=$(echo "$line" | awk -F'┆' '{gsub(/ /, "", $3); print $3}')
p50=$(echo "$line" | awk -F'┆' '{gsub(/ /, "", $5); print $5}')
python3 - "$before" "$after" "$(getconf CLK_TCK)" "$rate" "$p50" "$parent" <<'EOF'
import sys
before, after, tick, rate, p50, parent = sys.argv[1:]
seconds = (int(after) - int(before)) / int(tick)
per = seconds / (6 * float(rate)) * 1e6
print(f"data under {parent}: authorize c=1 at {rate}/s, p50 {p50} ms; "
      f"server CPU {seconds:.2f} s over 6 s = {per:.0f} us per decision")
EOF
