/** The runs index: written by the workflow (recordRun), read by the API. */
import type { RunRecord, RunState, TaskDelta, TaskState } from '../schemas/run.js';
import type { Db } from './db.js';
import { specTaskIds } from './specs.js';

/** Upserts a run; a final status is never moved back to running (late start writes); `queued` (an accepted API trigger) gives way to anything. */
export async function recordRun(db: Db, r: RunRecord): Promise<void> {
  const s = r.state;
  if (r.seed) await seedRunTasks(db, s.runId, r.seed);
  if (r.closeOpenTasks)
    await db.query(
      `UPDATE run_tasks SET status = $2, ended_at = CASE WHEN started_at IS NULL THEN NULL ELSE COALESCE(ended_at, now()) END, updated_at = now() WHERE run_id = $1 AND status IN ('pending', 'running')`,
      [s.runId, r.closeOpenTasks],
    );
  await db.query(
    `INSERT INTO runs (run_id, tenant, pipeline_id, spec_version, pipeline_version, trigger, logical_date, status, started_at, ended_at, tasks, error, counts, task_count, continuations, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now())
     ON CONFLICT (run_id) DO UPDATE SET
       status = CASE WHEN runs.status NOT IN ('running', 'queued') AND EXCLUDED.status = 'running' THEN runs.status ELSE EXCLUDED.status END,
       tasks = CASE WHEN runs.status NOT IN ('running', 'queued') AND EXCLUDED.status = 'running' THEN runs.tasks WHEN EXCLUDED.tasks = '{}'::jsonb THEN runs.tasks ELSE EXCLUDED.tasks END,
       counts = CASE WHEN runs.status NOT IN ('running', 'queued') AND EXCLUDED.status = 'running' THEN runs.counts ELSE COALESCE(EXCLUDED.counts, runs.counts) END,
       task_count = COALESCE(EXCLUDED.task_count, runs.task_count),
       continuations = GREATEST(EXCLUDED.continuations, runs.continuations),
       started_at = CASE WHEN runs.status = 'queued' THEN EXCLUDED.started_at ELSE runs.started_at END,
       logical_date = CASE WHEN runs.status = 'queued' THEN EXCLUDED.logical_date ELSE runs.logical_date END,
       ended_at = COALESCE(EXCLUDED.ended_at, runs.ended_at),
       error = COALESCE(EXCLUDED.error, runs.error),
       updated_at = now()`,
    [
      s.runId,
      s.tenant,
      s.pipelineId,
      r.specVersion ?? null,
      r.pipelineVersion ?? null,
      String(s.trigger),
      s.logicalDate,
      s.status,
      s.startedAt,
      s.endedAt ?? null,
      JSON.stringify(s.tasks ?? {}),
      r.error ?? null,
      s.counts ? JSON.stringify(s.counts) : null,
      s.taskCount ?? null,
      s.continuations ?? 0,
    ],
  );
}

/** Makes a `pending` row per task of a starting run (inside the database when the spec is stored). */
export async function seedRunTasks(db: Db, runId: string, seed: NonNullable<RunRecord['seed']>): Promise<void> {
  const ids = 'ids' in seed ? seed.ids : await specTaskIds(db, seed.ref);
  for (let i = 0; i < ids.length; i += 5000)
    await db.query(
      `INSERT INTO run_tasks (run_id, task_id, status) SELECT $1, x, 'pending' FROM unnest($2::text[]) AS x ON CONFLICT DO NOTHING`,
      [runId, ids.slice(i, i + 5000)],
    );
}

/**
 * Applies task deltas in one statement. A final state is never moved back to running or
 * pending (a late or repeated write); a task reused by a repair takes its output from the
 * run it was reused from.
 */
export async function recordTaskDeltas(db: Db, runId: string, deltas: TaskDelta[]): Promise<void> {
  if (!deltas.length) return;
  const rows = deltas.map((d) => ({
    task_id: d.id,
    status: d.status,
    attempts: d.attempts ?? 0,
    started_at: d.startedAt ?? null,
    ended_at: d.endedAt ?? null,
    error: d.error ?? null,
    error_type: d.errorType ?? null,
    output: d.output ?? null,
    reused_from: d.reusedFrom ?? null,
  }));
  await db.query(
    `INSERT INTO run_tasks AS rt (run_id, task_id, status, attempts, started_at, ended_at, error, error_type, output, reused_from, updated_at)
     SELECT $1, x.task_id, x.status, x.attempts, x.started_at, x.ended_at, x.error, x.error_type,
            COALESCE(x.output, (SELECT p.output FROM run_tasks p WHERE x.reused_from IS NOT NULL AND p.run_id = x.reused_from AND p.task_id = x.task_id),
                               (SELECT r.tasks->x.task_id->'output' FROM runs r WHERE x.reused_from IS NOT NULL AND r.run_id = x.reused_from)),
            x.reused_from, now()
     FROM jsonb_to_recordset($2::jsonb) AS x(task_id text, status text, attempts int, started_at timestamptz, ended_at timestamptz, error text, error_type text, output jsonb, reused_from text)
     ON CONFLICT (run_id, task_id) DO UPDATE SET
       status = EXCLUDED.status, attempts = EXCLUDED.attempts, started_at = COALESCE(EXCLUDED.started_at, rt.started_at), ended_at = EXCLUDED.ended_at,
       error = EXCLUDED.error, error_type = EXCLUDED.error_type, output = EXCLUDED.output, reused_from = EXCLUDED.reused_from, updated_at = now()
     WHERE rt.status IN ('pending', 'running') OR EXCLUDED.status NOT IN ('pending', 'running')`,
    [runId, JSON.stringify(rows)],
  );
}

interface RunTaskRow {
  task_id: string;
  status: TaskState['status'];
  attempts: number;
  started_at: Date | null;
  ended_at: Date | null;
  error: string | null;
  error_type: string | null;
  output: TaskState['output'] | null;
  reused_from: string | null;
}

const iso = (d: Date | string | null) => (d ? new Date(d).toISOString() : undefined);

/** A run's task rows as task states (in spec order as seeded); empty for runs recorded before task rows. */
export async function getRunTasks(
  db: Db,
  runId: string,
  opts: { ids?: string[] } = {},
): Promise<Record<string, TaskState>> {
  const r = opts.ids
    ? await db.query<RunTaskRow>('SELECT * FROM run_tasks WHERE run_id = $1 AND task_id = ANY($2::text[])', [
        runId,
        opts.ids,
      ])
    : await db.query<RunTaskRow>('SELECT * FROM run_tasks WHERE run_id = $1', [runId]);
  const out: Record<string, TaskState> = {};
  for (const x of r.rows) {
    const t: TaskState = { status: x.status, attempts: x.attempts };
    if (x.started_at) t.startedAt = iso(x.started_at);
    if (x.ended_at) t.endedAt = iso(x.ended_at);
    if (x.error) t.error = x.error;
    if (x.error_type) t.errorType = x.error_type;
    if (x.output) t.output = x.output;
    if (x.reused_from) t.reusedFrom = x.reused_from;
    out[x.task_id] = t;
  }
  return out;
}

/** The tasks of a run that ended `success` (what a repair reuses). */
export async function successfulTasks(db: Db, runId: string): Promise<string[]> {
  const r = await db.query<{ task_id: string }>(
    `SELECT task_id FROM run_tasks WHERE run_id = $1 AND status = 'success'`,
    [runId],
  );
  if (r.rows.length) return r.rows.map((x) => x.task_id);
  const legacy = await db.query<{ id: string }>(
    `SELECT e.key AS id FROM runs, jsonb_each(runs.tasks) e WHERE run_id = $1 AND e.value->>'status' = 'success'`,
    [runId],
  );
  return legacy.rows.map((x) => x.id);
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
  counts?: RunState['counts'] | null;
  task_count?: number | null;
  continuations?: number;
}

/** A run's row without its tasks column (read the task rows with getRunTasks). */
export async function getRunById(db: Db, runId: string): Promise<RunRow | undefined> {
  return (
    await db.query<RunRow>(
      `SELECT run_id, tenant, pipeline_id, pipeline_version, spec_version, trigger, logical_date, status, started_at, ended_at, error, '{}'::jsonb AS tasks, counts, task_count, continuations FROM runs WHERE run_id = $1`,
      [runId],
    )
  ).rows[0];
}

export async function getRun(db: Db, tenant: string, runId: string): Promise<RunRow | undefined> {
  return (await db.query<RunRow>('SELECT * FROM runs WHERE tenant = $1 AND run_id = $2', [tenant, runId])).rows[0];
}

/** Newest first; the cursor is the last row's (started_at, run_id). */
export async function listRuns(
  db: Db,
  tenant: string,
  f: {
    pipeline?: string;
    status?: string;
    since?: string;
    limit: number;
    cursor?: { startedAt: string; runId: string };
  },
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
  return (
    await db.query<RunRow>(
      `SELECT run_id, tenant, pipeline_id, pipeline_version, spec_version, trigger, logical_date, status,
              started_at, ended_at, error, '{}'::jsonb AS tasks, counts, task_count
         FROM runs WHERE ${where.join(' AND ')} ORDER BY started_at DESC, run_id DESC LIMIT $${params.length}`,
      params,
    )
  ).rows;
}

/** An API trigger accepted into the outbox: listed as `queued` until its workflow records itself. */
export async function recordQueued(
  db: Db,
  s: {
    runId: string;
    tenant: string;
    pipelineId: string;
    specVersion?: string;
    pipelineVersion?: number;
    trigger: string;
    logicalDate: string;
    acceptedAt: string;
    tasks: RunState['tasks'];
  },
): Promise<void> {
  await db.query(
    `INSERT INTO runs (run_id, tenant, pipeline_id, spec_version, pipeline_version, trigger, logical_date, status, started_at, tasks, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, now()) ON CONFLICT (run_id) DO NOTHING`,
    [
      s.runId,
      s.tenant,
      s.pipelineId,
      s.specVersion ?? null,
      s.pipelineVersion ?? null,
      s.trigger,
      s.logicalDate,
      s.acceptedAt,
      JSON.stringify(s.tasks),
    ],
  );
}
