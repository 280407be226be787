-- The newest audit records, before they are indexed. A record is appended here, a table
-- without secondary indexes, so the commit that makes it durable writes one table page
-- instead of one page per index as well; the writer moves records into `audit_records`
-- (the indexed table) in bulk, later and in a transaction of their own or alongside a
-- later batch. Readers read both tables in one statement. A record is in exactly one of
-- the two at any time.
CREATE TABLE audit_tail (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    agent TEXT,
    human TEXT,
    task TEXT,
    warrant TEXT,
    decision TEXT,
    body TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
