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
import { errorMessage } from '../../schemas/errors.js';
import { parseJson } from '../../schemas/json64.js';
import type { RunContext } from '../../schemas/run.js';
import { datasetKey, type DatasetVersion, type Producer } from '../../store/catalog.js';
import { IcebergStore } from '../../store/iceberg.js';
import type { LakeDeps } from '../lake/engine.js';
import { withLineage } from '../lake/engine.js';
import type { ObjectStore } from '../s3/client.js';
import { recordOf } from '../../schemas/guards.js';
import { currentSchema, snapshotById, type TableMetadata, tableMetadata } from '../iceberg/metadata.js';
import { duckTypeOf } from '../iceberg/schema.js';
import { icebergIdent, keyOf, snapshotFiles } from '../iceberg/writer.js';
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
 * folder, with its newest metadata file (highest sequence number; the later-written one on a tie).
 */
export async function findTables(store: ObjectStore, warehouseKey: string): Promise<FoundTable[]> {
  const base = warehouseKey ? `${warehouseKey.replace(/\/+$/, '')}/` : '';
  const best = new Map<string, { n: number; at: number; key: string; namespace: string; table: string }>();
  for (const o of await store.list(base)) {
    const parts = o.key.slice(base.length).split('/');
    if (parts.length < 4 || parts[parts.length - 2] !== 'metadata') continue;
    const m = METADATA_FILE.exec(parts[parts.length - 1]);
    if (!m) continue;
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

/**
 * Registers the tables a sync wrote and records their versions. Idempotent: a retry finds
 * the versions this task already recorded, and a table whose newest metadata is already
 * the catalog's gets no new version.
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
  const skipped: string[] = [];
  const found = (await findTables(store, warehouseKey)).filter(
    (t) => (!want.names || want.names.has(t.table)) && (!want.namespace || want.namespace === t.namespace),
  );
  const r = await withLineage(lake, producer, async () => {
    const versions: DatasetVersion[] = [];
    for (const t of found) {
      const v = await registerOne(lake, producer, t, skipped);
      if (v) versions.push(v);
    }
    return { outputs: versions, inputs: [], sources: [o.source] };
  });
  if (want.names)
    for (const n of want.names)
      if (!found.some((t) => t.table === n))
        skipped.push(`stream table ${n}: no Iceberg table of that name under ${dest.warehouse}`);
  return { versions: r.outputs, skipped };
}

async function registerOne(
  lake: LakeDeps,
  producer: Producer,
  t: FoundTable,
  skipped: string[],
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
  if (existing) {
    const m = tableMetadata(existing.metadata);
    if (m['table-uuid'] !== meta['table-uuid']) {
      skipped.push(
        `${label}: ${datasetKey(id)} is already another table in Strata's catalog (uuid ${m['table-uuid']}, the destination's is ${meta['table-uuid']})`,
      );
      return undefined;
    }
    if (existing.metadataLocation === metadataLocation) {
      skipped.push(`${label}: nothing new since ${metadataLocation}`);
      return undefined;
    }
  }
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
