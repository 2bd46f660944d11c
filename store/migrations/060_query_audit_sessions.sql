-- Every statement of the query API (POST /api/v1/queries), refused ones too: who ran what,
-- on which engine, how long it took, how many rows it answered and how it ended.
CREATE TABLE query_audit (
  statement_id  text PRIMARY KEY,
  tenant        text NOT NULL,
  key_id        text NOT NULL,               -- the API key (or browser session's key) that sent it
  request_id    text,                        -- the client's Idempotency-Key / requestId
  engine        text NOT NULL,               -- duckdb | postgres | mysql
  connection    text,                        -- the connection name (never its URL)
  sql_sha256    text NOT NULL,
  sql_text      text NOT NULL,               -- as sent (params are bound separately), at most 64 KiB
  status        text NOT NULL,               -- running | succeeded | failed | canceled | refused
  error         text,
  row_count     bigint,
  bytes         bigint,
  started_at    timestamptz NOT NULL DEFAULT now(),
  ended_at      timestamptz,
  duration_ms   integer
);
CREATE INDEX query_audit_tenant ON query_audit (tenant, started_at DESC);

-- Browser sessions (GET/POST /login): an API key exchanged for a short-lived cookie. Only the
-- SHA-256 of the cookie's value is kept; the session carries its key's tenant and role and
-- ends with the key (revoked keys are checked on every request).
CREATE TABLE browser_sessions (
  id_hash     text PRIMARY KEY,
  tenant      text NOT NULL,
  key_id      text NOT NULL,
  role        text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  superuser   boolean NOT NULL DEFAULT false,
  csrf        text NOT NULL,                 -- the token state-changing forms must carry
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);
CREATE INDEX browser_sessions_expiry ON browser_sessions (expires_at);
