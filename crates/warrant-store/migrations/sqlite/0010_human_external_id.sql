-- Humans may carry the id an identity provider knows them by (its `sub`, unique among
-- humans), by which an enforcement point may name them. Existing humans have none.
ALTER TABLE humans ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX humans_external_id ON humans (external_id) WHERE external_id IS NOT NULL;
