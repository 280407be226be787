#!/usr/bin/env python3
"""Commit latency of one audit record per transaction, by SQLite page size.

At one client in flight every decision waits for a commit that holds only its own audit
record, so that commit's latency is most of the distance between authorize's p50 at c=1
and the disk's fdatasync floor. This builds the audit tables from the SQLite migrations
in a temporary file on the disk measured (WAL, `synchronous=FULL`, as the server runs
it) once per page size, and times 2 000 transactions that each append one record to the
audit tail, alternating the page sizes over three rounds. Usage:
python3 docs/bench/page-size.py [DIRECTORY ON THE DISK TO MEASURE]
"""
import sys
import time

from audit_schema import COLS, create_audit_tables, record, scratch_database

ROUNDS, COMMITS, PAGE_SIZES = 3, 2000, (4096, 2048, 1024)


def commits(c, page_size):
    """p50 and p99 in milliseconds of `COMMITS` one-record commits on a new database."""
    c.execute(f"PRAGMA page_size={page_size}")  # before WAL: it cannot change after
    create_audit_tables(c)
    c.execute("PRAGMA synchronous=FULL")
    insert = f"INSERT INTO audit_tail ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    took = []
    for seq in range(1, COMMITS + 1):
        start = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute(insert, record(seq))
        c.execute("COMMIT")
        took.append(time.perf_counter() - start)
    took.sort()
    return took[len(took) // 2] * 1000, took[len(took) * 99 // 100] * 1000


def main():
    under = sys.argv[1] if len(sys.argv) > 1 else None
    for round_ in range(1, ROUNDS + 1):
        for size in PAGE_SIZES:
            with scratch_database(under) as c:
                p50, p99 = commits(c, size)
            print(f"round {round_} page size {size}: commit p50 {p50:.3f} ms, p99 {p99:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
