-- Results of dataset comparisons (standalone or as pipeline tasks), kept after Temporal's
-- retention ends.
CREATE TABLE reconciliations (
  id          text PRIMARY KEY,          -- workflow id, or workflow id + '/' + task id
  tenant      text NOT NULL,
  left_uri    text NOT NULL,
  right_uri   text NOT NULL,
  method      text NOT NULL,
  differences bigint NOT NULL,
  result      jsonb NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliations_tenant ON reconciliations (tenant, finished_at DESC);
