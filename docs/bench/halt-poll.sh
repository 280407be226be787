#!/usr/bin/env bash
# The served authorize with the machine's guest halt polling off and on, alternating.
#
# On a KVM guest whose idle driver is `haltpoll`, an idle CPU first polls for up to
# /sys/module/haltpoll/parameters/guest_halt_poll_ns before it halts; at 0 it halts at
# once, and waking a thread on it is an exit to the hypervisor. Each round starts
# `warrant serve` (release build, as the served benchmarks run it) on a fresh data
# directory under PARENT twice, once with polling off (0) and once at 200 µs (the
# kernel's default), and drives it with `warrant bench --scenario authorize
# --concurrency 1,64 --duration 5 --warmup 1`, the open-loop points included, writing
# OUT/halt-poll-{off,on}-N.json (N from FIRST on). The value found is put back on exit,
# on a failure or a signal too. Needs root (it writes the parameter) and a guest whose
# cpuidle governor is haltpoll.
#
# usage: docs/bench/halt-poll.sh [ROUNDS [PARENT [OUT [FIRST]]]]   (default 3, /tmp, /tmp, 1)
set -euo pipefail

rounds=${1:-3}
parent=${2:-/tmp}
out=${3:-/tmp}
first=${4:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/release/warrant"
param=/sys/module/haltpoll/parameters/guest_halt_poll_ns
[ -x "$bin" ] || { echo "build it first: cargo build --release -p warrant-cli" >&2; exit 1; }
[ -w "$param" ] || { echo "needs the haltpoll governor and root to write $param" >&2; exit 1; }
governor=$(cat /sys/devices/system/cpu/cpuidle/current_governor 2> /dev/null \
    || cat /sys/devices/system/cpu/cpuidle/current_governor_ro 2> /dev/null || true)
[ "$governor" = haltpoll ] || { echo "the cpuidle governor is '$governor', not haltpoll: $param does nothing" >&2; exit 1; }
for number in "$rounds" "$first"; do
    case $number in
        '' | *[!0-9]* | 0) echo "ROUNDS and FIRST are whole numbers from 1, not '$number'" >&2; exit 1 ;;
    esac
done
mkdir -p "$out"

. "$root/docs/bench/served.sh"
found=$(cat "$param")
work=$(mktemp -d "$parent/warrant-halt-poll.XXXXXX")
# finish_served first: it reads the script's exit status.
trap 'finish_served "$work/server.log" "$work/bench.out"; echo "$found" > "$param"' EXIT

for round in $(seq "$first" $((first + rounds - 1))); do
    for mode in off on; do
        if [ "$mode" = on ]; then echo 200000 > "$param"; else echo 0 > "$param"; fi
        rm -rf "$work/data"
        start_served
        "$bin" bench --server "http://127.0.0.1:$port" --data "$work/data" --scenario authorize \
            --concurrency 1,64 --duration 5 --warmup 1 --json "$out/halt-poll-$mode-$round.json" > "$work/bench.out" 2>&1
        kill "$server" 2> /dev/null || true
        wait "$server" 2> /dev/null || true
        echo "== round $round, guest halt polling $mode"
        grep -E '^floor|idle before each|above the floor|^cpu idle|(axum /ping|authorize) +┆ +(1|64) ┆' "$work/bench.out" || true
    done
done
