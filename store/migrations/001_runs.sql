-- The runs index: kept true by the pipeline workflow (recordRun at start and end), so
-- finished runs are listed and inspected without asking Temporal.
CREATE TABLE runs (
  run_id        text PRIMARY KEY,           -- the workflow id
  tenant        text NOT NULL,
  pipeline_id   text NOT NULL,
  spec_version  text,
  trigger       text NOT NULL,
  logical_date  timestamptz NOT NULL,
  status        text NOT NULL,
  started_at    timestamptz NOT NULL,
  ended_at      timestamptz,
  tasks         jsonb NOT NULL DEFAULT '{}'::jsonb,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_tenant_pipeline ON runs (tenant, pipeline_id, started_at DESC);
CREATE INDEX runs_tenant_status ON runs (tenant, status, started_at DESC);
