-- Agents that authenticate with a SPIFFE JWT-SVID instead of a key of their own: their
-- SPIFFE ID, unique; `public_key` holds JSON `null` for them.
ALTER TABLE agents ADD COLUMN spiffe_id TEXT;
CREATE UNIQUE INDEX agents_spiffe ON agents (spiffe_id) WHERE spiffe_id IS NOT NULL;
