-- Notification deliveries: one row per (run, rule, event), written before the first send,
-- so a replayed run or a retried delivery finds it and never sends twice. Holds channel
-- names and outcomes only; what a channel is (URLs, keys, credentials) is configuration.
CREATE TABLE notification_deliveries (
  run_id          text NOT NULL,
  rule            text NOT NULL,
  event           text NOT NULL,
  tenant          text NOT NULL,
  pipeline_id     text NOT NULL,
  channel         text NOT NULL,
  channel_type    text NOT NULL,
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  last_error      text,
  response_status integer,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz,
  PRIMARY KEY (run_id, rule, event)
);
CREATE INDEX notification_deliveries_tenant_run ON notification_deliveries (tenant, run_id);
