-- The orphan sweeper (workflows/sweeper.ts): what it stopped, and each sweep, for /metrics and audits.
-- A resource is a job or cluster Strata made whose owning workflow had closed (a Temporal
-- terminate, a lost worker): a SparkApplication, a SparkConnect server, an EMR cluster, or an
-- externalJob workflow whose run was terminated (cancelled, so it stops its job itself).
CREATE TABLE sweeps (
  id          bigserial PRIMARY KEY,
  swept_at    timestamptz NOT NULL DEFAULT now(),
  checked     integer NOT NULL,
  stopped     integer NOT NULL,
  errors      integer NOT NULL
);

CREATE TABLE swept_resources (
  id          bigserial PRIMARY KEY,
  sweep_id    bigint NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
  kind        text NOT NULL,              -- spark-application | spark-connect | emr-cluster | external-job
  name        text NOT NULL,              -- namespace/name, the EMR cluster id, or the workflow id
  tenant      text,
  owner       text NOT NULL,              -- the owning workflow's id
  owner_status text NOT NULL,             -- TERMINATED, COMPLETED, … or NOT_FOUND
  result      text NOT NULL,              -- deleted | absent | terminating
  swept_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX swept_resources_kind ON swept_resources (kind);
