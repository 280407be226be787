#!/usr/bin/env python3
"""Where a process's threads spend their time: running, or ready and waiting for a core.

    thread-sched.py sample PID FILE
        Every 0.5 s until PID exits (or this is sent SIGTERM), appends one JSON line to
        FILE: the time and, for each thread of PID, its name and the kernel's counters
        (/proc/PID/task/TID/schedstat: time on a core and time ready but waiting for
        one, in ns, and slices run; /proc/PID/task/TID/status: voluntary and involuntary
        context switches).

    thread-sched.py summary SERVER_FILE BENCH_FILE
        For each open-loop point of the `warrant bench` process (BENCH_FILE), in order:
        over the window in which its open-loop thread (`bench-open-loop`, one per point)
        ran, from 1.5 s after it appeared (the warm-up) to its end, prints per thread
        name, for the server (SERVER_FILE) and the bench:
        the share of the window spent on a core and spent waiting for one, slices per
        second, the mean wait and run per slice, and involuntary switches per second. A
        thread started inside the window counts from zero, one that ended inside it up to
        its last sample (so at most 0.5 s of its life is missed); before section 32 the
        summary left both out, and section 31's figures were taken that way.

Sections 31 and 37 of BENCHMARKS.md sample the served `warrant serve` and `warrant bench`
this way. Since section 36 the harness drives its baseline endpoint open-loop before each
authorize point: with `--rate R` the first point is the endpoint's and the second
authorize's.
"""

import collections
import json
import os
import signal
import sys
import time


def sample(pid, path):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with open(path, "w") as out:
        while not stop and os.path.exists(f"/proc/{pid}"):
            threads = {}
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                break
            for tid in tids:
                base = f"/proc/{pid}/task/{tid}"
                try:
                    with open(f"{base}/comm") as f:
                        name = f.read().strip()
                    with open(f"{base}/schedstat") as f:
                        run, wait, slices = (int(v) for v in f.read().split())
                    with open(f"{base}/status") as f:
                        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
                except (OSError, ValueError):
                    continue  # the thread ended meanwhile
                threads[tid] = [
                    name,
                    run,
                    wait,
                    slices,
                    int(status["voluntary_ctxt_switches"]),
                    int(status["nonvoluntary_ctxt_switches"]),
                ]
            out.write(json.dumps({"t": time.time(), "threads": threads}) + "\n")
            out.flush()
            time.sleep(0.5)


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def nearest(samples, t):
    return min(samples, key=lambda s: abs(s["t"] - t))


def summary(server_path, bench_path):
    bench = load(bench_path)
    server = load(server_path)
    # Each open-loop point runs its own scheduler thread: one window per thread, in order.
    spans = {}
    for s in bench:
        for tid, v in s["threads"].items():
            if v[0] == "bench-open-loop":
                spans.setdefault(tid, [s["t"], s["t"]])[1] = s["t"]
    if not spans:
        sys.exit("the bench had no open-loop thread in these samples")
    for n, (first, last) in enumerate(sorted(spans.values()), start=1):
        print(f"open-loop point {n} of {len(spans)}")
        window(server, bench, first + 1.5, last)


def window(server, bench, start, end):
    for who, samples in (("server", server), ("bench", bench)):
        a, b = nearest(samples, start), nearest(samples, end)
        span = b["t"] - a["t"]
        if span <= 0:
            print(f"{who}: no samples span the window")
            continue
        # Each thread from its value at the window's start (zero for one started since)
        # to its last sample in the window (the window's end, or just before it ended).
        first, last = {}, {}
        for s in samples:
            if a["t"] <= s["t"] <= b["t"]:
                for tid, now in s["threads"].items():
                    first.setdefault(tid, now if s is a else [now[0]] + [0] * 5)
                    last[tid] = now
        by_name = collections.defaultdict(lambda: [0] * 6)
        for tid, now in last.items():
            then = first[tid]
            total = by_name[now[0]]
            total[0] += 1
            for i in range(1, 6):
                total[i] += now[i] - then[i]
        print(f"{who}: {span:.1f} s")
        for name, (n, run, wait, slices, _, involuntary) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
            if run / span < 0.005e9:
                continue
            per = max(slices, 1)
            print(
                f"  {name:16s} threads {n}: on a core {run / span / 1e7:5.1f}%, waiting for one {wait / span / 1e7:5.1f}%, "
                f"{slices / span:6.0f} slices/s, per slice {wait / per / 1e3:5.1f} us waiting and "
                f"{run / per / 1e3:5.1f} us running, {involuntary / span:5.0f} involuntary switches/s"
            )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "summary":
        summary(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
