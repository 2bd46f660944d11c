/**
 * The catalog as a service: list, get, versions, lineage and preview of datasets, and
 * retention (vacuum, now table maintenance). Plain functions over the lake (store + catalog) that take a tenant
 * and throw RequestError with a 4xx status for bad input; the HTTP API mounts them as
 * routes and the CLI calls them directly.
 */
import type { LakeDeps } from '../activities/lake/engine.js';
import { prepareDuckdbQuery, QueryRefused } from '../activities/sql/query.js';
import { forTenant } from '../activities/lake/open.js';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { LAYERS, Namespace, type DatasetId, type Layer } from '../schemas/lake.js';
import { CatalogError, datasetKey, type DatasetVersion } from '../store/catalog.js';
import { RequestError } from '../schemas/errors.js';
import { expireSnapshots, removeOrphans } from '../activities/iceberg/maintenance.js';
import { icebergIdent } from '../activities/iceberg/writer.js';
import { IcebergStore } from '../store/iceberg.js';
import { tenantDatasets } from '../store/maintenance.js';

const NAME_RE = /^(bronze|silver|gold)\.(?:([a-z][a-z0-9_]{0,62})\.)?([a-z_][a-z0-9_]{0,62})(?:@(\d+|[0-9T:.Z+-]+))?$/;

/** `layer.name`, `layer.namespace.name`, optionally `@version` or `@ISO-time`. */
export function parseDatasetRef(ref: string): { id: DatasetId; at?: string } {
  const m = NAME_RE.exec(ref.trim());
  if (!m)
    throw new RequestError(
      `"${ref}" is not a dataset name: write layer.name (e.g. silver.orders) or layer.namespace.name, optionally @VERSION or @ISO-TIME`,
      400,
    );
  return { id: { layer: m[1] as Layer, namespace: m[2] ?? 'default', name: m[3] }, at: m[4] };
}

export interface DatasetSummary {
  dataset: string;
  layer: Layer;
  namespace: string;
  name: string;
  version: number;
  rowCount: number;
  bytes: number;
  columns: number;
  updatedAt: string;
  producedBy: { runId: string; pipelineId: string; taskId: string };
}

const summary = (v: DatasetVersion): DatasetSummary => ({
  dataset: datasetKey(v),
  layer: v.layer,
  namespace: v.namespace,
  name: v.name,
  version: v.version,
  rowCount: v.rowCount,
  bytes: v.bytes,
  columns: v.schema.length,
  updatedAt: v.promotedAt ?? v.createdAt,
  producedBy: { runId: v.runId, pipelineId: v.pipelineId, taskId: v.taskId },
});

const versionInfo = (v: DatasetVersion) => ({
  version: v.version,
  status: v.status,
  current: v.current,
  rowCount: v.rowCount,
  bytes: v.bytes,
  createdAt: v.createdAt,
  promotedAt: v.promotedAt,
  runId: v.runId,
  taskId: v.taskId,
  schemaChanges: v.schemaChanges,
  checks: v.checks.map((c) => ({
    name: c.name,
    severity: c.severity,
    passed: c.passed,
    failing: c.failing,
    message: c.message,
  })),
  inputs: v.inputs.map((i) => `${datasetKey(i)}@${i.version}`),
});

export interface VacuumResult {
  versions: { dataset: string; version: number }[];
  filesDeleted: number;
  dryRun: boolean;
  /** Datasets left alone, with why. */
  skipped: string[];
}

export class DatasetsService {
  constructor(private readonly lake: LakeDeps) {}

  private async mustExist(tenant: string, id: DatasetId) {
    if (!(await this.lake.catalog.exists(tenant, id)))
      throw new RequestError(`no dataset ${datasetKey(id)} for tenant ${tenant}: see "strata datasets list"`, 404);
  }

  async list(tenant: string, filter: { layer?: string; namespace?: string } = {}): Promise<DatasetSummary[]> {
    if (filter.layer && !LAYERS.includes(filter.layer as Layer))
      throw new RequestError(`layer must be one of ${LAYERS.join(', ')} (got "${filter.layer}")`, 400);
    if (filter.namespace && !Namespace.safeParse(filter.namespace).success)
      throw new RequestError(`"${filter.namespace}" is not a namespace`, 400);
    return (
      await this.lake.catalog.list(tenant, { layer: filter.layer as Layer | undefined, namespace: filter.namespace })
    ).map(summary);
  }

  /** The dataset: current version's schema and checks, and its versions. */
  async get(tenant: string, ref: string) {
    const { id } = parseDatasetRef(ref);
    await this.mustExist(tenant, id);
    const versions = await this.lake.catalog.versions(tenant, id);
    const current = versions.find((v) => v.current);
    return {
      ...(current ? summary(current) : { dataset: datasetKey(id), ...id }),
      location: current ? forTenant(this.lake, tenant).store.uri(current.location) : undefined,
      schema: current?.schema ?? [],
      checks:
        current?.checks.map((c) => ({
          name: c.name,
          kind: c.kind,
          severity: c.severity,
          passed: c.passed,
          failing: c.failing,
          message: c.message,
        })) ?? [],
      versions: versions.map(versionInfo),
    };
  }

  async versions(tenant: string, ref: string) {
    const { id } = parseDatasetRef(ref);
    await this.mustExist(tenant, id);
    return (await this.lake.catalog.versions(tenant, id)).map(versionInfo);
  }

  async lineage(tenant: string, ref: string, depth = 3) {
    if (!Number.isInteger(depth) || depth < 1 || depth > 20)
      throw new RequestError(`depth must be an integer from 1 to 20 (got ${depth})`, 400);
    const { id } = parseDatasetRef(ref);
    await this.mustExist(tenant, id);
    const g = await this.lake.catalog.lineage(tenant, id, depth);
    return {
      dataset: datasetKey(id),
      depth,
      nodes: g.nodes.map((n) => ({ dataset: datasetKey(n), ...n })),
      edges: g.edges,
    };
  }

  /** The first rows of the current version (or of `name@version` / `name@time`). */
  async preview(
    tenant: string,
    ref: string,
    limit = 20,
  ): Promise<{ dataset: string; version: number; columns: string[]; rows: Record<string, unknown>[] }> {
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      throw new RequestError(`limit must be an integer from 1 to 1000 (got ${limit})`, 400);
    const { id, at } = parseDatasetRef(ref);
    await this.mustExist(tenant, id);
    const v = await this.lake.catalog.resolve(tenant, id, at).catch((e) => {
      if (e instanceof CatalogError)
        throw new RequestError(e.message, e.code === 'bad_ref' ? 400 : e.code === 'vacuumed' ? 410 : 404);
      throw e;
    });
    // The query path (POST /api/v1/queries): the version resolved through the tenant's catalog,
    // the sandbox granting exactly its files, one SELECT, rows capped.
    const q = await prepareDuckdbQuery({
      lake: forTenant(this.lake, tenant),
      tenant,
      namespace: id.namespace,
      sql: `SELECT * FROM ${id.layer}.${id.name}@${v.version} LIMIT ${limit}`,
      scratch: path.join(os.tmpdir(), 'strata-preview', randomUUID()),
    }).catch((e) => {
      if (e instanceof QueryRefused) throw new RequestError(e.message, e.status);
      throw e;
    });
    const r = await q.run({ maxRows: limit, truncate: true, rowsHint: 'lower the limit', duckdbJson: true });
    const columns = r.columns.map((c) => c.name);
    return {
      dataset: datasetKey(id),
      version: v.version,
      columns,
      rows: r.rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i]]))),
    };
  }

  /**
   * Retention, the old way of asking for it (`strata datasets vacuum`): now table maintenance's
   * snapshot expiry and orphan removal (activities/iceberg/maintenance.ts), with `olderThanDays`
   * as both the snapshot age and the orphan safety age and one snapshot always kept. Versions
   * whose snapshot expires read as expired (410); their files, and files no version or
   * snapshot points at (crashed attempts) older than the cutoff, are deleted. A dataset that
   * is not an Iceberg table yet is listed in `skipped` (run `strata tables migrate`).
   */
  async vacuum(
    tenant: string,
    o: { olderThanDays: number; dataset?: string; dryRun?: boolean; now?: Date },
  ): Promise<VacuumResult> {
    if (!(o.olderThanDays >= 0))
      throw new RequestError(`--older-than must be a number of days ≥ 0 (got ${o.olderThanDays})`, 400);
    const id = o.dataset ? parseDatasetRef(o.dataset).id : undefined;
    if (id) await this.mustExist(tenant, id);
    const ms = o.olderThanDays * 86_400_000;
    const now = (o.now ?? new Date()).getTime();
    // Only this tenant's prefix is listed or deleted: another tenant's dataset of the same name is out of reach.
    const scoped = forTenant(this.lake, tenant);
    const deps = { db: this.lake.catalog.db, store: scoped.store, cacheDir: scoped.cacheDir };
    const out: VacuumResult = { versions: [], filesDeleted: 0, dryRun: !!o.dryRun, skipped: [] };
    const cat = new IcebergStore(this.lake.catalog.db);
    for (const ds of id ? [id] : await tenantDatasets(this.lake.catalog.db, tenant)) {
      const ident = icebergIdent(ds);
      const table = { tenant, ...ident };
      if (!(await cat.table(tenant, ident.namespace, ident.name))) {
        out.skipped.push(`${datasetKey(ds)}: not an Iceberg table yet (run "strata tables migrate")`);
        continue;
      }
      const exp = await expireSnapshots(deps, table, {
        now,
        overrides: { maxSnapshotAgeMs: ms, minSnapshotsToKeep: 1 },
        dryRun: o.dryRun,
      });
      const orphans = await removeOrphans(deps, table, { now, overrides: { orphanOlderThanMs: ms }, dryRun: o.dryRun });
      out.versions.push(...exp.versions.sort((a, b) => a - b).map((version) => ({ dataset: datasetKey(ds), version })));
      out.filesDeleted += exp.filesDeleted + orphans.filesDeleted;
    }
    return out;
  }
}
