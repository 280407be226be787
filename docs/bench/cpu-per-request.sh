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
trap 'finish_served "$work/server.log" "$work/bench.out"' EXIT
start_served

# The server's CPU is read from 11 s to 17 s, inside the authorize point (about 10 s to
# 19 s) with a second's margin on either side.
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
drive_authorize 1
before=$(cpu)
sleep 6
after=$(cpu)
authorize_point
python3 - "$before" "$after" "$(getconf CLK_TCK)" "$rate" "$p50" "$parent" <<'EOF'
import sys
before, after, tick, rate, p50, parent = sys.argv[1:]
seconds = (int(after) - int(before)) / int(tick)
per = seconds / (6 * float(rate)) * 1e6
print(f"data under {parent}: authorize c=1 at {rate}/s, p50 {p50} ms; "
      f"server CPU {seconds:.2f} s over 6 s = {per:.0f} us per decision")
EOF
