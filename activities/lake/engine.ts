/**
 * Datasets on DuckDB over the lake store. Reading: every `layer.name[@at]` a SQL text
 * names becomes a DuckDB view over that version's Parquet files (downloaded to a local
 * cache first when the lake is on S3; files of a version never change, so the cache
 * needs no invalidation). Writing: the result goes to an attempt-scoped key under the
 * dataset, checks run over it, and only then the catalog row is committed — the step that
 * makes the version visible (and current, when no error check failed). A crashed or
 * retried attempt leaves files nobody points at, which vacuum removes.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  datasetRefsInSql,
  isLayer,
  type DatasetId,
  type DatasetVersionRef,
  type Check,
  DATASET_REF_IN_SQL_RE,
} from '../../schemas/lake.js';
import {
  CatalogError,
  datasetKey,
  type Catalog,
  type CheckVerdict,
  type DatasetVersion,
  type NewVersion,
  type Producer,
} from '../../store/catalog.js';
import { NonRetryableError, errorMessage } from '../../schemas/errors.js';
import { whileDuckWorks } from '../sql/sandbox.js';
import {
  commitVersionSnapshot,
  prepareVersionSnapshot,
  icebergIdent,
  keyOf,
  planSchema,
  SchemaMovedError,
  snapshotFiles,
  type IcebergFile,
  type IcebergWrite,
  type PartitionValue,
} from '../iceberg/writer.js';
import { MURMUR_MACROS, parsePartitionBy, partitionExpr, resolveSpec } from '../iceberg/partition.js';
import { type PartitionField, tableMetadata } from '../iceberg/metadata.js';
import type { StructType } from '../iceberg/schema.js';
import { IcebergStore } from '../../store/iceberg.js';
import { castList, fieldIdsClause } from '../iceberg/schema.js';
import { fileStats } from '../iceberg/stats.js';
import type { ObjectStore } from '../s3/client.js';
import { describeSelect } from '../sql/duckdb.js';
import { quoteLiteral } from '../sql/quote.js';
import { countFailing, describeCheck, ident, runCheck } from '../quality/checks.js';
import {
  OL_PRODUCER,
  runEvent,
  schemaFacet,
  taskRunUuid,
  type LineageSink,
  type OlDataset,
} from '../catalog/openlineage.js';

export interface LakeDeps {
  /** The lake's root. Tasks never use it directly: `forTenant` scopes it to one tenant. */
  store: ObjectStore;
  /** Tenants whose lake is a root of their own (STRATA_TENANT_LAKES). */
  tenantLakes?: Record<string, ObjectStore>;
  /** Per-tenant locations outside the lake that its tasks may use (STRATA_TENANT_LOCATIONS). */
  tenantLocations?: Record<string, string[]>;
  /** Set once scoped by `forTenant`. */
  tenant?: string;
  catalog: Catalog;
  /** Local scratch: S3 downloads and outputs before upload. */
  cacheDir: string;
  lineage?: LineageSink;
  /** Test hooks that simulate a crash at a given step. */
  faults?: { beforeCommit?: (id: DatasetId) => void | Promise<void> };
  /**
   * false: write each version's Iceberg snapshot inside the commit transaction instead of
   * ahead of it (bench:medallion measures both side by side). Default true.
   */
  prepareSnapshots?: boolean;
}

export const datasetPrefix = (id: DatasetId) => `${id.layer}/${id.namespace}/${id.name}`;

export { openDuck } from '../sql/sandbox.js';

/**
 * A local path DuckDB can read for a lake key. Dataset files never change once written,
 * so they are cached by key; mutable objects (landing files) pass `scratch`, a folder
 * private to the attempt.
 */
export async function localFile(deps: LakeDeps, key: string, scratch?: string): Promise<string> {
  const local = deps.store.localPath(key);
  if (local) return local;
  const cached = path.join(scratch ?? path.join(deps.cacheDir, 'objects'), key);
  if (!(await stat(cached).catch(() => undefined))) {
    const tmp = `${cached}.${process.pid}.${Math.random().toString(36).slice(2)}.part`;
    await deps.store.getFile(key, tmp);
    await import('node:fs/promises').then((f) => f.rename(tmp, cached));
  }
  return cached;
}

function catalogErr(e: unknown): never {
  if (e instanceof CatalogError) throw new NonRetryableError(e.message, 'DatasetError');
  throw e;
}

/** Creates a view for one dataset version; returns the local files it reads (the sandbox grant). */
export async function registerView(
  conn: DuckDBConnection,
  deps: LakeDeps,
  v: DatasetVersion,
  viewName: string,
): Promise<string[]> {
  const files = await Promise.all(v.files.map((f) => localFile(deps, f)));
  await conn.run(`CREATE SCHEMA IF NOT EXISTS ${v.layer}`);
  await conn.run(
    `CREATE OR REPLACE VIEW ${viewName} AS SELECT * FROM read_parquet([${files.map(quoteLiteral).join(', ')}])`,
  );
  return files;
}

/**
 * Resolves the datasets a SQL text reads and rewrites `layer.name@at` into view names.
 * Returns the rewritten SQL and the versions read (lineage inputs).
 */
export async function attachInputs(
  conn: DuckDBConnection,
  deps: LakeDeps,
  tenant: string,
  namespace: string,
  sql: string,
): Promise<{ sql: string; inputs: DatasetVersion[]; files: string[] }> {
  const refs = datasetRefsInSql(sql);
  const files: string[] = [];
  const inputs = new Map<string, DatasetVersion>();
  const viewOf = new Map<string, string>();
  for (const r of refs) {
    if (viewOf.has(r.text)) continue;
    const id: DatasetId = { layer: r.layer, namespace, name: r.name };
    const at = r.at?.replace(/^'|'$/g, '');
    const v = await deps.catalog.resolve(tenant, id, at).catch(async (e) => {
      // A table another engine made through the Iceberg catalog (no Strata versions): its current snapshot.
      if (e instanceof CatalogError && e.code === 'not_found' && at === undefined) {
        const t = await catalogOnlyTable(conn, deps, tenant, id);
        if (t) return t;
      }
      return catalogErr(e);
    });
    if ('view' in v) {
      files.push(...v.files);
      viewOf.set(r.text, v.view);
      continue;
    }
    const view = r.at ? `${r.layer}.${ident(`${r.name}@${v.version}`)}` : `${r.layer}.${r.name}`;
    files.push(...(await registerView(conn, deps, v, view)));
    viewOf.set(r.text, view);
    inputs.set(`${datasetKey(v)}@${v.version}`, v);
  }
  // Replace only the references found outside string literals (same scan as above).
  const masked = sql.replace(/'(?:[^']|'')*'/g, (s, off: number) => (sql[off - 1] === '@' ? s : ' '.repeat(s.length)));
  let out = '';
  let last = 0;
  for (const m of masked.matchAll(DATASET_REF_IN_SQL_RE)) {
    out += sql.slice(last, m.index) + (viewOf.get(m[0]) ?? m[0]);
    last = m.index + m[0].length;
  }
  return { sql: out + sql.slice(last), inputs: [...inputs.values()], files };
}

/**
 * A view over the current snapshot of an Iceberg table that exists only in the catalog
 * (created and written by another engine), read through its manifests. Its files must be
 * inside the tenant's lake. Undefined when there is no such table.
 */
async function catalogOnlyTable(
  conn: DuckDBConnection,
  deps: LakeDeps,
  tenant: string,
  id: DatasetId,
): Promise<{ view: string; files: string[] } | undefined> {
  const ident = icebergIdent(id);
  const row = await new IcebergStore(deps.catalog.db).table(tenant, ident.namespace, ident.name);
  if (!row) return undefined;
  const meta = tableMetadata(row.metadata);
  if (meta.properties?.['strata.dataset']) return undefined;
  let uris: string[];
  try {
    uris = await snapshotFiles(deps.store, meta);
  } catch (e) {
    throw new NonRetryableError(`table ${datasetKey(id)} cannot be read: ${errorMessage(e)}`, 'DatasetError');
  }
  if (!uris.length)
    throw new NonRetryableError(`table ${datasetKey(id)} has no snapshot yet: append to it first`, 'DatasetError');
  const files = await Promise.all(uris.map((u) => localFile(deps, keyOf(deps.store, u))));
  const view = `${id.layer}.${id.name}`;
  await conn.run(`CREATE SCHEMA IF NOT EXISTS ${id.layer}`);
  await conn.run(
    `CREATE OR REPLACE VIEW ${view} AS SELECT * FROM read_parquet([${files.map(quoteLiteral).join(', ')}])`,
  );
  return { view, files };
}

export interface WriteRequest {
  conn: DuckDBConnection;
  id: DatasetId;
  producer: Producer;
  /** The SELECT whose result becomes the version. */
  select: string;
  /** Its columns when the caller has bound it already (`oneSelectColumns`); else DESCRIBE finds them. */
  columns?: { name: string; type: string }[];
  attemptTag: string;
  inputs: DatasetVersionRef[];
  checks?: Check[];
  failingRowsLimit?: number;
  /** Views of the datasets `references` checks read, registered before the sandbox locked. */
  refs?: CheckRefs;
  /** The dataset's partition spec (`partitionBy`); without it, the table's own spec (if any) is kept. */
  partitionBy?: string[];
}

/** Where an attempt's output is written locally (a file the sandbox grants). */
export function outputFile(
  deps: LakeDeps,
  id: DatasetId,
  attemptTag: string,
): { key: string; location: string; local: string; direct: boolean; partsDir: string } {
  const location = `${datasetPrefix(id)}/data/${attemptTag}`;
  const key = `${location}/part-00000.parquet`;
  const direct = deps.store.localPath(key);
  const local = direct ?? path.join(deps.cacheDir, 'out', key);
  // A partitioned table's files: one folder per partition under `parts/` (the sandbox grants the folder).
  return { key, location, local, direct: !!direct, partsDir: path.join(path.dirname(local), 'parts') };
}

export interface CheckRefs {
  views: Map<string, string>;
  versions: DatasetVersion[];
  files: string[];
}

/** Registers the datasets that `references` checks read (before the sandbox locks). */
export async function attachCheckRefs(
  conn: DuckDBConnection,
  deps: LakeDeps,
  tenant: string,
  namespace: string,
  checks: Check[] | undefined,
): Promise<CheckRefs> {
  const refs: CheckRefs = { views: new Map(), versions: [], files: [] };
  for (const c of checks ?? [])
    if ('references' in c && !refs.views.has(c.references.dataset)) {
      const [layer, name] = c.references.dataset.split('.');
      if (!isLayer(layer) || !name)
        throw new NonRetryableError(`check references ${c.references.dataset}: not layer.name`, 'ConfigError');
      const v = await deps.catalog.resolve(tenant, { layer, namespace, name }).catch(catalogErr);
      const view = `__ref_${refs.views.size}`;
      refs.files.push(...(await registerView(conn, deps, v, view)));
      refs.views.set(c.references.dataset, view);
      refs.versions.push(v);
    }
  return refs;
}

/** A version's files written and checked, not yet committed: a catalog NewVersion but for its inputs. */
export interface Written extends Omit<NewVersion, 'inputs'> {
  /** Where the task's time went (ms): the SELECT written as Parquet, and the checks. */
  timings: { write: number; copy: number; checks: number };
  /** The version as an Iceberg snapshot: schema with field ids, data files with statistics. */
  iceberg: IcebergWrite;
}

/** Writes a version's files (not yet visible) and runs its checks. */
export async function writeVersion(deps: LakeDeps, w: WriteRequest): Promise<Written> {
  const { key, location, local, direct, partsDir } = outputFile(deps, w.id, w.attemptTag);
  await mkdir(path.dirname(local), { recursive: true });
  const body = w.select.trim().replace(/;\s*$/, '');
  const t0 = performance.now();
  // The newline ends a trailing line comment inside the tenant's SELECT.
  const described = w.columns ?? (await describeSelect(w.conn, `SELECT * FROM (${body}\n)`));
  // The file is an Iceberg data file: the table's field ids, types Iceberg has (iceberg/schema.ts).
  const plan = await planSchema(
    deps.catalog.db,
    w.producer.tenant,
    w.id,
    described.map((d) => ({ name: d.name, type: d.type })),
  );
  const cast = castList(plan.columns);
  const select = cast.changed ? `SELECT ${cast.list} FROM (${body}\n)` : body;
  const fieldIds = plan.schema.fields.length ? `, FIELD_IDS ${fieldIdsClause(plan.schema)}` : '';
  // Earlier tasks' instances are closed while DuckDB writes (see Duck.retire).
  const tc = performance.now();
  const copied = await whileDuckWorks(
    w.conn.runAndReadAll(`COPY (${select}\n) TO ${quoteLiteral(local)} (FORMAT parquet, COMPRESSION zstd${fieldIds})`),
  );
  const copyMs = performance.now() - tc;
  const rowCount = Number(copied.getRows()[0]?.[0] ?? 0);
  const bytes = (await stat(local)).size;
  const stats = await fileStats(w.conn, local, plan.schema);
  await w.conn.run(`CREATE OR REPLACE TEMP VIEW __out AS SELECT * FROM read_parquet(${quoteLiteral(local)})`);
  const schema = await describeSelect(w.conn, `SELECT * FROM __out`);
  // A partitioned table (declared, or partitioned already): one file per partition, values in the manifests.
  let spec: PartitionField[] = [];
  try {
    if (w.partitionBy)
      spec = resolveSpec(parsePartitionBy(w.partitionBy), plan.schema, plan.lastPartitionId, plan.specs);
    else if (plan.defaultSpec?.fields.length) spec = plan.defaultSpec.fields;
  } catch (e) {
    throw new NonRetryableError(`partitionBy of ${datasetKey(w.id)}: ${errorMessage(e)}`, 'ConfigError');
  }
  const parts = spec.length
    ? await writePartitions(w.conn, {
        local,
        partsDir,
        location: `${location}/parts`,
        schema: plan.schema,
        spec,
        id: w.id,
      })
    : undefined;
  const t1 = performance.now();
  const checks = await runChecks(deps, w);
  const t2 = performance.now();
  await w.conn.run('DROP VIEW IF EXISTS __out');
  let files: IcebergFile[] = [{ key, bytes, stats }];
  if (parts) {
    // The whole result served the checks; the partition files are the version.
    files = parts;
    await rm(local, { force: true });
    if (!direct)
      for (const f of parts)
        await deps.store.putFile(f.key, path.join(partsDir, path.relative(`${location}/parts`, f.key)));
    if (!direct) await rm(partsDir, { recursive: true, force: true });
  } else if (!direct) {
    await deps.store.putFile(key, local);
    await rm(local, { force: true });
  }
  return {
    id: w.id,
    location,
    files: files.map((f) => f.key),
    schema,
    rowCount,
    bytes: files.reduce((a, f) => a + f.bytes, 0),
    checks,
    promote: checks.every((c) => c.passed || c.severity === 'warn'),
    timings: { write: Math.round(t1 - t0), copy: Math.round(copyMs), checks: Math.round(t2 - t1) },
    iceberg: { ...plan, files, spec },
  };
}

/** At most this many partitions per write: more means a spec too fine for the data (choose a coarser transform). */
export const MAX_PARTITIONS_PER_WRITE = 1000;

/**
 * Splits a written result into one Parquet file per partition (DuckDB's PARTITION_BY over a
 * partition number joined in), each with its statistics and the partition's values as
 * Iceberg represents them (activities/iceberg/partition.ts).
 */
async function writePartitions(
  conn: DuckDBConnection,
  o: { local: string; partsDir: string; location: string; schema: StructType; spec: PartitionField[]; id: DatasetId },
): Promise<IcebergFile[]> {
  for (const m of MURMUR_MACROS) await conn.run(m);
  const exprs = o.spec.map((f) => partitionExpr(f, o.schema));
  const src = `read_parquet(${quoteLiteral(o.local)})`;
  await conn.run(
    `CREATE OR REPLACE TEMP TABLE __parts AS SELECT (row_number() OVER ()) - 1 AS __i, * FROM (SELECT DISTINCT ${exprs.map((e, i) => `${e} AS p${i}`).join(', ')} FROM ${src})`,
  );
  const rows = (await conn.runAndReadAll(`SELECT * FROM __parts ORDER BY __i`)).getRows();
  if (rows.length > MAX_PARTITIONS_PER_WRITE)
    throw new NonRetryableError(
      `${datasetKey(o.id)} would get ${rows.length} partitions in one write (at most ${MAX_PARTITIONS_PER_WRITE}): choose a coarser partitionBy (month instead of day, fewer buckets)`,
      'ConfigError',
    );
  await mkdir(o.partsDir, { recursive: true });
  await conn.run(
    `COPY (SELECT t.*, p.__i AS __part FROM ${src} t JOIN __parts p ON ${exprs.map((e, i) => `(${e}) IS NOT DISTINCT FROM p.p${i}`).join(' AND ')}) TO ${quoteLiteral(o.partsDir)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (__part), OVERWRITE_OR_IGNORE, FIELD_IDS ${fieldIdsClause(o.schema)})`,
  );
  await conn.run('DROP TABLE __parts');
  const jsValue = (v: unknown): PartitionValue => {
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v;
    if (v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
    throw new NonRetryableError(
      `${datasetKey(o.id)}: a partition value of an unsupported type (${typeof v})`,
      'ConfigError',
    );
  };
  const out: IcebergFile[] = [];
  for (const r of rows) {
    const i = Number(r[0]);
    const dir = path.join(o.partsDir, `__part=${i}`);
    for (const name of (await readdir(dir)).filter((n) => n.endsWith('.parquet')).sort()) {
      const file = path.join(dir, name);
      out.push({
        key: `${o.location}/__part=${i}/${name}`,
        bytes: (await stat(file)).size,
        stats: await fileStats(conn, file, o.schema),
        partition: Object.fromEntries(o.spec.map((f, j) => [f.name, jsValue(r[j + 1])])),
      });
    }
  }
  return out;
}

/** Runs a version's checks against the view `__out` (exported for bench:medallion's direct baseline). */
export async function runChecks(deps: LakeDeps, w: WriteRequest): Promise<CheckVerdict[]> {
  if (!w.checks?.length) return [];
  const prev = await deps.catalog.current(w.producer.tenant, w.id);
  const refs = w.refs ?? (await attachCheckRefs(w.conn, deps, w.producer.tenant, w.id.namespace, w.checks));
  const refViews = refs.views;
  for (const v of refs.versions)
    w.inputs = [
      ...w.inputs.filter((i) => datasetKey(i) !== datasetKey(v)),
      { layer: v.layer, namespace: v.namespace, name: v.name, version: v.version },
    ];
  const out: CheckVerdict[] = [];
  let counted: Awaited<ReturnType<typeof countFailing>>;
  try {
    counted = await countFailing(w.conn, w.checks);
  } catch (e) {
    throw new NonRetryableError(`checks on ${datasetKey(w.id)} could not run: ${errorMessage(e)}`, 'CheckError');
  }
  for (const [i, c] of w.checks.entries()) {
    try {
      out.push(
        await runCheck(
          {
            conn: w.conn,
            previousRowCount: prev?.rowCount,
            viewFor: (d) => {
              const view = refViews.get(d);
              if (view === undefined) throw new Error(`check ${describeCheck(c)} names ${d}, which was not attached`);
              return view;
            },
            sampleLimit: w.failingRowsLimit ?? 20,
            now: new Date(),
            failing: counted.failing[i],
            rows: counted.rows,
          },
          c,
        ),
      );
    } catch (e) {
      throw new NonRetryableError(
        `check ${describeCheck(c)} on ${datasetKey(w.id)} could not run: ${errorMessage(e)}`,
        'CheckError',
      );
    }
  }
  return out;
}

/** Commits written versions (one transaction) and fails the task if a gate blocked one. */
export async function commitVersions(
  deps: LakeDeps,
  producer: Producer,
  written: (Written & { inputs: DatasetVersionRef[] })[],
  watermark?: string,
): Promise<DatasetVersion[]> {
  for (const w of written) await deps.faults?.beforeCommit?.(w.id);
  const store = deps.store;
  // The snapshot's files are written before the transaction, for the version number it will
  // most likely get; the transaction then only moves the table's pointer (or, if another
  // writer came first, writes the snapshot itself: the prepared files are orphans).
  const prepared = await Promise.all(
    written.map(async (w) =>
      deps.prepareSnapshots === false
        ? undefined
        : prepareVersionSnapshot(
            deps.catalog.db,
            store,
            producer.tenant,
            w.id,
            {
              version: await deps.catalog.nextVersion(producer.tenant, w.id),
              promoted: w.promote,
              runId: producer.runId,
              taskId: producer.taskId,
              rowCount: w.rowCount,
              bytes: w.bytes,
            },
            w.iceberg,
          ).catch(() => undefined),
    ),
  );
  const versions = await deps.catalog
    .commit(
      producer,
      written.map(({ timings: _t, iceberg: _i, ...w }) => w),
      watermark,
      // The version's Iceberg snapshot moves in the same transaction as its catalog row.
      (t, v, i) =>
        commitVersionSnapshot(
          t,
          store,
          producer.tenant,
          written[i].id,
          {
            version: v.version,
            promoted: v.status === 'committed',
            runId: v.runId,
            taskId: v.taskId,
            rowCount: v.rowCount,
            bytes: v.bytes,
          },
          written[i].iceberg,
          undefined,
          prepared[i],
        ),
    )
    .catch((e) => {
      // Another writer evolved the table's schema after this attempt wrote its files: write again.
      if (e instanceof SchemaMovedError) throw new Error(e.message);
      throw e;
    });
  const blocked = versions.filter((v) => v.status === 'rejected');
  if (blocked.length) {
    const why = blocked.flatMap((v) =>
      v.checks
        .filter((c) => !c.passed && c.severity === 'error')
        .map((c) => `${datasetKey(v)}@${v.version} ${c.name}: ${c.message}`),
    );
    throw new NonRetryableError(`quality gate failed, version not promoted: ${why.join('; ')}`, 'QualityGateFailed');
  }
  return versions;
}

export function versionRef(v: DatasetVersion | DatasetVersionRef): DatasetVersionRef {
  return { layer: v.layer, namespace: v.namespace, name: v.name, version: v.version };
}

/** What a dataset-writing task hands back to the workflow: small facts only. */
export function versionOutput(v: DatasetVersion, store: ObjectStore) {
  const warned = v.checks.filter((c) => !c.passed && c.severity === 'warn').map((c) => c.name);
  return {
    rowCount: v.rowCount,
    location: store.uri(v.location),
    dataset: `${v.layer}.${v.name}`,
    namespace: v.namespace,
    version: v.version,
    bytes: v.bytes,
    ...(v.checks.length ? { checks: { passed: v.checks.filter((c) => c.passed).length, warned } } : {}),
  };
}

/** START / COMPLETE / FAIL around one dataset task. */
export async function withLineage<
  T extends {
    outputs: DatasetVersion[];
    inputs: DatasetVersion[];
    /** Inputs outside the lake (an Airbyte source), as OpenLineage datasets. */
    sources?: { namespace: string; name: string }[];
  },
>(deps: LakeDeps, producer: Producer & { workflowId: string }, fn: () => Promise<T>): Promise<T> {
  const sink = deps.lineage;
  if (!sink) return fn();
  const ns = deps.store.root;
  const ds = (v: DatasetVersion | DatasetId, withSchema = false): OlDataset => ({
    namespace: ns,
    name: datasetPrefix(v),
    ...(withSchema && 'schema' in v
      ? {
          facets: {
            ...schemaFacet(v.schema),
            version: {
              _producer: OL_PRODUCER,
              _schemaURL: 'https://openlineage.io/spec/facets/1-0-0/DatasetVersionDatasetFacet.json',
              datasetVersion: String(v.version),
            },
          },
        }
      : {}),
  });
  const base = {
    run: { runId: taskRunUuid(producer.workflowId, producer.taskId) },
    job: { namespace: `strata/${producer.tenant}`, name: `${producer.pipelineId}.${producer.taskId}` },
  };
  const safeEmit = (e: Parameters<LineageSink['emit']>[0]) => sink.emit(e).catch(() => {});
  await safeEmit(runEvent({ eventType: 'START', ...base, inputs: [], outputs: [] }));
  try {
    const r = await fn();
    await safeEmit(
      runEvent({
        eventType: 'COMPLETE',
        ...base,
        inputs: [...r.inputs.map((v) => ds(v)), ...(r.sources ?? [])],
        outputs: r.outputs.map((v) => ds(v, true)),
      }),
    );
    return r;
  } catch (e) {
    await safeEmit(
      runEvent({
        eventType: 'FAIL',
        ...base,
        run: {
          ...base.run,
          facets: {
            errorMessage: {
              _producer: OL_PRODUCER,
              _schemaURL: 'https://openlineage.io/spec/facets/1-0-0/ErrorMessageRunFacet.json',
              message: errorMessage(e),
              programmingLanguage: 'sql',
            },
          },
        },
        inputs: [],
        outputs: [],
      }),
    );
    throw e;
  }
}
