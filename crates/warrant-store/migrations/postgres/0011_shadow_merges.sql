-- The shadow activity batches servers have added to `shadow_activity`, by batch id (128
-- random bits, in hex). A server whose write of a batch failed, or whose answer was lost,
-- hands the same batch again; one already here adds nothing, so no count is added twice.
-- Rows older than a day are removed as batches are added.
CREATE TABLE shadow_merges (
    batch TEXT PRIMARY KEY,
    merged_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- What that removal reads.
CREATE INDEX shadow_merges_at ON shadow_merges (merged_at);
