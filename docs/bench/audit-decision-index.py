#!/usr/bin/env python3
"""How long a page of rare denies takes to read from the audit log, before and after
migration 17 (the audit log indexed by decision).

Builds the audit tables from the SQLite migrations in a temporary file, fills the indexed
table with 1 000 000 decision records of which one in 100 000 is a deny, then reads the
newest 100 denies the way the store asks (both tables in one statement, the indexed
columns in the store's order, the others written `+column`), three ways: the denies
alone, the denies of a time window, and the denies among the decisions (a kind as
well). Each read is timed as the best of three, first as the schema stood before
migration 17, then after it. Then what the migration costs each record: the CPU time of
moving 41 records (a batch at c=64) from the tail into the indexed table, mean of 300
moves over 100 000 records already indexed, three rounds, before and after it.
Usage: python3 docs/bench/audit-decision-index.py
"""
import sqlite3
import time

from audit_schema import COLS, append_to, create_audit_tables, record, scratch_database, statements

RECORDS, DENY_EVERY, LIMIT = 1_000_000, 100_000, 100


def page(c, where, params):
    """The newest LIMIT records matching `where`, asked of both tables; (rows, ms, plan)."""
    limit = f"?{len(params) + 1}"
    one = f"SELECT {COLS} FROM {{table}} WHERE {where} ORDER BY seq DESC LIMIT {limit}"
    sql = (f"SELECT * FROM ({one.replace('{table}', 'audit_records')}) UNION ALL "
           f"SELECT * FROM ({one.replace('{table}', 'audit_tail')}) ORDER BY seq DESC LIMIT {limit}")
    args = params + [LIMIT]
    best = None
    for _ in range(3):
        started = time.perf_counter()
        rows = c.execute(sql, args).fetchall()
        spent = 1e3 * (time.perf_counter() - started)
        best = spent if best is None else min(best, spent)
    plan = [step[3] for step in c.execute("EXPLAIN QUERY PLAN " + sql, args) if "audit_records" in step[3]]
    return len(rows), best, plan


def main():
    with scratch_database() as c:
        read_pages(c)


def read_pages(c):
    """Fills the log on connection `c` and reads the pages of denies before and after
    migration 17."""
    create_audit_tables(c)
    for first in range(1, RECORDS + 1, 50_000):
        rows = [record(s, "deny" if s % DENY_EVERY == 0 else "allow") for s in range(first, first + 50_000)]
        append_to(c, "audit_records", rows)
    window_start = 1_700_000_000 + RECORDS // 2
    print(f"SQLite {sqlite3.sqlite_version}; {RECORDS} records, one deny in {DENY_EVERY}; "
          f"newest {LIMIT} denies, best of 3")
    # Before migration 17 a decision was not a keyed column: the kind led when given.
    before = [
        ("denies", "decision = ?1", ["deny"]),
        ("denies in a window", "decision = ?1 AND +at >= ?2", ["deny", window_start]),
        ("denies among decisions", "kind = ?1 AND decision = ?2", ["decision", "deny"]),
    ]
    after = [
        ("denies", "decision = ?1", ["deny"]),
        ("denies in a window", "decision = ?1 AND +at >= ?2", ["deny", window_start]),
        ("denies among decisions", "decision = ?1 AND +kind = ?2", ["deny", "decision"]),
    ]
    for label, reads in (("before", before), ("after", after)):
        if label == "after":
            for s in statements("0017_audit_decision_index.sql"):
                c.execute(s)
        for name, where, params in reads:
            n, ms, plan = page(c, where, params)
            print(f"  {label:<7} {name:<23} {n:3d} rows {ms:9.2f} ms  {'; '.join(plan)}")


def move_cost(migrated):
    """CPU ms per move of 41 records into the indexed table, three rounds of 300 moves."""
    with scratch_database() as c:
        return move_rounds(c, migrated)


def move_rounds(c, migrated):
    """`move_cost`'s rounds on connection `c`."""
    create_audit_tables(c)
    c.execute("PRAGMA synchronous=OFF")  # the sync is not what is measured
    if migrated:
        for s in statements("0017_audit_decision_index.sql"):
            c.execute(s)
    seq = [0]

    def append(n):
        rows = [record(s, "deny" if s % 100 == 0 else "allow") for s in range(seq[0] + 1, seq[0] + n + 1)]
        append_to(c, "audit_tail", rows)
        seq[0] += n

    def move():
        c.execute("BEGIN IMMEDIATE")
        started = time.process_time()
        upto = c.execute("SELECT max(seq) FROM audit_tail").fetchone()[0]
        c.execute(f"INSERT OR FAIL INTO audit_records ({COLS}) SELECT {COLS} FROM audit_tail WHERE seq <= ?", (upto,))
        c.execute("DELETE FROM audit_tail WHERE seq <= ?", (upto,))
        spent = time.process_time() - started
        c.execute("COMMIT")
        return spent

    append(100_000)
    move()
    rounds = []
    for _ in range(3):
        spent = 0.0
        for _ in range(300):
            append(41)
            spent += move()
        rounds.append(1e3 * spent / 300)
    return rounds


if __name__ == "__main__":
    main()
    print("CPU ms per move of 41 records into the indexed table, mean of 300, three rounds")
    for migrated in (False, True, False, True):
        label = "after " if migrated else "before"
        print(f"  {label} " + " ".join(f"{ms:.3f}" for ms in move_cost(migrated)))
