-- Audit records by decision, and no longer by time. "Every deny" (`decision = 'deny'`,
-- alone or with a kind or a time window) read the log newest first and filtered it, so
-- when denies were rare a page of them read the whole log; `(decision, seq)` gives them
-- in sequence order. No read ever looked records up by `at` (a time window is read in
-- sequence order up to its limit), so `audit_at` only cost every record an index entry;
-- dropping it keeps what a record costs to index the same.
DROP INDEX IF EXISTS audit_at;
CREATE INDEX audit_decision ON audit_records(decision, seq);
