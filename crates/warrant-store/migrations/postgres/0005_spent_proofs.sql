-- DPoP proofs (RFC 9449) spent by any server sharing this database, until they are too
-- old to be accepted anyway: a proof is accepted once across the servers.
CREATE TABLE spent_proofs (
    jkt TEXT NOT NULL,
    jti TEXT NOT NULL,
    exp BIGINT NOT NULL,
    PRIMARY KEY (jkt, jti)
);
CREATE INDEX spent_proofs_exp ON spent_proofs (exp);
