CREATE TABLE agent_keys (
    agent_id TEXT PRIMARY KEY,
    set_at INTEGER NOT NULL
);
CREATE TABLE findings (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX findings_status ON findings(status, last_seen);
CREATE INDEX findings_subject ON findings(subject);
CREATE INDEX findings_kind ON findings(kind, last_seen);
CREATE TABLE agent_usage (
    agent_id TEXT PRIMARY KEY,
    usage TEXT NOT NULL
);
CREATE TABLE attestations (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    by_whom TEXT NOT NULL,
    at INTEGER NOT NULL,
    note TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE INDEX attestations_agent ON attestations(agent_id, at);
