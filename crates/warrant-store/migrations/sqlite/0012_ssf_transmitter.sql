-- The Shared Signals transmitter: the outbox of events, in order (a revoked warrant is
-- written here in the transaction that revokes it; a verification event names the one
-- stream it is for), and the receivers' streams, each with the sequence number up to
-- which everything has been delivered (push) or acknowledged (poll).
CREATE TABLE IF NOT EXISTS ssf_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT,
    jti TEXT,
    revocation TEXT,
    state TEXT,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ssf_streams (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    method TEXT NOT NULL,
    endpoint TEXT,
    authorization TEXT,
    audience TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    cursor INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
