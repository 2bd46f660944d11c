-- Write-audit-publish through the Iceberg catalog (docs/iceberg.md).
--
-- A run's catalog credential: what an external job (Spark, EMR) is given to commit through
-- Strata. Only its SHA-256 is kept. It reads the tenant's warehouse and writes only the
-- task's declared outputs; its commits to `main` land on the audit branch `branch`.
CREATE TABLE iceberg_run_credentials (
  token_hash   text PRIMARY KEY,
  tenant       text NOT NULL,
  workflow_id  text NOT NULL,
  run_id       text NOT NULL,
  pipeline_id  text NOT NULL,
  task_id      text NOT NULL,
  branch       text NOT NULL,
  outputs      jsonb NOT NULL,            -- [{"namespace": [...], "name": "..."}]
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX iceberg_run_credentials_task ON iceberg_run_credentials (tenant, workflow_id, task_id);

-- One audit per (table, branch): the snapshot of `main` the branch was forked from (the
-- publish is a guarded move of `main` from exactly that snapshot), what the audit decided,
-- and the dataset version it recorded. Snapshot ids are 64-bit: kept as text.
CREATE TABLE iceberg_audits (
  tenant       text NOT NULL,
  namespace    text NOT NULL,             -- levels joined by U+001F
  name         text NOT NULL,
  branch       text NOT NULL,
  workflow_id  text NOT NULL,
  task_id      text NOT NULL,
  base_snapshot_id text,                  -- main when the branch was made (null: main had none)
  snapshot_id  text,                      -- the staged snapshot the audit looked at
  status       text NOT NULL DEFAULT 'staged',  -- staged | published | rejected | conflict
  version      int,
  message      text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, namespace, name, branch)
);

-- Tables a run's credential loaded (other than its outputs) and the snapshot `main` was at:
-- the job's inputs, for lineage.
CREATE TABLE iceberg_run_reads (
  tenant       text NOT NULL,
  branch       text NOT NULL,
  namespace    text NOT NULL,
  name         text NOT NULL,
  snapshot_id  text NOT NULL,
  read_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, branch, namespace, name, snapshot_id)
);
