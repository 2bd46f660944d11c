-- Tenants, API keys (only a hash is kept), pipelines with immutable content-addressed
-- versions, schedules, idempotent triggers, and reconciliation results.
CREATE TABLE tenants (
  id          text PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id          text PRIMARY KEY,              -- public id, shown in listings
  tenant      text NOT NULL REFERENCES tenants(id),
  role        text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  key_hash    text NOT NULL UNIQUE,          -- sha256 of the secret
  name        text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

CREATE TABLE pipelines (
  tenant          text NOT NULL REFERENCES tenants(id),
  id              text NOT NULL,
  current_version int NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, id)
);

CREATE TABLE pipeline_versions (
  tenant       text NOT NULL,
  pipeline_id  text NOT NULL,
  version      int NOT NULL,
  content_hash text NOT NULL,
  spec         jsonb NOT NULL,
  source       text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, pipeline_id, version),
  UNIQUE (tenant, pipeline_id, content_hash),
  FOREIGN KEY (tenant, pipeline_id) REFERENCES pipelines(tenant, id) ON DELETE CASCADE
);

CREATE TABLE schedules (
  tenant       text NOT NULL,
  pipeline_id  text NOT NULL,
  id           text NOT NULL,
  temporal_id  text NOT NULL UNIQUE,
  definition   jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, pipeline_id, id),
  FOREIGN KEY (tenant, pipeline_id) REFERENCES pipelines(tenant, id) ON DELETE CASCADE
);

CREATE TABLE trigger_keys (
  tenant          text NOT NULL,
  idempotency_key text NOT NULL,
  run_id          text NOT NULL,
  response        jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, idempotency_key)
);

ALTER TABLE runs ADD COLUMN pipeline_version int;
ALTER TABLE runs ADD COLUMN error text;
