-- Humans carry roles (a JSON array of strings, sorted, each once), which Cedar sees when a
-- human is the subject of a decision, and optionally the id an identity provider knows
-- them by (unique), by which an enforcement point may name them. Existing humans have
-- neither.
ALTER TABLE humans ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
ALTER TABLE humans ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX humans_external_id ON humans (external_id) WHERE external_id IS NOT NULL;
