CREATE INDEX warrants_agent ON warrants(agent);
CREATE INDEX warrants_human ON warrants(human, expires_at);
ALTER TABLE tasks ADD COLUMN completed_at INTEGER;
CREATE TABLE revocations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE revoked_warrants (
    jti TEXT PRIMARY KEY,
    revocation TEXT NOT NULL REFERENCES revocations(id),
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_warrants_exp ON revoked_warrants(expires_at);
CREATE TABLE policy_versions (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    policies TEXT NOT NULL,
    schema TEXT NOT NULL,
    loaded_at INTEGER NOT NULL
);
CREATE TABLE audit_records (
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
CREATE INDEX audit_agent ON audit_records(agent, seq);
CREATE INDEX audit_human ON audit_records(human, seq);
CREATE INDEX audit_task ON audit_records(task, seq);
CREATE INDEX audit_warrant ON audit_records(warrant, seq);
CREATE INDEX audit_kind ON audit_records(kind, seq);
CREATE INDEX audit_at ON audit_records(at);
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    head_hash BLOB NOT NULL,
    at INTEGER NOT NULL,
    kid TEXT NOT NULL,
    signature TEXT NOT NULL
);
