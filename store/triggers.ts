/** The trigger outbox (migration 004): accepted API triggers waiting to become workflows. */
import type { Db } from './db.js';

export interface TriggerRow<R = unknown> {
  workflow_id: string;
  tenant: string;
  pipeline_id: string;
  request: R;
  created_at: Date;
  attempts: number;
  last_error: string | null;
  started_at: Date | null;
  temporal_run_id: string | null;
  /** Dead-lettered: its start was refused for good (last_error says why); never claimed again. */
  failed_at: Date | null;
}

/** Accepts a trigger; false if one with that workflow id was accepted before. */
export async function enqueueTrigger(
  db: Db,
  t: { workflowId: string; tenant: string; pipelineId: string; taskQueue: string; request: unknown },
): Promise<boolean> {
  const r = await db.query(
    `INSERT INTO run_triggers (workflow_id, tenant, pipeline_id, task_queue, request) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workflow_id) DO NOTHING RETURNING workflow_id`,
    [t.workflowId, t.tenant, t.pipelineId, t.taskQueue, JSON.stringify(t.request)],
  );
  return r.rows.length === 1;
}

/**
 * Claims up to `limit` pending triggers of `taskQueue` (oldest first) for `leaseMs`; other
 * dispatchers (another API replica) skip them. A claim that lapses (its dispatcher died) is taken again.
 */
export async function claimTriggers<R>(
  db: Db,
  taskQueue: string,
  limit: number,
  leaseMs: number,
  only?: string,
): Promise<TriggerRow<R>[]> {
  const r = await db.query<TriggerRow<R>>(
    `UPDATE run_triggers SET claimed_until = now() + ($2 || ' milliseconds')::interval, attempts = attempts + 1
     WHERE workflow_id IN (
       SELECT workflow_id FROM run_triggers
       WHERE task_queue = $4 AND started_at IS NULL AND failed_at IS NULL AND (claimed_until IS NULL OR claimed_until < now()) AND ($3::text IS NULL OR workflow_id = $3)
       ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING *`,
    [limit, String(leaseMs), only ?? null, taskQueue],
  );
  return r.rows;
}

/** Records the start; the runs index moves from queued to running unless the workflow has already written it. */
export async function markStarted(db: Db, workflowId: string, temporalRunId: string | undefined): Promise<void> {
  await db.query(
    `UPDATE run_triggers SET started_at = now(), temporal_run_id = $2, claimed_until = NULL, last_error = NULL WHERE workflow_id = $1`,
    [workflowId, temporalRunId ?? null],
  );
  await db.query(`UPDATE runs SET status = 'running', updated_at = now() WHERE run_id = $1 AND status = 'queued'`, [
    workflowId,
  ]);
}

/** A start that failed for a reason a retry may fix: try again after `retryMs`. */
export async function markRetry(db: Db, workflowId: string, error: string, retryMs: number): Promise<void> {
  await db.query(
    `UPDATE run_triggers SET last_error = $2, claimed_until = now() + ($3 || ' milliseconds')::interval WHERE workflow_id = $1`,
    [workflowId, error.slice(0, 2000), String(retryMs)],
  );
}

/**
 * Dead-letters a trigger whose start failed for good: it is kept with its reason and never
 * claimed again, and its run reads `failed_to_start` (runs list, API) with that reason.
 */
export async function markFailedToStart(db: Db, workflowId: string, error: string): Promise<void> {
  await db.tx(async (t) => {
    await t.query(
      `UPDATE run_triggers SET failed_at = now(), last_error = $2, claimed_until = NULL WHERE workflow_id = $1 AND started_at IS NULL`,
      [workflowId, error.slice(0, 2000)],
    );
    await t.query(
      `UPDATE runs SET status = 'failed_to_start', error = $2, ended_at = now(), updated_at = now() WHERE run_id = $1 AND status = 'queued'`,
      [workflowId, error.slice(0, 2000)],
    );
  });
}

export async function getTrigger<R>(db: Db, workflowId: string): Promise<TriggerRow<R> | undefined> {
  return (await db.query<TriggerRow<R>>(`SELECT * FROM run_triggers WHERE workflow_id = $1`, [workflowId])).rows[0];
}

export async function pendingTriggers(db: Db): Promise<number> {
  return Number(
    (
      await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM run_triggers WHERE started_at IS NULL AND failed_at IS NULL`,
      )
    ).rows[0].n,
  );
}

/** Forgets started and dead-lettered triggers older than `keepMs` (their runs live in Temporal and the runs index). */
export async function pruneTriggers(db: Db, keepMs: number): Promise<number> {
  const r = await db.query(
    `DELETE FROM run_triggers WHERE COALESCE(started_at, failed_at) < now() - ($1 || ' milliseconds')::interval`,
    [String(keepMs)],
  );
  return r.rowCount ?? 0;
}
