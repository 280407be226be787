-- Humans carry roles (a JSON array of strings, sorted, each once), which Cedar sees when a
-- human is the subject of a decision. Existing humans have none.
ALTER TABLE humans ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
