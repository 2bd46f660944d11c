-- Runs at any size. A run's spec travels by reference: a registered version, or a snapshot
-- (content-addressed) for runs started with a spec in hand (CLI, transform). Per-task state
-- reaches the metastore as deltas (one row per task), so no row or payload holds a whole
-- large run; `runs` keeps the header and the counts per status.
CREATE TABLE spec_snapshots (
  tenant        text NOT NULL,
  content_hash  text NOT NULL,
  pipeline_id   text NOT NULL,
  spec          jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, content_hash)
);

CREATE TABLE run_tasks (
  run_id       text NOT NULL,
  task_id      text NOT NULL,
  status       text NOT NULL,
  attempts     integer NOT NULL DEFAULT 0,
  started_at   timestamptz,
  ended_at     timestamptz,
  error        text,
  error_type   text,
  output       jsonb,
  reused_from  text,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, task_id)
);

ALTER TABLE runs ADD COLUMN counts jsonb;
ALTER TABLE runs ADD COLUMN task_count integer;
ALTER TABLE runs ADD COLUMN continuations integer NOT NULL DEFAULT 0;

-- A trigger whose start failed for good (a refusal no retry can fix) is dead-lettered:
-- kept with its reason, never claimed again; its run reads `failed_to_start`.
ALTER TABLE run_triggers ADD COLUMN failed_at timestamptz;
