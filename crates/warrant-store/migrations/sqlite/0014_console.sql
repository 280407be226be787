-- Console sign-ins: sessions (the cookie secret's SHA-256, never the secret) and the
-- pending sign-ins at an identity provider (PKCE verifier and nonce, by the SHA-256 of
-- the `state`), each used once.
CREATE TABLE console_sessions (
    digest BLOB PRIMARY KEY,
    principal TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE TABLE console_logins (
    state_digest BLOB PRIMARY KEY,
    issuer TEXT NOT NULL,
    verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
