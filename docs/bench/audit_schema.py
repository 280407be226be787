"""The audit tables of the SQLite migrations, for the scripts of this folder."""
import contextlib
import os
import sqlite3
import tempfile

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "warrant-store",
                          "migrations", "sqlite")
COLS = "seq, at, kind, agent, human, task, warrant, decision, body, prev_hash, hash"


def statements(name):
    """The statements of migration file `name`, comments left out."""
    text = open(os.path.join(MIGRATIONS, name)).read()
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s for s in text.split(";") if s.strip()]


@contextlib.contextmanager
def scratch_database(under=None):
    """A connection to a new SQLite file in a temporary directory (under `under`, else the
    system's temporary folder); the connection is closed and the directory (several
    hundred MB for some of these scripts) removed when the block ends, also on an error or
    Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="warrant-bench-", dir=under) as folder:
        c = sqlite3.connect(os.path.join(folder, "scratch.db"), isolation_level=None)
        try:
            yield c
        finally:
            c.close()


def create_audit_tables(c):
    """Creates the audit log's tables and indexes as migrations 2 and 15 leave them, on
    connection `c` (WAL, as the server runs it)."""
    c.execute("PRAGMA journal_mode=WAL")
    for s in statements("0002_revocations_policies_audit.sql"):
        if "audit" in s:
            c.execute(s)
    for s in statements("0015_audit_tail.sql"):
        if "CREATE TABLE" in s:
            c.execute(s)


def record(seq, decision="allow"):
    """Audit record `seq`'s columns as these scripts fill the tables: one of 50 agents, 7
    humans, 300 tasks and 3 000 warrants, a 600-byte body, the time `seq` seconds on."""
    return (seq, 1_700_000_000 + seq, "decision", f"agt_{seq % 50}", f"hum_{seq % 7}", f"tsk_{seq % 300}",
            f"wrt_{seq % 3000:08d}", decision, '{"a":"' + "x" * 600 + '"}', os.urandom(32), os.urandom(32))


def append_to(c, table, rows):
    """Inserts `rows` (from `record`) into `table` in one transaction."""
    c.execute("BEGIN")
    c.executemany(f"INSERT INTO {table} ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    c.execute("COMMIT")
