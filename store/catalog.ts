/**
 * Typed queries over the lake catalog (migration 050). Committing a version is one
 * transaction: allocate the next number under a row lock on the dataset, insert the
 * version row, move `current_version` if the checks passed, record lineage edges and an
 * ingestion high-water mark. A second commit by the same run and task returns the first.
 */
import type { DatasetId, DatasetVersionRef, Layer } from '../schemas/lake.js';
import type { Db } from './db.js';

export interface ColumnInfo {
  name: string;
  type: string;
  nullable?: boolean;
}
export interface SchemaChange {
  column: string;
  change: 'added' | 'removed' | 'type_changed';
  from?: string;
  to?: string;
}
export interface CheckVerdict {
  name: string;
  kind: string;
  severity: 'error' | 'warn';
  passed: boolean;
  failing: number;
  message: string;
  /** Up to failingRowsLimit failing rows, for inspection. */
  sample: Record<string, unknown>[];
}
export type VersionStatus = 'committed' | 'rejected' | 'vacuumed';

export interface DatasetVersion extends DatasetVersionRef {
  tenant: string;
  status: VersionStatus;
  current: boolean;
  location: string;
  files: string[];
  schema: ColumnInfo[];
  schemaChanges: SchemaChange[];
  rowCount: number;
  bytes: number;
  runId: string;
  pipelineId: string;
  taskId: string;
  inputs: DatasetVersionRef[];
  checks: CheckVerdict[];
  createdAt: string;
  promotedAt?: string;
}

export interface NewVersion {
  id: DatasetId;
  location: string;
  files: string[];
  schema: ColumnInfo[];
  rowCount: number;
  bytes: number;
  inputs: DatasetVersionRef[];
  checks: CheckVerdict[];
  /** False when an error check failed: written, recorded, never made current. */
  promote: boolean;
}

export interface Producer {
  tenant: string;
  runId: string;
  pipelineId: string;
  taskId: string;
}

const COLS = `v.tenant, v.layer, v.namespace, v.name, v.version, v.status, v.location, v.files, v.schema, v.schema_changes, v.row_count, v.bytes,
  v.run_id, v.pipeline_id, v.task_id, v.inputs, v.checks, v.created_at, v.promoted_at, (d.current_version = v.version) AS is_current`;
const FROM = `lake_dataset_versions v JOIN lake_datasets d USING (tenant, layer, namespace, name)`;
/** COLS as an INSERT … RETURNING of a version gives them: it is current exactly when it was promoted. */
const RETURNED = `tenant, layer, namespace, name, version, status, location, files, schema, schema_changes, row_count, bytes,
  run_id, pipeline_id, task_id, inputs, checks, created_at, promoted_at, (status = 'committed') AS is_current`;

type Row = Record<string, unknown>;
const iso = (v: unknown) =>
  v instanceof Date ? v.toISOString() : typeof v === 'string' && v ? new Date(v).toISOString() : undefined;
const json = <T>(v: unknown): T => (typeof v === 'string' ? JSON.parse(v) : v) as T;

function toVersion(r: Row): DatasetVersion {
  return {
    tenant: String(r.tenant),
    layer: r.layer as Layer,
    namespace: String(r.namespace),
    name: String(r.name),
    version: Number(r.version),
    status: r.status as VersionStatus,
    current: r.is_current === true,
    location: String(r.location),
    files: json(r.files),
    schema: json(r.schema),
    schemaChanges: json(r.schema_changes),
    rowCount: Number(r.row_count),
    bytes: Number(r.bytes),
    runId: String(r.run_id),
    pipelineId: String(r.pipeline_id),
    taskId: String(r.task_id),
    inputs: json(r.inputs),
    checks: json(r.checks),
    createdAt: iso(r.created_at)!,
    promotedAt: iso(r.promoted_at),
  };
}

export function datasetKey(d: DatasetId): string {
  return `${d.layer}.${d.namespace === 'default' ? '' : `${d.namespace}.`}${d.name}`;
}

export function schemaChanges(before: ColumnInfo[] | undefined, after: ColumnInfo[]): SchemaChange[] {
  if (!before) return [];
  const b = new Map(before.map((c) => [c.name, c.type]));
  const a = new Map(after.map((c) => [c.name, c.type]));
  const out: SchemaChange[] = [];
  for (const [n, t] of a) {
    if (!b.has(n)) out.push({ column: n, change: 'added', to: t });
    else if (b.get(n) !== t) out.push({ column: n, change: 'type_changed', from: b.get(n), to: t });
  }
  for (const [n, t] of b) if (!a.has(n)) out.push({ column: n, change: 'removed', from: t });
  return out;
}

export class CatalogError extends Error {
  constructor(
    message: string,
    readonly code: 'not_found' | 'vacuumed' | 'bad_ref',
  ) {
    super(message);
  }
}

export class Catalog {
  constructor(readonly db: Db) {}

  async findCommit(p: Producer, id: DatasetId): Promise<DatasetVersion | undefined> {
    const r = await this.db.query(
      `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.layer=$2 AND v.namespace=$3 AND v.name=$4 AND v.run_id=$5 AND v.task_id=$6`,
      [p.tenant, id.layer, id.namespace, id.name, p.runId, p.taskId],
    );
    return r.rows[0] ? toVersion(r.rows[0]) : undefined;
  }

  async current(tenant: string, id: DatasetId): Promise<DatasetVersion | undefined> {
    const r = await this.db.query(
      `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.layer=$2 AND v.namespace=$3 AND v.name=$4 AND v.version = d.current_version`,
      [tenant, id.layer, id.namespace, id.name],
    );
    return r.rows[0] ? toVersion(r.rows[0]) : undefined;
  }

  async version(tenant: string, id: DatasetId, version: number): Promise<DatasetVersion | undefined> {
    const r = await this.db.query(
      `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.layer=$2 AND v.namespace=$3 AND v.name=$4 AND v.version=$5`,
      [tenant, id.layer, id.namespace, id.name, version],
    );
    return r.rows[0] ? toVersion(r.rows[0]) : undefined;
  }

  /** The version to read: current, a number, or the one current at an ISO time. */
  async resolve(tenant: string, id: DatasetId, at?: string): Promise<DatasetVersion> {
    const label = `${datasetKey(id)}${at ? `@${at}` : ''}`;
    let v: DatasetVersion | undefined;
    if (at === undefined) {
      v = await this.current(tenant, id);
      if (!v)
        throw new CatalogError(
          `dataset ${label} has no current version (tenant ${tenant}): run the task that writes it first`,
          'not_found',
        );
    } else if (/^\d+$/.test(at)) {
      v = await this.version(tenant, id, Number(at));
      if (!v)
        throw new CatalogError(
          `dataset ${label} does not exist: see "strata datasets history ${datasetKey(id)}" for its versions`,
          'not_found',
        );
      if (v.status === 'rejected')
        throw new CatalogError(
          `version ${label} failed its checks and was never promoted; read it only for inspection through the catalog`,
          'bad_ref',
        );
    } else {
      const t = new Date(at.replace(/^'|'$/g, ''));
      if (Number.isNaN(t.getTime()))
        throw new CatalogError(`"${at}" in ${datasetKey(id)}@… is neither a version number nor an ISO time`, 'bad_ref');
      const r = await this.db.query(
        `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.layer=$2 AND v.namespace=$3 AND v.name=$4 AND v.promoted_at IS NOT NULL AND date_trunc('milliseconds', v.promoted_at) <= $5 ORDER BY v.promoted_at DESC, v.version DESC LIMIT 1`,
        [tenant, id.layer, id.namespace, id.name, t.toISOString()],
      );
      v = r.rows[0] ? toVersion(r.rows[0]) : undefined;
      if (!v) throw new CatalogError(`dataset ${datasetKey(id)} had no version at ${t.toISOString()}`, 'not_found');
    }
    if (v.status === 'vacuumed')
      throw new CatalogError(
        `version ${datasetKey(id)}@${v.version} was expired by table maintenance (its snapshot and files are gone): read a newer version, see "strata datasets history ${datasetKey(id)}"`,
        'vacuumed',
      );
    return v;
  }

  /** Commits versions of one task's outputs together, with an optional high-water mark. */
  async commit(
    p: Producer,
    versions: NewVersion[],
    watermark?: string,
    /** Runs inside the transaction for each newly inserted version (the Iceberg snapshot of it). */
    onInserted?: (t: Db, v: DatasetVersion, index: number) => Promise<unknown>,
  ): Promise<DatasetVersion[]> {
    return this.db.tx(async (t) => {
      const out: DatasetVersion[] = [];
      for (const [index, nv] of versions.entries()) {
        const { layer, namespace, name } = nv.id;
        const key = [p.tenant, layer, namespace, name];
        // The dataset's row, made if new and locked either way: commits to one dataset queue up
        // here, so the version number taken below is free. Few statements, as the lock is held
        // until the transaction ends.
        const d = await t.query<{ current_version: number | null }>(
          `INSERT INTO lake_datasets (tenant, layer, namespace, name) VALUES ($1,$2,$3,$4)
           ON CONFLICT (tenant, layer, namespace, name) DO UPDATE SET tenant = EXCLUDED.tenant
           RETURNING current_version`,
          key,
        );
        const current = d.rows[0].current_version;
        // This task's version if an earlier attempt committed it, and the current one (the schema
        // this version's changes are counted from), in one read.
        const seen = (
          await t.query(
            `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.layer=$2 AND v.namespace=$3 AND v.name=$4
             AND ((v.run_id=$5 AND v.task_id=$6) OR v.version = $7::int)`,
            [...key, p.runId, p.taskId, current],
          )
        ).rows.map(toVersion);
        const existing = seen.find((v) => v.runId === p.runId && v.taskId === p.taskId);
        if (existing) {
          out.push(existing);
          continue;
        }
        const prev = seen.find((v) => v.version === current);
        const promoted = nv.promote ? 'committed' : 'rejected';
        // The next number is taken in the insert itself, under the dataset's lock.
        const inserted = toVersion(
          (
            await t.query(
              `INSERT INTO lake_dataset_versions (tenant, layer, namespace, name, version, status, location, files, schema, schema_changes, row_count, bytes,
                 run_id, pipeline_id, task_id, inputs, checks, promoted_at)
               SELECT $1,$2,$3,$4, coalesce(max(version), 0) + 1, $5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16, CASE WHEN $5 = 'committed' THEN now() END
               FROM lake_dataset_versions WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4
               RETURNING ${RETURNED}`,
              [
                ...key,
                promoted,
                nv.location,
                JSON.stringify(nv.files),
                JSON.stringify(nv.schema),
                JSON.stringify(schemaChanges(prev?.schema, nv.schema)),
                nv.rowCount,
                nv.bytes,
                p.runId,
                p.pipelineId,
                p.taskId,
                JSON.stringify(nv.inputs),
                JSON.stringify(nv.checks),
              ],
            )
          ).rows[0],
        );
        if (nv.promote)
          await t.query(
            `UPDATE lake_datasets SET current_version=$5, updated_at=now() WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4`,
            [...key, inserted.version],
          );
        if (nv.inputs.length)
          await t.query(
            `INSERT INTO lake_lineage (tenant, from_layer, from_ns, from_name, from_version, to_layer, to_ns, to_name, to_version)
             SELECT $1, i.layer, i.namespace, i.name, i.version, $2, $3, $4, $5
             FROM jsonb_to_recordset($6::jsonb) AS i(layer text, namespace text, name text, version int)
             ON CONFLICT DO NOTHING`,
            [...key, inserted.version, JSON.stringify(nv.inputs)],
          );
        await onInserted?.(t, inserted, index);
        out.push(inserted);
      }
      if (watermark !== undefined)
        await t.query(
          `INSERT INTO lake_watermarks (tenant, pipeline_id, task_id, value) VALUES ($1,$2,$3,$4)
           ON CONFLICT (tenant, pipeline_id, task_id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
          [p.tenant, p.pipelineId, p.taskId, watermark],
        );
      return out;
    });
  }

  /** The number the next version of a dataset gets if nobody commits first (commit allocates it under a lock). */
  async nextVersion(tenant: string, id: DatasetId): Promise<number> {
    const r = await this.db.query<{ n: number }>(
      `SELECT coalesce(max(version), 0) + 1 AS n FROM lake_dataset_versions WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4`,
      [tenant, id.layer, id.namespace, id.name],
    );
    return Number(r.rows[0].n);
  }

  async watermark(tenant: string, pipelineId: string, taskId: string): Promise<string | undefined> {
    const r = await this.db.query<{ value: string }>(
      `SELECT value FROM lake_watermarks WHERE tenant=$1 AND pipeline_id=$2 AND task_id=$3`,
      [tenant, pipelineId, taskId],
    );
    return r.rows[0]?.value;
  }

  async list(tenant: string, filter: { layer?: Layer; namespace?: string } = {}): Promise<DatasetVersion[]> {
    const r = await this.db.query(
      `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.version = d.current_version AND ($2::text IS NULL OR v.layer=$2) AND ($3::text IS NULL OR v.namespace=$3)
       ORDER BY array_position(ARRAY['bronze','silver','gold'], v.layer), v.namespace, v.name`,
      [tenant, filter.layer ?? null, filter.namespace ?? null],
    );
    return r.rows.map(toVersion);
  }

  async versions(tenant: string, id: DatasetId): Promise<DatasetVersion[]> {
    const r = await this.db.query(
      `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.layer=$2 AND v.namespace=$3 AND v.name=$4 ORDER BY v.version DESC`,
      [tenant, id.layer, id.namespace, id.name],
    );
    return r.rows.map(toVersion);
  }

  async exists(tenant: string, id: DatasetId): Promise<boolean> {
    const r = await this.db.query(
      `SELECT 1 FROM lake_datasets WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4`,
      [tenant, id.layer, id.namespace, id.name],
    );
    return r.rowCount > 0;
  }

  /** Dataset-level lineage around one dataset: upstream and downstream up to depth hops. */
  async lineage(
    tenant: string,
    id: DatasetId,
    depth: number,
  ): Promise<{ nodes: DatasetId[]; edges: { from: string; to: string }[] }> {
    const nodes = new Map<string, DatasetId>([[datasetKey(id), id]]);
    const edges = new Map<string, { from: string; to: string }>();
    const walk = async (dir: 'up' | 'down') => {
      let frontier: DatasetId[] = [id];
      for (let d = 0; d < depth && frontier.length; d++) {
        const next: DatasetId[] = [];
        for (const n of frontier) {
          const r =
            dir === 'up'
              ? await this.db.query<Row>(
                  `SELECT DISTINCT from_layer AS layer, from_ns AS namespace, from_name AS name FROM lake_lineage WHERE tenant=$1 AND to_layer=$2 AND to_ns=$3 AND to_name=$4`,
                  [tenant, n.layer, n.namespace, n.name],
                )
              : await this.db.query<Row>(
                  `SELECT DISTINCT to_layer AS layer, to_ns AS namespace, to_name AS name FROM lake_lineage WHERE tenant=$1 AND from_layer=$2 AND from_ns=$3 AND from_name=$4`,
                  [tenant, n.layer, n.namespace, n.name],
                );
          for (const row of r.rows) {
            const m: DatasetId = {
              layer: row.layer as Layer,
              namespace: String(row.namespace),
              name: String(row.name),
            };
            const [from, to] = dir === 'up' ? [datasetKey(m), datasetKey(n)] : [datasetKey(n), datasetKey(m)];
            edges.set(`${from}>${to}`, { from, to });
            if (!nodes.has(datasetKey(m))) {
              nodes.set(datasetKey(m), m);
              next.push(m);
            }
          }
        }
        frontier = next;
      }
    };
    await walk('up');
    await walk('down');
    return { nodes: [...nodes.values()], edges: [...edges.values()] };
  }

  /** Versions that retention may delete: older than the cutoff and not current. */
  async vacuumCandidates(tenant: string, olderThan: Date, id?: DatasetId): Promise<DatasetVersion[]> {
    const r = await this.db.query(
      `SELECT ${COLS} FROM ${FROM} WHERE v.tenant=$1 AND v.status <> 'vacuumed' AND v.version IS DISTINCT FROM d.current_version AND v.created_at < $2
         AND ($3::text IS NULL OR (v.layer=$3 AND v.namespace=$4 AND v.name=$5)) ORDER BY v.layer, v.namespace, v.name, v.version`,
      [tenant, olderThan.toISOString(), id?.layer ?? null, id?.namespace ?? null, id?.name ?? null],
    );
    return r.rows.map(toVersion);
  }

  async markVacuumed(tenant: string, v: DatasetVersionRef): Promise<void> {
    await this.db.query(
      `UPDATE lake_dataset_versions SET status='vacuumed' WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4 AND version=$5`,
      [tenant, v.layer, v.namespace, v.name, v.version],
    );
  }

  /** Every file some live version points at under a dataset (vacuum keeps these). */
  async liveFiles(tenant: string, id: DatasetId): Promise<Set<string>> {
    const r = await this.db.query<{ files: unknown }>(
      `SELECT files FROM lake_dataset_versions WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4 AND status <> 'vacuumed'`,
      [tenant, id.layer, id.namespace, id.name],
    );
    return new Set(r.rows.flatMap((x) => json<string[]>(x.files)));
  }
}
