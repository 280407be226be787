-- Security event tokens (RFC 8417) received by any server sharing this database, by their
-- issuer and `jti`, until they are too old to be accepted anyway: a SET is acted on once
-- across the servers.
CREATE TABLE received_sets (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    exp BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX received_sets_exp ON received_sets (exp);
