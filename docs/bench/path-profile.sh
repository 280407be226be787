#!/usr/bin/env bash
# Where a served authorize decision's CPU goes, by part of the path, at one concurrency.
#
# Starts `warrant serve` (the release build, guardrails and rate limits off, as the
# served benchmarks run it) on a fresh data directory under PARENT, drives it with
# `warrant bench --scenario authorize --concurrency CONC`, records the server for 3 s of the
# authorize point with `perf record --call-graph dwarf`, and splits the samples into the
# parts of the path (docs/bench/path-profile.py): the SQLite commit, the HTTP connection,
# Cedar, the engine, the audit record, the handler, the event loop.
#
# usage: [CONC=N] docs/bench/path-profile.sh [PARENT]
#        PARENT: where the data directory goes (default /dev/shm: no sync cost);
#        CONC: the bench's concurrency (default 1)
# needs: perf, allowed to record another process (root, or kernel.perf_event_paranoid <= 1)
set -euo pipefail

parent=${1:-/dev/shm}
conc=${CONC:-1}
case "$conc" in '' | *[!0-9]* | 0) echo "CONC must be a positive number of connections" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/release/warrant"
[ -x "$bin" ] || { echo "build it first: cargo build --release -p warrant-cli" >&2; exit 1; }
command -v perf > /dev/null || { echo "needs perf (linux-perf)" >&2; exit 1; }

. "$root/docs/bench/served.sh"
work=$(mktemp -d "$parent/warrant-path-profile.XXXXXX")
trap 'finish_served "$work/server.log" "$work/bench.out" "$work/perf.out"' EXIT
start_served

# The profile is taken from 11 s to 14 s, inside the authorize point.
drive_authorize "$conc"
seconds=3
hz=999
perf record -F "$hz" --call-graph dwarf,16384 -p "$server" -o "$work/perf.data" -- sleep "$seconds" \
    > "$work/perf.out" 2>&1
authorize_point
echo "data under $parent: authorize c=$conc at $rate/s, p50 $p50 ms"
perf script -i "$work/perf.data" 2> /dev/null | python3 "$root/docs/bench/path-profile.py" "$seconds" "$rate" "$hz"
