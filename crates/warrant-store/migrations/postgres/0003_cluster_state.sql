-- What servers sharing this database share besides the tables: the admin token's
-- SHA-256 (the first server creates the token and keeps it in its data directory; every
-- server accepts it), the policy version in force, and who leads the background work
-- (an advisory lock, no table).
CREATE TABLE cluster_admin (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    token_sha256 BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The policy version every server sharing this database has in force: set by the server
-- that activated it (a reload), announced on the change feed, activated by the others.
CREATE TABLE cluster_policy (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version BIGINT NOT NULL REFERENCES policy_versions(id),
    activated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TRIGGER cluster_policy_change AFTER INSERT OR UPDATE ON cluster_policy
    FOR EACH ROW EXECUTE FUNCTION warrant_note_change('policy', 'version');
