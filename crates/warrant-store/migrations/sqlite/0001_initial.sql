CREATE TABLE humans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    entitlements TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL REFERENCES humans(id),
    mode TEXT NOT NULL,
    max_scope TEXT NOT NULL,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at INTEGER,
    labels TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX agents_owner ON agents(owner);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    seed BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
CREATE TABLE spent_assertions (
    agent TEXT NOT NULL,
    jti TEXT NOT NULL,
    exp INTEGER NOT NULL,
    PRIMARY KEY (agent, jti)
);
CREATE INDEX spent_assertions_exp ON spent_assertions(exp);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    human TEXT NOT NULL,
    root_agent TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL
);
CREATE TABLE warrants (
    jti TEXT PRIMARY KEY,
    parent TEXT REFERENCES warrants(jti),
    agent TEXT NOT NULL,
    task TEXT NOT NULL REFERENCES tasks(id),
    human TEXT NOT NULL,
    sub TEXT NOT NULL,
    mode TEXT NOT NULL,
    scope TEXT NOT NULL,
    chain TEXT NOT NULL,
    kid TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX warrants_parent ON warrants(parent);
CREATE INDEX warrants_task ON warrants(task);
CREATE INDEX warrants_kid ON warrants(kid, expires_at);
