CREATE TABLE warrant_agents (
    agent TEXT NOT NULL,
    jti TEXT NOT NULL REFERENCES warrants(jti),
    PRIMARY KEY (agent, jti)
) WITHOUT ROWID;
INSERT OR IGNORE INTO warrant_agents (agent, jti) SELECT j.value, w.jti FROM warrants w, json_each(w.chain) j;
