/** Reconciliation results kept in the metastore (migrations 003, 090): one row per comparison. */
import type { ReconcileOutcome } from '../schemas/notify.js';
import type { Db } from './db.js';

export interface ReconciliationRow {
  id: string;
  mapping: string | null;
  pipeline: string | null;
  runId: string | null;
  left: string;
  right: string;
  method: string;
  differences: number;
  finishedAt: string;
  exact: boolean;
  policy?: string;
  counts?: Record<string, number>;
  differencesDataset?: { dataset: string; version: number; rows: number };
}

/** A tenant's results, newest first, optionally of one mapping and/or pipeline. */
export async function listReconciliations(
  db: Db,
  tenant: string,
  f: { mapping?: string; pipeline?: string; limit: number },
): Promise<ReconciliationRow[]> {
  const r = await db.query<Record<string, unknown>>(
    `SELECT id, mapping, pipeline_id, run_id, left_uri, right_uri, method, differences, finished_at, result
       FROM reconciliations
      WHERE tenant = $1 AND ($2::text IS NULL OR mapping = $2) AND ($3::text IS NULL OR pipeline_id = $3)
      ORDER BY finished_at DESC, id DESC LIMIT $4`,
    [tenant, f.mapping ?? null, f.pipeline ?? null, f.limit],
  );
  return r.rows.map((x) => {
    const res = (typeof x.result === 'string' ? JSON.parse(x.result) : x.result) as Record<string, unknown>;
    return {
      id: String(x.id),
      mapping: (x.mapping as string | null) ?? null,
      pipeline: (x.pipeline_id as string | null) ?? null,
      runId: (x.run_id as string | null) ?? null,
      left: String(x.left_uri),
      right: String(x.right_uri),
      method: String(x.method),
      differences: Number(x.differences),
      finishedAt: new Date(x.finished_at as string).toISOString(),
      exact: res.exact !== false,
      policy: res.policy as string | undefined,
      counts: res.counts as Record<string, number> | undefined,
      differencesDataset: res.differencesDataset as ReconciliationRow['differencesDataset'],
    };
  });
}

/**
 * A run's reconcile tasks for its notifier: the results of the tasks named (mappings with
 * rules of their own) and, with `warned`, of any `warn` comparison that found differences
 * (at most `limit`), each with the task's status and error from the run's task rows. Only
 * the tenant's own run answers.
 */
export async function runReconciliations(
  db: Db,
  tenant: string,
  runId: string,
  f: { tasks: string[]; warned: boolean; limit: number },
): Promise<ReconcileOutcome[]> {
  const own = await db.query('SELECT 1 FROM runs WHERE run_id = $1 AND tenant = $2', [runId, tenant]);
  if (!own.rows.length) return [];
  const prefix = `${runId}/`;
  const rows = await db.query<{ id: string; mapping: string | null; differences: string; result: unknown }>(
    `(SELECT id, mapping, differences, result FROM reconciliations
       WHERE tenant = $1 AND run_id = $2 AND id = ANY($3::text[]))
     UNION
     (SELECT id, mapping, differences, result FROM reconciliations
       WHERE $4 AND tenant = $1 AND run_id = $2 AND result->>'policy' = 'warn' AND differences > 0
       ORDER BY finished_at, id LIMIT $5)`,
    [tenant, runId, f.tasks.map((t) => prefix + t), f.warned, f.limit],
  );
  const found = new Map<string, { mapping: string | null; differences: number; result: Record<string, unknown> }>();
  for (const x of rows.rows)
    if (x.id.startsWith(prefix))
      found.set(x.id.slice(prefix.length), {
        mapping: x.mapping,
        differences: Number(x.differences),
        result: (typeof x.result === 'string' ? JSON.parse(x.result) : x.result) as Record<string, unknown>,
      });
  const ids = [...new Set([...f.tasks, ...found.keys()])];
  const tasks = await db.query<{ task_id: string; status: string; error: string | null }>(
    'SELECT task_id, status, error FROM run_tasks WHERE run_id = $1 AND task_id = ANY($2::text[])',
    [runId, ids],
  );
  const state = new Map(tasks.rows.map((t) => [t.task_id, t]));
  return ids.flatMap((task): ReconcileOutcome[] => {
    const t = state.get(task);
    if (!t) return [];
    const r = found.get(task);
    const policy = (r?.result.policy as ReconcileOutcome['policy'] | undefined) ?? 'record';
    const counts = r?.result.counts as Record<string, number> | undefined;
    return [
      {
        task,
        ...(r?.mapping ? { mapping: r.mapping } : {}),
        policy,
        status: t.status,
        ...(r
          ? {
              differences: r.differences,
              ...(counts
                ? {
                    counts: {
                      matched: counts.matched ?? 0,
                      changed: counts.changed ?? 0,
                      onlyLeft: counts.onlyLeft ?? 0,
                      onlyRight: counts.onlyRight ?? 0,
                    },
                  }
                : {}),
              ...(r.result.differencesDataset
                ? { differencesDataset: r.result.differencesDataset as ReconcileOutcome['differencesDataset'] }
                : {}),
            }
          : {}),
        ...(t.status === 'failed' && t.error ? { error: t.error.slice(0, 2000) } : {}),
      },
    ];
  });
}
