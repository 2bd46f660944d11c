/**
 * The ledger of submitted external jobs (migration 096): what the engines' submit activities
 * started, who owns each, and whether it has ended. The orphan sweeper reads the open rows.
 */
import { NonRetryableError } from '../schemas/errors.js';
import type { JobRef } from '../schemas/external.js';
import type { Db } from './db.js';

export interface ExternalJobRow {
  id: string;
  engine: JobRef['engine'];
  tenant: string;
  scope: string;
  name: string;
  job_id: string | null;
  ref: JobRef;
  owner: string;
  task_queue: string;
  submitted_at: Date;
  ended_at: Date | null;
  end_state: string | null;
  ended_by: string | null;
}

/**
 * Records a submitted job; a retried submit (the same engine, scope and name) is the same row,
 * which it reopens for its current owner: a submit means someone watches the job again.
 * Another tenant's row of the same name is never taken over.
 */
export async function recordExternalJob(
  db: Db,
  j: { ref: JobRef; tenant: string; owner: string; taskQueue: string },
): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO external_jobs (engine, tenant, scope, name, job_id, ref, owner, task_queue)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (engine, scope, name) DO UPDATE
       SET job_id = excluded.job_id, ref = excluded.ref, owner = excluded.owner, task_queue = excluded.task_queue,
           ended_at = NULL, end_state = NULL, ended_by = NULL
       WHERE external_jobs.tenant = excluded.tenant
     RETURNING id`,
    [j.ref.engine, j.tenant, j.ref.scope, j.ref.name, j.ref.id ?? null, JSON.stringify(j.ref), j.owner, j.taskQueue],
  );
  if (!rows[0])
    throw new NonRetryableError(
      `external job ${j.ref.engine} ${j.ref.scope}/${j.ref.name} is recorded for another tenant`,
      'JobNotOwned',
    );
  return rows[0].id;
}

/** Marks a job ended (first writer wins); false when it was not open. */
export async function markExternalJobEnded(
  db: Db,
  ref: Pick<JobRef, 'engine' | 'scope' | 'name'>,
  endState: string,
  endedBy: string,
): Promise<boolean> {
  const r = await db.query(
    `UPDATE external_jobs SET ended_at = now(), end_state = $4, ended_by = $5
     WHERE engine = $1 AND scope = $2 AND name = $3 AND ended_at IS NULL`,
    [ref.engine, ref.scope, ref.name, endState.slice(0, 500), endedBy],
  );
  return r.rowCount > 0;
}

/** Open rows of a task queue after `afterId`, oldest first (page through with the last id). */
export async function listOpenExternalJobs(
  db: Db,
  taskQueue: string,
  o: { afterId?: string; limit?: number } = {},
): Promise<ExternalJobRow[]> {
  const { rows } = await db.query<ExternalJobRow>(
    `SELECT id::text, engine, tenant, scope, name, job_id, ref, owner, task_queue, submitted_at, ended_at, end_state, ended_by
     FROM external_jobs WHERE task_queue = $1 AND ended_at IS NULL AND id > $2 ORDER BY id LIMIT $3`,
    [taskQueue, o.afterId ?? '0', o.limit ?? 500],
  );
  return rows;
}

/** Whether a row is still open (read again just before stopping its job). */
export async function externalJobOpen(db: Db, id: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM external_jobs WHERE id = $1 AND ended_at IS NULL', [id]);
  return rows.length > 0;
}

/** Rows of a tenant's jobs, newest first (audits and tests). */
export async function listExternalJobs(db: Db, tenant: string, limit = 100): Promise<ExternalJobRow[]> {
  const { rows } = await db.query<ExternalJobRow>(
    `SELECT id::text, engine, tenant, scope, name, job_id, ref, owner, task_queue, submitted_at, ended_at, end_state, ended_by
     FROM external_jobs WHERE tenant = $1 ORDER BY id DESC LIMIT $2`,
    [tenant, limit],
  );
  return rows;
}
