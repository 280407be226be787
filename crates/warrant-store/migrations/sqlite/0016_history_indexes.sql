-- Indexes for the reads that must not grow with history. Expired warrants, resolved
-- findings and decided approvals are kept, so without these the governance sweep and the
-- live-warrant gauge read every warrant ever issued, and the unfiltered finding and
-- approval lists (and an approver's approvals) read and sort their whole table.
CREATE INDEX warrants_expires ON warrants(expires_at);
CREATE INDEX findings_recent ON findings(last_seen DESC, id);
CREATE INDEX approvals_approver ON approvals(approver, created_at);
CREATE INDEX approvals_recent ON approvals(created_at);
