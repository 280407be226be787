-- Audit records by decision: "every deny" (`decision = 'deny'`, alone or with a kind or
-- a time window) otherwise reads the log newest first and filters it, so when denies are
-- rare a page of them reads the whole log; `(decision, seq)` gives them in sequence order.
CREATE INDEX audit_decision ON audit_records(decision, seq);
