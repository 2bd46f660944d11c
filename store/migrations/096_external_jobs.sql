-- The ledger of external jobs Strata submitted (a SparkApplication, an EMR step, an Airbyte
-- sync), written by the engines' submit activities (activities/core/job.ts): one row per job,
-- whatever the number of submit attempts, ended when a poll sees it finish or a cancel stops it.
-- The orphan sweeper (activities/sweeper/activities.ts) walks the open rows of its task queue:
-- a job whose owning workflow has closed (a Temporal terminate runs no cleanup) is stopped
-- through its engine and recorded in swept_resources as kind spark-application, emr-step or
-- airbyte-job. It finds what no label or tag does: a step on a tenant's own EMR cluster, a sync.
CREATE TABLE external_jobs (
  id           bigserial PRIMARY KEY,
  engine       text NOT NULL CHECK (engine IN ('spark-k8s', 'emr', 'airbyte')),
  tenant       text NOT NULL,
  scope        text NOT NULL,              -- the JobRef's scope: namespace, EMR cluster id, Airbyte connection id
  name         text NOT NULL,              -- the JobRef's name (deterministic per run and task)
  job_id       text,                       -- the EMR step id, the Airbyte job id
  ref          jsonb NOT NULL,             -- the JobRef the engine's poll and cancel take
  owner        text NOT NULL,              -- the workflow whose activity submitted it (an externalJob)
  task_queue   text NOT NULL,              -- the deployment's queue: a sweeper walks only its own
  submitted_at timestamptz NOT NULL DEFAULT now(),
  ended_at     timestamptz,
  end_state    text,                       -- the engine's final state, or what the cancel answered
  ended_by     text,                       -- the activity that saw it end: emrPoll, airbyteCancel, sweepOrphans …
  UNIQUE (engine, scope, name)
);
CREATE INDEX external_jobs_open ON external_jobs (task_queue, id) WHERE ended_at IS NULL;
