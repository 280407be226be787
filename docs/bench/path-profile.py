#!/usr/bin/env python3
"""Splits a served authorize profile into the parts of a decision's path.

Reads the text of `perf script` for a profile recorded with call graphs (`perf record
--call-graph dwarf`) and assigns each sample to the first part, in the order below,
that its stack passes through; a sample in none of them is "other". Prints each part's
share and, given the profile's length, rate and sampling frequency, its microseconds
per decision: the process's samples per second over the decisions per second. The rate
is the benchmark point's average, and the profiler slows the server while it records,
so the microseconds run somewhat high; the shares do not depend on it.

usage: perf script -i perf.data | docs/bench/path-profile.py SECONDS DECISIONS_PER_S HZ
"""

import sys
from collections import Counter

# (part, frames that mark it), tried in order: the first match names the sample.
PARTS = [
    ("storage: the SQLite commit", ["sqlite3", "rusqlite", "warrant_store"]),
    ("token verification", ["warrant_token"]),
    ("policy evaluation (Cedar)", ["cedar_policy", "warrant_policy"]),
    ("the audit record (encode, chain)", ["warrant_engine::audit", "warrant_core::audit"]),
    ("engine, other (request, context, bookkeeping)", ["warrant_engine"]),
    ("the handler: body parse, answer, metrics", ["routes::", "extract::", "metrics::"]),
]
HTTP = ["listen::serve", "hyper::", "axum", "tower"]
LOOP = ["epoll", "schedule", "tokio::runtime", "mio::"]


def samples(lines):
    """Yields each sample's frames, leaf first."""
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
        elif line[0] in " \t":
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                frames.append(parts[1])
        else:
            frames = []
    if frames:
        yield frames


def part(frames):
    """The part of the path one sample belongs to."""
    stack = "\n".join(frames)
    for name, marks in PARTS:
        if any(m in stack for m in marks):
            return name
    if any(m in stack for m in HTTP):
        kernel = "[kernel" in frames[0]
        return "HTTP connection, " + ("in the kernel (TCP)" if kernel else "in user space (hyper, axum)")
    if any(m in stack for m in LOOP):
        return "event loop, scheduler"
    return "other"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    seconds, rate, hz = (float(a) for a in sys.argv[1:])
    counts = Counter(part(f) for f in samples(sys.stdin))
    total = sum(counts.values())
    if total == 0:
        sys.exit("no samples with call graphs in the input")
    busy = total / (seconds * hz)
    per_decision = busy / rate * 1e6
    print(f"{total} samples: {busy:.2f} threads busy on average, about {per_decision:.0f} us per decision")
    print("| part | share | us per decision |")
    print("| --- | --- | --- |")
    for name, n in counts.most_common():
        print(f"| {name} | {n / total:.1%} | {n / total * per_decision:.0f} |")


if __name__ == "__main__":
    main()
