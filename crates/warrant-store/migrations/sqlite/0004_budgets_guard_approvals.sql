ALTER TABLE warrants ADD COLUMN budget TEXT;
CREATE INDEX warrants_budget ON warrants(expires_at) WHERE budget IS NOT NULL;
CREATE TABLE budget_spend (
    jti TEXT NOT NULL,
    counter TEXT NOT NULL,
    spent INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (jti, counter)
);
CREATE INDEX budget_spend_exp ON budget_spend(expires_at);
CREATE TABLE agent_guard (
    agent_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX approvals_status ON approvals(status, created_at);
CREATE INDEX approvals_agent ON approvals(agent_id, created_at);
