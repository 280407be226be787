-- Shadow activity (tokens Warrant did not issue, presented for a decision) counted by every
-- server sharing this database, by finding subject (`shadow:foreign_issuer`,
-- `token:not_a_warrant`, ...). Each server adds what it counted (`activity`, the counts as
-- JSON; `occurrences` and `last_seen` copied out of it); the leader's sweep turns every row
-- into a finding, marks it `reported`, and deletes a reported row once it has been quiet
-- long enough for its finding to resolve.
CREATE TABLE shadow_activity (
    subject TEXT PRIMARY KEY,
    activity TEXT NOT NULL,
    occurrences BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    reported BOOLEAN NOT NULL DEFAULT FALSE
);
