CREATE TABLE sessions (
    jti TEXT PRIMARY KEY,
    human TEXT NOT NULL,
    purpose TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_human ON sessions(human) WHERE revoked_at IS NULL;
CREATE INDEX revocations_target ON revocations(target);
