-- The servers sharing this database, each seen by its last heartbeat: how many there are
-- sets each one's share of a cluster-wide rate limit.
CREATE TABLE cluster_members (
    id TEXT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
