#!/usr/bin/env python3
"""CPU time of one move of the audit tail into the indexed table, four ways.

Builds the audit tables from the SQLite migrations in a temporary file (WAL, as the
server runs it), fills the indexed table with 100 000 records, then repeatedly appends
64 records to the tail and moves them, timing the move's statements (process CPU time,
the commit excluded). The four ways: the copy as plain `INSERT` or `INSERT OR FAIL`,
inside a savepoint or not. Usage: python3 docs/bench/settle-journal.py
"""
import sqlite3
import time

from audit_schema import COLS, append_to, create_audit_tables, record, scratch_database

ROUNDS, MOVES, BATCH = 3, 300, 64


def main():
    with scratch_database() as c:
        moves(c)


def moves(c):
    """The four ways' rounds on connection `c`."""
    create_audit_tables(c)
    c.execute("PRAGMA synchronous=OFF")  # the sync is not what is measured
    seq = [0]

    def append(n):
        append_to(c, "audit_tail", [record(seq[0] + i) for i in range(1, n + 1)])
        seq[0] += n

    def move(verb, savepoint):
        c.execute("BEGIN IMMEDIATE")
        started = time.process_time()
        if savepoint:
            c.execute("SAVEPOINT settle")
        upto = c.execute("SELECT max(seq) FROM audit_tail").fetchone()[0]
        c.execute(f"{verb} INTO audit_records ({COLS}) SELECT {COLS} FROM audit_tail WHERE seq <= ?", (upto,))
        c.execute("DELETE FROM audit_tail WHERE seq <= ?", (upto,))
        if savepoint:
            c.execute("RELEASE settle")
        spent = time.process_time() - started
        c.execute("COMMIT")
        return spent

    append(100_000)
    move("INSERT", False)
    print(f"SQLite {sqlite3.sqlite_version}; CPU ms per move of {BATCH} records, mean of {MOVES}")
    for _ in range(ROUNDS):
        for verb in ("INSERT", "INSERT OR FAIL"):
            for savepoint in (True, False):
                spent = 0.0
                for _ in range(MOVES):
                    append(BATCH)
                    spent += move(verb, savepoint)
                where = "in a savepoint" if savepoint else "no savepoint  "
                print(f"  {verb:<15} {where} {1e3 * spent / MOVES:.3f}")


if __name__ == "__main__":
    main()
