-- The trigger outbox: an API trigger is accepted by writing its start request here (one
-- insert, so the API answers in milliseconds whatever Temporal's load); a dispatcher starts
-- the workflow under the same id. The workflow id is the primary key and Temporal rejects
-- a second start of it, so a trigger becomes exactly one run even if dispatch is retried.
CREATE TABLE run_triggers (
  workflow_id   text PRIMARY KEY,
  tenant        text NOT NULL,
  pipeline_id   text NOT NULL,
  task_queue    text NOT NULL,         -- dispatchers start only their own queue's triggers
  request       jsonb NOT NULL,        -- the workflow start: input, search attributes, memo, summary
  created_at    timestamptz NOT NULL DEFAULT now(),
  claimed_until timestamptz,           -- a dispatcher is starting it until then
  attempts      integer NOT NULL DEFAULT 0,
  last_error    text,
  started_at    timestamptz,
  temporal_run_id text
);
CREATE INDEX run_triggers_pending ON run_triggers (task_queue, created_at) WHERE started_at IS NULL;
