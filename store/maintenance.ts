/**
 * What table maintenance reads from the metastore besides the tables themselves: every
 * table to visit, and the dataset versions pipelines pin by number (`silver.orders@3` in a
 * registered pipeline's SQL, or in the version a queued or running run uses), which
 * snapshot expiry must keep.
 */
import { datasetRefsInSql, type DatasetId } from '../schemas/lake.js';
import type { Db } from './db.js';
import { NS_SEP } from './iceberg.js';

export interface TableName {
  tenant: string;
  namespace: string[];
  name: string;
}

/** Every table of every tenant (or of one), in a stable order. */
export async function maintenanceTables(db: Db, tenant?: string): Promise<TableName[]> {
  const r = await db.query<{ tenant: string; namespace: string; name: string }>(
    `SELECT tenant, namespace, name FROM iceberg_tables WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, namespace, name`,
    [tenant ?? null],
  );
  return r.rows.map((x) => ({ tenant: x.tenant, namespace: x.namespace.split(NS_SEP), name: x.name }));
}

/**
 * Version numbers of a dataset that a pipeline names as `layer.name@N`: in the SQL (or an
 * ingest query, or a reconcile side) of the current version of any registered pipeline of
 * the tenant, or of the pipeline version a queued or running run was started with. Only
 * tasks whose text names the dataset are parsed.
 */
export async function pinnedVersions(db: Db, tenant: string, id: DatasetId): Promise<Map<number, string>> {
  const r = await db.query<{ pipeline_id: string; version: number; task: Record<string, unknown> }>(
    `SELECT pv.pipeline_id, pv.version, t AS task
       FROM pipeline_versions pv
       JOIN pipelines p ON p.tenant = pv.tenant AND p.id = pv.pipeline_id
       CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(pv.spec->'tasks') = 'array' THEN pv.spec->'tasks' ELSE '[]'::jsonb END) t
      WHERE pv.tenant = $1
        AND (pv.version = p.current_version
             OR EXISTS (SELECT 1 FROM runs r WHERE r.tenant = pv.tenant AND r.pipeline_id = pv.pipeline_id
                          AND r.pipeline_version = pv.version AND r.status IN ('queued', 'running')))
        AND strpos(t::text, $2) > 0`,
    [tenant, `${id.layer}.${id.name}@`],
  );
  const out = new Map<number, string>();
  for (const row of r.rows) {
    const task = typeof row.task === 'string' ? (JSON.parse(row.task) as Record<string, unknown>) : row.task;
    const ns = typeof task.namespace === 'string' ? task.namespace : 'default';
    if (ns !== id.namespace) continue;
    const texts = [task.sql, task.query, task.left, task.right].filter((x): x is string => typeof x === 'string');
    for (const text of texts)
      for (const ref of datasetRefsInSql(text))
        if (ref.layer === id.layer && ref.name === id.name && ref.at && /^\d+$/.test(ref.at))
          out.set(Number(ref.at), `pipeline ${row.pipeline_id} v${row.version} task ${String(task.id)}`);
  }
  return out;
}

/** Every dataset of a tenant (with or without a current version). */
export async function tenantDatasets(db: Db, tenant: string): Promise<DatasetId[]> {
  const r = await db.query<DatasetId>(
    `SELECT layer, namespace, name FROM lake_datasets WHERE tenant = $1 ORDER BY layer, namespace, name`,
    [tenant],
  );
  return r.rows;
}
