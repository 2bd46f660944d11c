-- Reconciliation mappings: results listed over time per mapping name, with the run and
-- pipeline that produced them.
ALTER TABLE reconciliations ADD COLUMN IF NOT EXISTS mapping text;
ALTER TABLE reconciliations ADD COLUMN IF NOT EXISTS pipeline_id text;
ALTER TABLE reconciliations ADD COLUMN IF NOT EXISTS run_id text;
CREATE INDEX IF NOT EXISTS reconciliations_mapping ON reconciliations (tenant, mapping, finished_at DESC);
