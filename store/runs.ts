/** The runs index: written by the workflow (recordRun), read by the API. */
import type { RunState } from '../schemas/run.js';
import type { Db } from './db.js';

export interface RunRecord {
  state: RunState;
  specVersion?: string;
  pipelineVersion?: number;
  error?: string;
}

/** Upserts a run; a final status is never moved back to running (late start writes); `queued` (an accepted API trigger) gives way to anything. */
export async function recordRun(db: Db, r: RunRecord): Promise<void> {
  const s = r.state;
  await db.query(
    `INSERT INTO runs (run_id, tenant, pipeline_id, spec_version, pipeline_version, trigger, logical_date, status, started_at, ended_at, tasks, error, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
     ON CONFLICT (run_id) DO UPDATE SET
       status = CASE WHEN runs.status NOT IN ('running', 'queued') AND EXCLUDED.status = 'running' THEN runs.status ELSE EXCLUDED.status END,
       tasks = CASE WHEN runs.status NOT IN ('running', 'queued') AND EXCLUDED.status = 'running' THEN runs.tasks ELSE EXCLUDED.tasks END,
       started_at = CASE WHEN runs.status = 'queued' THEN EXCLUDED.started_at ELSE runs.started_at END,
       logical_date = CASE WHEN runs.status = 'queued' THEN EXCLUDED.logical_date ELSE runs.logical_date END,
       ended_at = COALESCE(EXCLUDED.ended_at, runs.ended_at),
       error = COALESCE(EXCLUDED.error, runs.error),
       updated_at = now()`,
    [s.runId, s.tenant, s.pipelineId, r.specVersion ?? null, r.pipelineVersion ?? null, String(s.trigger), s.logicalDate, s.status, s.startedAt, s.endedAt ?? null, JSON.stringify(s.tasks), r.error ?? null],
  );
}

export interface RunRow {
  run_id: string;
  tenant: string;
  pipeline_id: string;
  pipeline_version: number | null;
  spec_version: string | null;
  trigger: string;
  logical_date: Date;
  status: string;
  started_at: Date;
  ended_at: Date | null;
  tasks: RunState['tasks'];
  error: string | null;
}

export async function getRun(db: Db, tenant: string, runId: string): Promise<RunRow | undefined> {
  return (await db.query<RunRow>('SELECT * FROM runs WHERE tenant = $1 AND run_id = $2', [tenant, runId])).rows[0];
}

/** Newest first; the cursor is the last row's (started_at, run_id). */
export async function listRuns(
  db: Db,
  tenant: string,
  f: { pipeline?: string; status?: string; since?: string; limit: number; cursor?: { startedAt: string; runId: string } },
): Promise<RunRow[]> {
  const where = ['tenant = $1'];
  const params: unknown[] = [tenant];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (f.pipeline) add('pipeline_id = ?', f.pipeline);
  if (f.status) add('status = ?', f.status);
  if (f.since) add('started_at >= ?', f.since);
  if (f.cursor) {
    params.push(f.cursor.startedAt, f.cursor.runId);
    where.push(`(started_at, run_id) < ($${params.length - 1}, $${params.length})`);
  }
  params.push(f.limit);
  return (await db.query<RunRow>(`SELECT run_id, tenant, pipeline_id, pipeline_version, spec_version, trigger, logical_date, status, started_at, ended_at, error, '{}'::jsonb AS tasks FROM runs WHERE ${where.join(' AND ')} ORDER BY started_at DESC, run_id DESC LIMIT $${params.length}`, params)).rows;
}

/** An API trigger accepted into the outbox: listed as `queued` until its workflow records itself. */
export async function recordQueued(db: Db, s: { runId: string; tenant: string; pipelineId: string; specVersion?: string; pipelineVersion?: number; trigger: string; logicalDate: string; acceptedAt: string; tasks: RunState['tasks'] }): Promise<void> {
  await db.query(
    `INSERT INTO runs (run_id, tenant, pipeline_id, spec_version, pipeline_version, trigger, logical_date, status, started_at, tasks, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, now()) ON CONFLICT (run_id) DO NOTHING`,
    [s.runId, s.tenant, s.pipelineId, s.specVersion ?? null, s.pipelineVersion ?? null, s.trigger, s.logicalDate, s.acceptedAt, JSON.stringify(s.tasks)],
  );
}
