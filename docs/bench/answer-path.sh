#!/usr/bin/env bash
# What each part of a durable answer's path costs at one connection, on this machine.
#
# Builds docs/bench/answer-path (a stand-in server: the harness's POST /ping, plain or
# with a ~340-byte record made durable before the answer) and measures it as the
# baseline of `warrant bench --baseline URL`, one design at a time, beside a Warrant
# server on the same disk (release build, guardrails and rate limits off, as the served
# benchmarks run it). Every run also measures the disk's fdatasync floor and Warrant's
# own authorize, so each line compares like with like.
#
# usage: docs/bench/answer-path.sh [PARENT] [ROUNDS]
#   PARENT  where the data directories go (default: the system's temporary directory;
#           give a directory on the disk you want measured)
#   ROUNDS  how many times every design is measured, interleaved (default 2)
#   CONC=1,64 also measures other concurrencies (the durable and sqlite designs take
#           one request at a time: compare them at 1)
#   DESIGNS="lead:percore handoff:multi" measures only these (MODE:RUNTIME)
# Every run's JSON is kept in PARENT/warrant-answer-path-json.XXXXXX, named after it.
set -euo pipefail

parent=${1:-${TMPDIR:-/tmp}}
rounds=${2:-2}
conc=${CONC:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/release/warrant"
[ -x "$bin" ] || { echo "build it first: cargo build --release -p warrant-cli" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/docs/bench/answer-path/Cargo.toml" \
    --target-dir "$root/target/answer-path"
stand_in="$root/target/answer-path/release/answer-path"

. "$root/docs/bench/served.sh"
work=$(mktemp -d "$parent/warrant-answer-path.XXXXXX")
json=$(mktemp -d "$parent/warrant-answer-path-json.XXXXXX")
mkdir "$work/stand-in"
trap 'finish_served "$work/server.log"' EXIT
start_served

designs=${DESIGNS:-"plain:current plain:multi plain:percore durable:current durable:multi sqlite:current handoff:current handoff:multi lead:current lead:multi lead:percore"}
for round in $(seq "$rounds"); do
    for design in $designs; do
        mode=${design%%:*}
        runtime=${design##*:}
        rm -rf "$work/stand-in"/*
        stand_port=$(free_port)
        "$stand_in" "$mode" "$runtime" "127.0.0.1:$stand_port" "$work/stand-in" &
        stand=$!
        up=
        for _ in $(seq 50); do
            if curl -s -o /dev/null "http://127.0.0.1:$stand_port/"; then up=1; break; fi
            kill -0 "$stand" 2> /dev/null || break
            sleep 0.1
        done
        [ -n "$up" ] || { echo "the stand-in ($design) did not start" >&2; exit 1; }
        # --rate 100: one short open-loop point, which this comparison does not use.
        "$bin" bench --server "http://127.0.0.1:$port" --data "$work/data" \
            --baseline "http://127.0.0.1:$stand_port" --scenario authorize --concurrency "$conc" \
            --duration 5 --warmup 1 --rate 100 --json "$json/$round-$mode-$runtime.json" > "$work/bench.out" 2>&1 ||
            { cat "$work/bench.out" >&2; exit 1; }
        kill "$stand"; wait "$stand" 2> /dev/null || true
    done
done

echo "raw JSON in $json"
python3 - "$json" "$parent" <<'PY'
import json, os, sys
folder, parent = sys.argv[1:]
rows = []
for name in sorted(os.listdir(folder)):
    round_, mode, runtime = name[:-5].split("-")
    r = json.load(open(os.path.join(folder, name)))
    if not r.get("floor"):
        sys.exit(f"{name}: the run did not measure the disk's floor")
    floor = r["floor"]["fdatasync"]["p50_ms"]
    authorize = {p["concurrency"]: p for p in r["scenarios"]["authorize"]}
    for b in r["baseline"]:
        c = b["concurrency"]
        rows.append((mode, runtime, c, int(round_), floor, b["latency"]["p50_ms"], b["latency"]["p99_ms"],
                     b["throughput_per_s"], authorize[c]["latency"]["p50_ms"]))
order = ["plain", "durable", "sqlite", "handoff", "lead"]
rows.sort(key=lambda x: (x[2], order.index(x[0]) if x[0] in order else len(order), x[1], x[3]))
print(f"data under {parent}; p50 and p99 in ms; 'above' is p50 minus the same run's fdatasync p50")
print(f"{'design':<18} {'conc':>4} {'round':>5} {'floor':>6} {'p50':>6} {'above':>6} {'p99':>6} {'req/s':>7}   {'Warrant authorize p50 (above)':>30}")
for mode, runtime, c, rnd, floor, p50, p99, rate, auth in rows:
    durable = mode != "plain"
    above = f"{p50 - floor:6.3f}" if durable else "     -"
    auth_above = f"{auth:.3f} ({auth - floor:.3f})"
    print(f"{mode + ', ' + runtime:<18} {c:>4} {rnd:>5} {floor:6.3f} {p50:6.3f} {above} {p99:6.3f} {rate:7.0f}   {auth_above:>30}")
PY
