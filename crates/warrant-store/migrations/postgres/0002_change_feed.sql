-- The change feed servers sharing this database follow (see src/cluster.rs): every write
-- of a table behind a server's in-memory state adds a numbered change in the writing
-- transaction and announces it on the channel `warrant_changes` when that commits.
-- Writers hold the store's write lock, so numbers are given in commit order.
CREATE TABLE cluster_changes (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cluster_changes_at ON cluster_changes (at);

-- How far the log has been pruned: a reader behind this reloads everything.
CREATE TABLE cluster_feed (pruned_through BIGINT NOT NULL);
INSERT INTO cluster_feed (pruned_through) VALUES (0);

-- TG_ARGV[0]: the change's kind; TG_ARGV[1]: the column naming its subject.
CREATE FUNCTION warrant_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    number BIGINT;
BEGIN
    INSERT INTO cluster_changes (kind, subject)
        VALUES (TG_ARGV[0], to_jsonb(NEW) ->> TG_ARGV[1])
        RETURNING seq INTO number;
    PERFORM pg_notify('warrant_changes', number::TEXT);
    RETURN NULL;
END
$$;

CREATE TRIGGER agents_change AFTER INSERT OR UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION warrant_note_change('agent', 'id');
CREATE TRIGGER humans_change AFTER INSERT OR UPDATE ON humans
    FOR EACH ROW EXECUTE FUNCTION warrant_note_change('human', 'id');
CREATE TRIGGER revocations_change AFTER INSERT ON revocations
    FOR EACH ROW EXECUTE FUNCTION warrant_note_change('revocation', 'id');
CREATE TRIGGER peps_change AFTER INSERT OR UPDATE ON peps
    FOR EACH ROW EXECUTE FUNCTION warrant_note_change('pep', 'id');
CREATE TRIGGER signing_keys_change AFTER INSERT OR UPDATE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION warrant_note_change('key', 'kid');
