-- A run's comparisons, looked up by its notifier (mapping rules, `warn` comparisons that differ).
CREATE INDEX IF NOT EXISTS reconciliations_run ON reconciliations (tenant, run_id);
