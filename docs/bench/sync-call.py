#!/usr/bin/env python3
"""fsync against fdatasync for one SQLite log frame, on DIR's disk (BENCHMARKS.md section 26).

Writes a 4 120-byte frame (a 4 KiB page and its 24-byte header) in place at the
offsets a write-ahead log uses, then syncs it, 1 500 times per call, three rounds
alternating. Without HAVE_FDATASYNC, SQLite syncs its log with fsync.

usage: python3 docs/bench/sync-call.py DIR
"""
import os
import sys
import time

FRAME = 4120
SLOTS = 64
SAMPLES = 1500


def timed(fd, sync):
    frame = b"x" * FRAME
    out = []
    for i in range(SAMPLES):
        start = time.perf_counter()
        os.pwrite(fd, frame, 32 + (i % SLOTS) * FRAME)
        sync(fd)
        out.append((time.perf_counter() - start) * 1e3)
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99)]


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: sync-call.py DIR (an existing folder on the disk to measure)")
    path = os.path.join(sys.argv[1], ".warrant-sync-call")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # The whole file exists first, so every write is in place, as in a reused log.
        os.pwrite(fd, b"\0" * (32 + SLOTS * FRAME), 0)
        os.fsync(fd)
        for _ in range(3):
            for name, sync in (("fsync", os.fsync), ("fdatasync", os.fdatasync)):
                p50, p99 = timed(fd, sync)
                print(f"{name:9} p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
