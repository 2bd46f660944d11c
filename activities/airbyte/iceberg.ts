/**
 * Airbyte syncs into Iceberg: after a sync whose destination writes Iceberg tables (Airbyte's
 * S3 Data Lake destination, `s3-data-lake`, or the older `iceberg`) into the tenant's
 * warehouse, each stream's table is registered in Strata's catalog from the metadata file
 * the destination wrote (register-table: no data is copied or rewritten) and recorded as a
 * dataset version `bronze.{table}` in namespace `{destination namespace}`, with its data
 * files, schema and row count, and lineage from the connection's source.
 *
 * What Strata sees is what the Airbyte API tells it (the connection, its destination's type
 * and configuration, secrets masked) and what is in the tenant's own warehouse: the
 * destination's catalog (Glue, Nessie, a REST catalog) is not asked, since its credentials
 * are masked in the API's answers. So the table is found where an Iceberg catalog puts it,
 * `{warehouse}/{namespace}[.db]/{table}[-_{uuid}]/metadata/…`, and its newest metadata
 * file is the one with the highest sequence number. Every location is checked to be inside
 * the tenant's warehouse (a destination pointed elsewhere is reported, not registered).
 * Temporal-free: the adapter is activities/airbyte/activities.ts.
 */
import { gunzipSync } from 'node:zlib';
import { Namespace, type DatasetId } from '../../schemas/lake.js';
import { errorMessage, NonRetryableError } from '../../schemas/errors.js';
import { parseJson } from '../../schemas/json64.js';
import type { RunContext } from '../../schemas/run.js';
import { datasetKey, type DatasetVersion, type Producer } from '../../store/catalog.js';
import { AuditStore, auditBranch } from '../../store/iceberg-audit.js';
import { IcebergStore, type IcebergTableRow } from '../../store/iceberg.js';
import type { LakeDeps } from '../lake/engine.js';
import { withLineage } from '../lake/engine.js';
import type { ObjectStore } from '../s3/client.js';
import { recordOf } from '../../schemas/guards.js';
import { auditStaged, failRejected, stagedOn, type OutputDecl } from '../iceberg/audit.js';
import { currentSchema, snapshotById, type TableMetadata, tableMetadata } from '../iceberg/metadata.js';
import { refHead } from '../iceberg/wap.js';
import { duckTypeOf } from '../iceberg/schema.js';
import { icebergIdent, keyOf, snapshotFiles, STRATA_METADATA_FILE, writeMetadata } from '../iceberg/writer.js';
import type { ConnectionResponse, DestinationResponse } from './client.js';

/** Destination types whose connector writes Iceberg tables. */
export const ICEBERG_DESTINATIONS = ['s3-data-lake', 'iceberg'];

export interface IcebergDestination {
  /** The warehouse URI the destination writes under (`warehouse_location`). */
  warehouse: string;
  /** The destination's default namespace (its catalog's `namespace` / `database_name`), when it has one. */
  namespace?: string;
}

const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
const obj = recordOf;

/** The Iceberg side of a destination, or undefined when it does not write Iceberg tables. */
export function icebergDestination(
  d: Pick<DestinationResponse, 'destinationType' | 'configuration'>,
): IcebergDestination | undefined {
  if (!ICEBERG_DESTINATIONS.includes(d.destinationType)) return undefined;
  const c = obj(d.configuration);
  const catalog = { ...obj(c.catalog_type), ...obj(c.catalog_config) };
  const warehouse =
    str(c.warehouse_location) ??
    str(obj(c.storage_config).s3_warehouse_uri) ??
    str(catalog.warehouse_location) ??
    (str(c.s3_bucket_name) ? `s3://${str(c.s3_bucket_name)}` : undefined);
  if (!warehouse) return undefined;
  return {
    warehouse: warehouse.replace(/\/+$/, ''),
    namespace: str(catalog.namespace) ?? str(catalog.database_name) ?? str(catalog.database) ?? str(c.namespace),
  };
}

/** The tables a connection's streams land in: prefix + stream name, in the namespace its settings give (undefined: any). */
export function streamTables(
  conn: Pick<ConnectionResponse, 'configurations' | 'namespaceDefinition' | 'namespaceFormat' | 'prefix'>,
  dest: IcebergDestination,
): { names?: Set<string>; namespace?: string } {
  const streams = (conn.configurations?.streams ?? []).map((s) => str(s.name)).filter((s): s is string => !!s);
  const prefix = conn.prefix ?? '';
  // Destinations normalize names the way Iceberg catalogs accept them: lower case, [a-z0-9_].
  const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const names = streams.length ? new Set(streams.map((s) => norm(`${prefix}${s}`))) : undefined;
  let namespace: string | undefined;
  if (conn.namespaceDefinition === 'custom_format') {
    const f = conn.namespaceFormat ?? '';
    namespace = f.includes('${') ? undefined : f;
  } else if (conn.namespaceDefinition !== 'source') namespace = dest.namespace;
  return { names, namespace: namespace ? norm(namespace) : undefined };
}

export interface FoundTable {
  namespace: string;
  table: string;
  /** Key (in the tenant's store) of the newest metadata file. */
  metadataKey: string;
}

const UUID_SUFFIX = /[-_]([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
const METADATA_FILE = /^(?:v(\d+)|(\d+)-[^/]+?)(?:\.gz)?\.metadata\.json$/;

/**
 * The Iceberg tables under a warehouse folder of the store: every `…/{namespace}/{table}/metadata/`
 * folder, with its newest metadata file (highest sequence number; the later-written one on a tie),
 * not counting the metadata files Strata itself wrote there.
 */
export async function findTables(store: ObjectStore, warehouseKey: string): Promise<FoundTable[]> {
  const base = warehouseKey ? `${warehouseKey.replace(/\/+$/, '')}/` : '';
  const best = new Map<string, { n: number; at: number; key: string; namespace: string; table: string }>();
  for (const o of await store.list(base)) {
    const parts = o.key.slice(base.length).split('/');
    if (parts.length < 4 || parts[parts.length - 2] !== 'metadata') continue;
    const file = parts[parts.length - 1];
    const m = METADATA_FILE.exec(file);
    // Files Strata wrote there (a staged or published sync) are not the destination's.
    if (!m || STRATA_METADATA_FILE.test(file)) continue;
    const folder = parts.slice(0, -2);
    const n = Number(m[1] ?? m[2]);
    const at = o.lastModified.getTime();
    const id = folder.join('/');
    const prev = best.get(id);
    if (!prev || n > prev.n || (n === prev.n && at > prev.at))
      best.set(id, {
        n,
        at,
        key: o.key,
        namespace: folder[folder.length - 2].replace(/\.db$/, ''),
        table: folder[folder.length - 1].replace(UUID_SUFFIX, ''),
      });
  }
  return [...best.values()]
    .map((b) => ({ namespace: b.namespace, table: b.table, metadataKey: b.key }))
    .sort((a, b) => `${a.namespace}.${a.table}`.localeCompare(`${b.namespace}.${b.table}`));
}

export async function readMetadata(store: ObjectStore, key: string): Promise<TableMetadata> {
  const raw = await store.getBytes(key);
  return parseJson<TableMetadata>((key.endsWith('.gz.metadata.json') ? gunzipSync(raw) : raw).toString());
}

export interface Registration {
  /** Dataset versions recorded for this sync (one per table that has a new snapshot). */
  versions: DatasetVersion[];
  /** Tables seen and left alone, each with why (nothing new, outside the warehouse, a name Strata cannot hold…). */
  skipped: string[];
  /** Why an Iceberg destination's tables were not looked for (no warehouse, a warehouse outside the tenant's). */
  reason?: string;
}

const tableLabel = (id: DatasetId) => `${id.layer}.${id.name} (namespace ${id.namespace})`;

/**
 * A task's declared outputs, checked against its connection before the sync: each must be a
 * `bronze` table one of the connection's streams lands in, in the namespace they land in, and
 * the destination must write Iceberg. Throws TaskError saying what to change.
 */
export function checkDeclaredOutputs(
  taskId: string,
  outputs: OutputDecl[],
  conn: Pick<
    ConnectionResponse,
    'connectionId' | 'configurations' | 'namespaceDefinition' | 'namespaceFormat' | 'prefix'
  >,
  destination: Pick<DestinationResponse, 'destinationId' | 'destinationType' | 'configuration'>,
): void {
  if (!outputs.length) return;
  const fail = (m: string) => {
    throw new NonRetryableError(`task ${taskId}: outputs: ${m}`, 'TaskError');
  };
  const dest = icebergDestination(destination);
  if (!dest)
    fail(
      `connection ${conn.connectionId} writes to destination ${destination.destinationId} of type ${destination.destinationType}, which does not write Iceberg tables into the tenant's warehouse (${ICEBERG_DESTINATIONS.join(', ')} with a warehouse_location): remove "outputs"`,
    );
  else {
    const want = streamTables(conn, dest);
    for (const o of outputs) {
      if (o.id.layer !== 'bronze')
        fail(`${tableLabel(o.id)}: an Airbyte sync lands its streams in bronze: name it bronze.${o.id.name}`);
      if (want.names && !want.names.has(o.id.name))
        fail(
          `${tableLabel(o.id)} is not a table connection ${conn.connectionId}'s streams land in (${[...want.names].sort().join(', ')}): name one of those`,
        );
      if (want.namespace && want.namespace !== o.id.namespace)
        fail(
          `${tableLabel(o.id)}: connection ${conn.connectionId}'s streams land in namespace ${want.namespace}: set "namespace: ${want.namespace}"`,
        );
    }
  }
}

/**
 * Registers the tables a sync wrote and records their versions. A table with a declared
 * output is registered write-audit-publish (staged on the run's audit branch, audited with
 * the output's checks, published or rejected); the others as written. Idempotent: a retry
 * finds the versions this task already recorded (and a snapshot it staged), and a table
 * whose newest metadata is already the catalog's gets no new version. Fails QualityGateFailed
 * (after every table) when a declared output's error check failed.
 */
export async function registerSyncTables(
  lake: LakeDeps,
  o: {
    run: RunContext;
    taskId: string;
    connection: ConnectionResponse;
    destination: DestinationResponse;
    /** The source, as an OpenLineage dataset (`airbyte:{workspace}` / `sources/{id}`). */
    source: { namespace: string; name: string };
    /** The task's declared outputs (checks to audit before publishing). */
    outputs?: OutputDecl[];
    /** The attempt's scratch folder (the audit's DuckDB spill). */
    scratch: string;
  },
): Promise<Registration> {
  const dest = icebergDestination(o.destination);
  if (!dest)
    return {
      versions: [],
      skipped: [],
      // Another kind of destination: nothing to catalog, nothing to say.
      ...(ICEBERG_DESTINATIONS.includes(o.destination.destinationType)
        ? { reason: `Iceberg destination ${o.destination.destinationId} names no warehouse_location` }
        : {}),
    };
  const store = lake.store;
  let warehouseKey: string;
  try {
    warehouseKey = keyOf(store, dest.warehouse);
  } catch {
    return {
      versions: [],
      skipped: [],
      reason: `destination ${o.destination.destinationId} writes to ${dest.warehouse}, outside tenant ${o.run.tenant}'s warehouse (${store.root}): its tables are not catalogued; set its warehouse_location under ${store.root}`,
    };
  }
  const want = streamTables(o.connection, dest);
  const producer: Producer & { workflowId: string } = {
    tenant: o.run.tenant,
    runId: o.run.workflowId,
    pipelineId: o.run.pipelineId,
    taskId: o.taskId,
    workflowId: o.run.workflowId,
  };
  const wap: Wap = {
    run: o.run,
    branch: auditBranch(o.run.workflowId, o.taskId),
    scratch: o.scratch,
    outputs: o.outputs ?? [],
  };
  const skipped: string[] = [];
  const found = (await findTables(store, warehouseKey)).filter(
    (t) => (!want.names || want.names.has(t.table)) && (!want.namespace || want.namespace === t.namespace),
  );
  const r = await withLineage(lake, producer, async () => {
    const versions: DatasetVersion[] = [];
    for (const t of found) {
      const v = await registerOne(lake, producer, t, skipped, wap);
      if (v) versions.push(v);
    }
    return { outputs: versions, inputs: [], sources: [o.source] };
  });
  if (want.names)
    for (const n of want.names)
      if (!found.some((t) => t.table === n))
        skipped.push(`stream table ${n}: no Iceberg table of that name under ${dest.warehouse}`);
  failRejected(r.outputs, wap.branch);
  return { versions: r.outputs, skipped };
}

/** What write-audit-publish of a sync's tables needs: the run, its audit branch, the declared outputs. */
interface Wap {
  run: RunContext;
  branch: string;
  scratch: string;
  outputs: OutputDecl[];
}

const sameDataset = (a: DatasetId, b: DatasetId) =>
  a.layer === b.layer && a.namespace === b.namespace && a.name === b.name;

async function registerOne(
  lake: LakeDeps,
  producer: Producer,
  t: FoundTable,
  skipped: string[],
  wap: Wap,
): Promise<DatasetVersion | undefined> {
  const label = `${t.namespace}.${t.table}`;
  if (!Namespace.safeParse(t.namespace).success || !/^[a-z_][a-z0-9_]{0,62}$/.test(t.table)) {
    skipped.push(`${label}: not a dataset name Strata can hold (lower-case letters, digits and _)`);
    return undefined;
  }
  const id: DatasetId = { layer: 'bronze', namespace: t.namespace, name: t.table };
  const done = await lake.catalog.findCommit(producer, id);
  if (done) return done;
  const store = lake.store;
  const metadataLocation = store.uri(t.metadataKey);
  const meta = await readMetadata(store, t.metadataKey);
  let tableKey: string;
  try {
    tableKey = keyOf(store, meta.location);
  } catch {
    skipped.push(`${label}: its metadata puts the table at ${meta.location}, outside the tenant's warehouse`);
    return undefined;
  }
  const snapshotId = meta['current-snapshot-id'];
  const snap =
    snapshotId !== undefined && snapshotId !== null && snapshotId !== -1 ? snapshotById(meta, snapshotId) : undefined;
  if (!snap) {
    skipped.push(`${label}: the table has no snapshot yet`);
    return undefined;
  }
  const ident = icebergIdent(id);
  const cat = new IcebergStore(lake.catalog.db);
  const existing = await cat.table(producer.tenant, ident.namespace, ident.name);
  const current = existing ? tableMetadata(existing.metadata) : undefined;
  if (existing && current) {
    if (current['table-uuid'] !== meta['table-uuid']) {
      skipped.push(
        `${label}: ${datasetKey(id)} is already another table in Strata's catalog (uuid ${current['table-uuid']}, the destination's is ${meta['table-uuid']})`,
      );
      return undefined;
    }
    if (existing.metadataLocation === metadataLocation) {
      skipped.push(`${label}: nothing new since ${metadataLocation}`);
      return undefined;
    }
  }
  const decl = wap.outputs.find((x) => sameDataset(x.id, id));
  if (decl) return stageAndAudit(lake, producer, { id, decl, meta, tableKey, existing, wap, skipped });
  let keys: string[];
  try {
    keys = (await snapshotFiles(store, meta, snap['snapshot-id'])).map((u) => keyOf(store, u));
  } catch (e) {
    skipped.push(`${label}: snapshot ${snap['snapshot-id']} is not registered: ${errorMessage(e)}`);
    return undefined;
  }
  const schema = currentSchema(meta);
  const [v] = await lake.catalog.commit(
    producer,
    [
      {
        id,
        location: `${tableKey}/data`,
        files: keys,
        schema: schema.fields.map((f) => ({ name: f.name, type: duckTypeOf(f.type), nullable: !f.required })),
        rowCount: Number(snap.summary['total-records'] ?? 0),
        bytes: Number(snap.summary['total-files-size'] ?? 0),
        inputs: [],
        checks: [],
        promote: true,
      },
    ],
    undefined,
    // Register (or move the registered table to) the destination's metadata, in the version's transaction.
    async (tx) => {
      const c = new IcebergStore(tx);
      await c.ensureNamespace(producer.tenant, ident.namespace);
      const row = await c.table(producer.tenant, ident.namespace, ident.name, true);
      if (!row) {
        if (!(await c.createTable(producer.tenant, ident.namespace, ident.name, metadataLocation, meta)))
          throw new Error(`table ${datasetKey(id)} appeared during its registration`);
      } else {
        if (tableMetadata(row.metadata)['table-uuid'] !== meta['table-uuid'])
          throw new Error(`table ${datasetKey(id)} became another table during its registration`);
        if (!(await c.swap(producer.tenant, ident.namespace, ident.name, row.metadataLocation, metadataLocation, meta)))
          throw new Error(`table ${datasetKey(id)} moved while locked`);
      }
    },
  );
  return v;
}

/**
 * Write-audit-publish of one stream's table: Strata writes its own metadata file from the
 * destination's newest, in which `main` stays where Strata last published it (nothing on the
 * first sync) and the run's audit branch points at the destination's new snapshot; then the
 * audit every engine shares (activities/iceberg/audit.ts) checks that snapshot and publishes
 * or rejects it. A retry finds the snapshot already staged on its branch and audits it.
 */
async function stageAndAudit(
  lake: LakeDeps,
  producer: Producer,
  o: {
    id: DatasetId;
    decl: OutputDecl;
    meta: TableMetadata;
    tableKey: string;
    existing: IcebergTableRow | undefined;
    wap: Wap;
    skipped: string[];
  },
): Promise<DatasetVersion | undefined> {
  const { id, existing, wap } = o;
  let meta: TableMetadata;
  try {
    // The destination's metadata is the tenant's file: checked before Strata's catalog holds it.
    meta = tableMetadata(o.meta);
  } catch (e) {
    throw new NonRetryableError(
      `the destination's metadata of ${datasetKey(id)} cannot be staged for its audit: ${errorMessage(e)}`,
      'AuditError',
    );
  }
  const tenant = producer.tenant;
  const ident = icebergIdent(id);
  const snapshotId = String(meta['current-snapshot-id']);
  const audits = new AuditStore(lake.catalog.db);
  let staged = await stagedOn(lake, tenant, ident, wap.branch);
  if (!staged || staged.snapshotId !== snapshotId) {
    const current = existing ? tableMetadata(existing.metadata) : undefined;
    const seen = current?.snapshots.find((s) => String(s['snapshot-id']) === snapshotId);
    const status = seen?.summary['strata.status'];
    if (current && (refHead(current, 'main') === snapshotId || status === 'published' || status === 'rejected')) {
      o.skipped.push(
        `${id.namespace}.${id.name}: nothing new since snapshot ${snapshotId} (${status ?? 'published'} already)`,
      );
      return undefined;
    }
    const base = current ? refHead(current, 'main') : null;
    const now = Date.now();
    const next = stagedMetadata(meta, current, existing?.metadataLocation, {
      branch: wap.branch,
      snapshotId,
      runId: wap.run.runId,
      taskId: producer.taskId,
      now,
    });
    const location = await writeMetadata(lake.store, o.tableKey, next);
    // The audit's base (main when the branch forked) is recorded before the branch exists; a retry keeps the first.
    await audits.begin(tenant, ident, wap.branch, {
      workflowId: wap.run.workflowId,
      taskId: producer.taskId,
      baseSnapshotId: base,
    });
    const cat = new IcebergStore(lake.catalog.db);
    await cat.ensureNamespace(tenant, ident.namespace);
    const moved = existing
      ? !(await cat.swap(tenant, ident.namespace, ident.name, existing.metadataLocation, location, next))
      : !(await cat.createTable(tenant, ident.namespace, ident.name, location, next));
    // Another writer moved the table meanwhile: the activity's retry stages again from what is there now.
    if (moved) throw new Error(`table ${datasetKey(id)} moved while this sync was being staged`);
    staged = await stagedOn(lake, tenant, ident, wap.branch);
    if (!staged) throw new Error(`the sync staged on ${wap.branch} of ${datasetKey(id)} is not found`);
  }
  return auditStaged(lake, producer, {
    out: o.decl,
    branch: wap.branch,
    staged,
    scratch: wap.scratch,
    inputs: [],
    location: `${o.tableKey}/data`,
  });
}

/**
 * Strata's metadata for a sync staged on `branch`: the destination's table (schemas,
 * snapshots, properties) with `main` where Strata's catalog had it (no snapshot before the
 * first publish), the refs Strata keeps (earlier audit branches, while their snapshots are
 * there), the verdicts it recorded on snapshots, and the new snapshot on `branch`, staged.
 */
export function stagedMetadata(
  dest: TableMetadata,
  current: TableMetadata | undefined,
  currentLocation: string | undefined,
  o: { branch: string; snapshotId: string; runId: string; taskId: string; now: number },
): TableMetadata {
  const idOf = (s: { 'snapshot-id': number }) => String(s['snapshot-id']);
  const own = new Map((current?.snapshots ?? []).map((s) => [idOf(s), s]));
  const destIds = new Set(dest.snapshots.map(idOf));
  const snapshots = [
    ...dest.snapshots.map((s) => {
      const marks = Object.entries(own.get(idOf(s))?.summary ?? {}).filter(([k]) => k.startsWith('strata.'));
      const staged: Record<string, string> =
        idOf(s) === o.snapshotId
          ? {
              'strata.run-id': o.runId,
              'strata.task-id': o.taskId,
              'strata.status': 'staged',
              'strata.branch': o.branch,
            }
          : {};
      return { ...s, summary: { ...s.summary, ...Object.fromEntries(marks), ...staged } };
    }),
    // Snapshots Strata's table still has that the destination expired.
    ...(current?.snapshots.filter((s) => !destIds.has(idOf(s))) ?? []),
  ];
  const ids = new Set(snapshots.map(idOf));
  const head = snapshots.find((s) => idOf(s) === o.snapshotId);
  if (!head) throw new Error(`snapshot ${o.snapshotId} is not in the destination's metadata`);
  const refs: TableMetadata['refs'] = {};
  for (const [name, ref] of Object.entries(current?.refs ?? {}))
    if (ids.has(String(ref['snapshot-id']))) refs[name] = ref;
  refs[o.branch] = { 'snapshot-id': head['snapshot-id'], type: 'branch' };
  const main = refs.main;
  const next: TableMetadata = {
    ...dest,
    'last-sequence-number': Math.max(dest['last-sequence-number'], current?.['last-sequence-number'] ?? 0),
    'last-updated-ms': o.now,
    snapshots,
    refs,
    'snapshot-log': current?.['snapshot-log'] ?? [],
    'metadata-log':
      current && currentLocation
        ? [...current['metadata-log'], { 'timestamp-ms': current['last-updated-ms'], 'metadata-file': currentLocation }]
        : dest['metadata-log'],
  };
  if (main) next['current-snapshot-id'] = main['snapshot-id'];
  else next['current-snapshot-id'] = -1;
  return next;
}
