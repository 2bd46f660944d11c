-- The lake catalog: every committed dataset version, its schema, size, producer and
-- inputs (lineage), check verdicts, and ingestion high-water marks. A version row is
-- written last, after its files are in place: it is what makes data visible.
CREATE TABLE lake_datasets (
  tenant          text NOT NULL,
  layer           text NOT NULL,
  namespace       text NOT NULL,
  name            text NOT NULL,
  current_version int,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, layer, namespace, name)
);

CREATE TABLE lake_dataset_versions (
  tenant          text NOT NULL,
  layer           text NOT NULL,
  namespace       text NOT NULL,
  name            text NOT NULL,
  version         int NOT NULL,
  -- committed: current or superseded; rejected: an error check failed, never promoted;
  -- vacuumed: files deleted by retention
  status          text NOT NULL,
  location        text NOT NULL,            -- root-relative key prefix of the files
  files           jsonb NOT NULL,           -- root-relative keys
  schema          jsonb NOT NULL,           -- [{name, type, nullable}]
  schema_changes  jsonb NOT NULL DEFAULT '[]'::jsonb,
  row_count       bigint NOT NULL,
  bytes           bigint NOT NULL,
  run_id          text NOT NULL,
  pipeline_id     text NOT NULL,
  task_id         text NOT NULL,
  inputs          jsonb NOT NULL DEFAULT '[]'::jsonb,   -- [{layer, namespace, name, version}]
  checks          jsonb NOT NULL DEFAULT '[]'::jsonb,   -- verdicts with failing-row samples
  created_at      timestamptz NOT NULL DEFAULT now(),
  promoted_at     timestamptz,
  PRIMARY KEY (tenant, layer, namespace, name, version),
  -- one version per producing task per run: a retried commit finds the first
  UNIQUE (tenant, layer, namespace, name, run_id, task_id)
);
CREATE INDEX lake_versions_run ON lake_dataset_versions (tenant, run_id);

CREATE TABLE lake_lineage (
  tenant        text NOT NULL,
  from_layer    text NOT NULL,
  from_ns       text NOT NULL,
  from_name     text NOT NULL,
  from_version  int NOT NULL,
  to_layer      text NOT NULL,
  to_ns         text NOT NULL,
  to_name       text NOT NULL,
  to_version    int NOT NULL,
  PRIMARY KEY (tenant, to_layer, to_ns, to_name, to_version, from_layer, from_ns, from_name, from_version)
);
CREATE INDEX lake_lineage_from ON lake_lineage (tenant, from_layer, from_ns, from_name);

CREATE TABLE lake_watermarks (
  tenant       text NOT NULL,
  pipeline_id  text NOT NULL,
  task_id      text NOT NULL,
  value        text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, pipeline_id, task_id)
);
