-- The point of action. `peps`: the credentials of enforcement points (PEPs) that ask the
-- AuthZEN PDP; only the SHA-256 of each secret is kept. `warrants.claims`: the claims a
-- warrant was issued with (JSON), so a PEP that validated the JWT itself can name the
-- warrant by its `jti` alone; NULL for warrants issued before this migration.
CREATE TABLE peps (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    secret_sha256  BLOB NOT NULL UNIQUE,
    plain_subjects INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);
ALTER TABLE warrants ADD COLUMN claims TEXT;
