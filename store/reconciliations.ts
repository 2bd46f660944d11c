/** Reconciliation results kept in the metastore (migrations 003, 090): one row per comparison. */
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
