#!/usr/bin/env python3
"""How long a 4 KiB write and fdatasync take back to back, and after an idle gap.

`warrant bench` measures the floor of a durable answer back to back: 200 syncs, each
started as the last returns. A server answering one connection syncs once per answer,
after a gap of a few tenths of a millisecond in which the disk had nothing to do. This
times the same write and fdatasync (one block rewritten in place, in a probe file under
DIR, removed afterwards) with no gap, and then after each GAP milliseconds of sleep.

usage: docs/bench/sync-after-idle.py DIR [GAP_MS ...]   (default gaps 0.3 0.5 1 5)
"""
import os
import sys
import time

SAMPLES = 500


def measure(fd, gap_s):
    block = b"Z" * 4096
    took = []
    for _ in range(SAMPLES):
        if gap_s:
            time.sleep(gap_s)
        started = time.perf_counter()
        os.pwrite(fd, block, 0)
        os.fdatasync(fd)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return took[SAMPLES // 2], took[SAMPLES * 9 // 10], took[SAMPLES * 99 // 100]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    gaps = [float(g) for g in sys.argv[2:]] or [0.3, 0.5, 1.0, 5.0]
    path = os.path.join(directory, ".warrant-sync-after-idle")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, b"\0" * 4096, 0)
        os.fsync(fd)
        for gap_ms in [0.0] + gaps:
            p50, p90, p99 = measure(fd, gap_ms / 1000)
            label = "back to back" if gap_ms == 0 else f"after {gap_ms:g} ms idle"
            print(f"{label:>20}: p50 {p50:.3f} ms, p90 {p90:.3f} ms, p99 {p99:.3f} ms ({SAMPLES} syncs)")
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
