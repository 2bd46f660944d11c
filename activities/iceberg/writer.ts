/**
 * Every dataset version Strata commits is also a snapshot of an Iceberg v2 table at the
 * dataset's location: the version's Parquet files (written with the table's field ids)
 * in a manifest with their column statistics, a manifest list, and a new metadata file
 * whose pointer moves in the same metastore transaction as the version row. A version
 * that passed its checks moves `main`; one that failed stays a staged snapshot off `main`.
 * The snapshot id is the version number, so `silver.orders@3` and snapshot 3 are the same data.
 */
import { randomUUID } from 'node:crypto';
import type { DatasetId } from '../../schemas/lake.js';
import type { Db } from '../../store/db.js';
import { IcebergStore, type IcebergTableRow } from '../../store/iceberg.js';
import { auditBranch } from '../../store/iceberg-audit.js';
import type { ObjectStore } from '../s3/client.js';
import { stringifyJson } from '../../schemas/json64.js';
import {
  decimalRequiredBytes,
  decodeContainer,
  encodeContainer,
  MANIFEST_LIST_SCHEMA,
  manifestEntrySchema,
  manifestMeta,
  partitionResultType,
  type DataFile,
  type ManifestEntry,
  type ManifestFile,
} from './avro.js';
import { withSpec } from './partition.js';
import {
  currentSchema,
  newTableMetadata,
  type PartitionField,
  type PartitionSpec,
  setRef,
  snapshotById,
  withSchema,
  type Snapshot,
  type TableMetadata,
  tableMetadataOrUndefined,
} from './metadata.js';
import { schemaFor, sameFields, type Column, type Schema, type StructType } from './schema.js';
import { decimalBytes, fixedDecimal, type FileStats } from './stats.js';

/** The Iceberg identifier of a dataset: namespace [layer] (or [layer, namespace]) and its name. */
export function icebergIdent(id: DatasetId): { namespace: string[]; name: string } {
  return { namespace: id.namespace === 'default' ? [id.layer] : [id.layer, id.namespace], name: id.name };
}

export const datasetLocation = (id: DatasetId) => `${id.layer}/${id.namespace}/${id.name}`;

/** The schema (with field ids) a new version of a dataset is written with. */
export async function planSchema(
  db: Db,
  tenant: string,
  id: DatasetId,
  columns: Column[],
): Promise<{
  schema: StructType;
  lastColumnId: number;
  columns: Column[];
  /** The table's partition specs, its default one and last partition field id (none yet: unpartitioned). */
  specs: PartitionSpec[];
  defaultSpec?: PartitionSpec;
  lastPartitionId: number;
  table: IcebergTableRow | null;
}> {
  const ident = icebergIdent(id);
  const row = await new IcebergStore(db).table(tenant, ident.namespace, ident.name);
  const meta = tableMetadataOrUndefined(row?.metadata);
  const r = schemaFor(columns, meta && currentSchema(meta), meta?.['last-column-id'] ?? 0);
  return {
    ...r,
    table: row ?? null,
    columns,
    specs: meta?.['partition-specs'] ?? [],
    defaultSpec: meta?.['partition-specs'].find((s) => s['spec-id'] === meta['default-spec-id']),
    lastPartitionId: meta?.['last-partition-id'] ?? 999,
  };
}

export interface IcebergFile {
  key: string;
  bytes: number;
  stats: FileStats;
  /** Its partition's values by partition field name (a partitioned table). */
  partition?: Record<string, PartitionValue>;
}
export type PartitionValue = number | bigint | string | boolean | null;

export interface IcebergWrite {
  schema: StructType;
  lastColumnId: number;
  columns: Column[];
  files: IcebergFile[];
  /** The new version keeps the current snapshot's files and adds these (an incremental ingest): an append. */
  append?: boolean;
  /** The partition spec the files were written with (ids resolved); none or empty: unpartitioned. */
  spec?: PartitionField[];
  /**
   * The table as `planSchema` read it (null: none yet). The snapshot prepared ahead of the commit
   * is built on it rather than on a second read; if the table moved since, the commit sees that
   * and builds the snapshot again on what it finds.
   */
  table?: IcebergTableRow | null;
}

export interface VersionFacts {
  version: number;
  promoted: boolean;
  runId: string;
  taskId: string;
  rowCount: number;
  bytes: number;
}

/** A rare race: another writer evolved the schema after this attempt wrote its files. */
export class SchemaMovedError extends Error {}

/** A version's snapshot written ahead of its commit (manifest, list, metadata), for the table as it was then. */
export interface PreparedSnapshot {
  /** The metadata location it was built on (null: the table did not exist). */
  base: string | null;
  version: number;
  promoted: boolean;
  snapshotId: number;
  metadataLocation: string;
  meta: TableMetadata;
}

/**
 * Writes a version's snapshot before the metastore transaction that commits the version,
 * for the table as it is now and the version number it will most likely get. Inside the
 * transaction, `commitVersionSnapshot` then only moves the pointer, if nothing moved meanwhile.
 */
export async function prepareVersionSnapshot(
  db: Db,
  store: ObjectStore,
  tenant: string,
  id: DatasetId,
  v: VersionFacts,
  w: IcebergWrite,
  now = Date.now(),
): Promise<PreparedSnapshot> {
  const ident = icebergIdent(id);
  const row =
    w.table !== undefined
      ? (w.table ?? undefined)
      : await new IcebergStore(db).table(tenant, ident.namespace, ident.name);
  const built = await buildVersionSnapshot(store, id, v, w, row, now);
  return { base: row?.metadataLocation ?? null, version: v.version, promoted: v.promoted, ...built };
}

/**
 * Adds a version's snapshot to its table, inside the metastore transaction `t` that
 * commits the version (the table row is locked, so commits to one table queue up). With a
 * snapshot `prepared` for exactly this version on exactly the metadata the table still
 * has, only the pointer moves here; otherwise the snapshot is written now.
 */
export async function commitVersionSnapshot(
  t: Db,
  store: ObjectStore,
  tenant: string,
  id: DatasetId,
  v: VersionFacts,
  w: IcebergWrite,
  now = Date.now(),
  prepared?: PreparedSnapshot,
): Promise<{ snapshotId: number; metadataLocation: string }> {
  const cat = new IcebergStore(t);
  const ident = icebergIdent(id);
  const ready = prepared && prepared.version === v.version && prepared.promoted === v.promoted ? prepared : undefined;
  // The common case in one statement: the table still has the metadata the snapshot was built
  // on, and the swap (which locks the row and compares the pointer) moves it.
  if (
    ready?.base &&
    (await cat.swap(tenant, ident.namespace, ident.name, ready.base, ready.metadataLocation, ready.meta))
  )
    return { snapshotId: ready.snapshotId, metadataLocation: ready.metadataLocation };
  const row = await cat.table(tenant, ident.namespace, ident.name, true);
  if (!row) await cat.ensureNamespace(tenant, ident.namespace);
  const fresh =
    ready && ready.base === (row?.metadataLocation ?? null)
      ? ready
      : await buildVersionSnapshot(store, id, v, w, row, now);
  if (row) {
    if (
      !(await cat.swap(tenant, ident.namespace, ident.name, row.metadataLocation, fresh.metadataLocation, fresh.meta))
    )
      throw new Error(`table ${ident.namespace.join('.')}.${ident.name} moved while locked`);
  } else if (!(await cat.createTable(tenant, ident.namespace, ident.name, fresh.metadataLocation, fresh.meta)))
    throw new Error(`table ${ident.namespace.join('.')}.${ident.name} was created meanwhile: retry`);
  return { snapshotId: fresh.snapshotId, metadataLocation: fresh.metadataLocation };
}

/** The version's snapshot on top of `row` (undefined: a new table): its files written, the metadata returned. */
async function buildVersionSnapshot(
  store: ObjectStore,
  id: DatasetId,
  v: VersionFacts,
  w: IcebergWrite,
  row: IcebergTableRow | undefined,
  now: number,
): Promise<{ snapshotId: number; metadataLocation: string; meta: TableMetadata }> {
  const ident = icebergIdent(id);
  const prefix = datasetLocation(id);
  let meta: TableMetadata =
    tableMetadataOrUndefined(row?.metadata) ??
    newTableMetadata({
      uuid: randomUUID(),
      location: store.uri(prefix),
      schema: w.schema,
      lastColumnId: w.lastColumnId,
      properties: { 'write.format.default': 'parquet', 'strata.dataset': `${id.layer}.${id.namespace}.${id.name}` },
      now,
    });
  if (row) {
    const again = schemaFor(w.columns, currentSchema(meta), meta['last-column-id']);
    if (!sameFields(again.schema, w.schema))
      throw new SchemaMovedError(
        `the schema of ${ident.namespace.join('.')}.${ident.name} changed while this version was written: retry`,
      );
  }
  meta = withSchema(meta, w.schema, w.lastColumnId);
  const schema = currentSchema(meta);
  // The spec the files were written with becomes (or stays) the table's default.
  const specs = withSpec(meta['partition-specs'], w.spec ?? []);
  const spec = specs.spec;
  meta = {
    ...meta,
    'partition-specs': specs.specs,
    'default-spec-id': spec['spec-id'],
    'last-partition-id': Math.max(meta['last-partition-id'], ...spec.fields.map((f) => f['field-id'])),
  };
  const partType = spec.fields.map((f) => ({
    name: f.name,
    id: f['field-id'],
    type: partitionResultType(
      f.transform.replace(/\[.*$/, ''),
      schema.fields.find((x) => x.id === f['source-id'])?.type ?? 'string',
    ),
  }));
  const snapshotId = snapshotById(meta, v.version)
    ? Number(BigInt.asUintN(52, BigInt(`0x${randomUUID().replace(/-/g, '').slice(0, 13)}`)))
    : v.version;
  const seq = meta['last-sequence-number'] + 1;
  const tag = randomUUID();

  const entries: ManifestEntry[] = w.files.map((f) => ({
    status: 1,
    snapshot_id: snapshotId,
    sequence_number: null,
    file_sequence_number: null,
    data_file: dataFile(store.uri(f.key), f.bytes, f.stats, avroPartition(partType, f.partition)),
  }));
  const manifestKey = `${prefix}/metadata/${tag}-m0.avro`;
  const manifest = await encodeContainer(manifestEntrySchema(partType), entries, manifestMeta(schema, spec));
  const added = addedManifest({
    path: store.uri(manifestKey),
    length: manifest.length,
    specId: spec['spec-id'],
    seq,
    snapshotId,
    files: entries.length,
    rows: w.files.reduce((a, f) => a + f.stats.recordCount, 0),
    partitions: partitionSummaries(partType, w.files),
  });
  const parent =
    meta['current-snapshot-id'] !== undefined ? snapshotById(meta, meta['current-snapshot-id']) : undefined;
  const kept = w.append && parent ? await readManifestList(store, parent['manifest-list']) : [];
  const listKey = `${prefix}/metadata/snap-${snapshotId}-1-${tag}.avro`;
  const list = await encodeContainer(MANIFEST_LIST_SCHEMA, [added, ...kept], {
    'snapshot-id': String(snapshotId),
    ...(parent ? { 'parent-snapshot-id': String(parent['snapshot-id']) } : {}),
    'sequence-number': String(seq),
    'format-version': '2',
  });
  const addedBytes = w.files.reduce((a, f) => a + f.bytes, 0);
  const snapshot: Snapshot = {
    'snapshot-id': snapshotId,
    ...(parent ? { 'parent-snapshot-id': parent['snapshot-id'] } : {}),
    'sequence-number': seq,
    'timestamp-ms': now,
    'manifest-list': store.uri(listKey),
    summary: {
      operation: w.append ? 'append' : parent ? 'overwrite' : 'append',
      'added-data-files': String(w.files.length),
      'added-records': String(added.added_rows_count),
      'added-files-size': String(addedBytes),
      'total-records': String(v.rowCount),
      'total-files-size': String(v.bytes),
      'total-data-files': String(
        w.files.length + kept.reduce((a, m) => a + m.added_files_count + m.existing_files_count, 0),
      ),
      'total-delete-files': '0',
      'strata.version': String(v.version),
      'strata.run-id': v.runId,
      'strata.task-id': v.taskId,
      'strata.status': v.promoted ? 'published' : 'rejected',
    },
    'schema-id': schema['schema-id'],
  };
  meta = {
    ...meta,
    snapshots: [...meta.snapshots, snapshot],
    'last-sequence-number': seq,
    'last-updated-ms': now,
    'metadata-log': row
      ? [...meta['metadata-log'], { 'timestamp-ms': meta['last-updated-ms'], 'metadata-file': row.metadataLocation }]
      : [],
  };
  // Published: main moves. Rejected: the snapshot stays staged on the task's audit branch, as an external job's would.
  meta = v.promoted
    ? setRef(meta, 'main', { 'snapshot-id': snapshotId, type: 'branch' }, now)
    : setRef(meta, auditBranch(v.runId, v.taskId), { 'snapshot-id': snapshotId, type: 'branch' }, now);
  // The three files are independent once encoded: written at once.
  const [metadataLocation] = await Promise.all([
    writeMetadata(store, prefix, meta),
    store.putBytes(manifestKey, manifest),
    store.putBytes(listKey, list),
  ]);
  return { snapshotId, metadataLocation, meta };
}

/** The manifest-list entry of a manifest that only adds files (a new snapshot's own manifest). */
export function addedManifest(o: {
  path: string;
  length: number;
  specId: number;
  seq: number;
  snapshotId: ManifestFile['added_snapshot_id'];
  files: number;
  rows: number;
  partitions: ManifestFile['partitions'];
}): ManifestFile {
  return {
    manifest_path: o.path,
    manifest_length: o.length,
    partition_spec_id: o.specId,
    content: 0,
    sequence_number: o.seq,
    min_sequence_number: o.seq,
    added_snapshot_id: o.snapshotId,
    added_files_count: o.files,
    existing_files_count: 0,
    deleted_files_count: 0,
    added_rows_count: o.rows,
    existing_rows_count: 0,
    deleted_rows_count: 0,
    partitions: o.partitions,
    key_metadata: null,
  };
}

/**
 * The name of a metadata file Strata wrote, `{n}-strata-{uuid}.metadata.json`: Iceberg's
 * `{version}-{uuid}` form, told apart from the files another writer (an Airbyte destination
 * committing to its own catalog) leaves in the same table folder.
 */
export const STRATA_METADATA_FILE = /^\d+-strata-[^/]*\.metadata\.json$/;

/** Writes a metadata file `{location}/metadata/{n}-strata-{uuid}.metadata.json`; returns its URI. */
export async function writeMetadata(store: ObjectStore, prefix: string, meta: TableMetadata): Promise<string> {
  const n = String(meta['metadata-log'].length).padStart(5, '0');
  const key = `${prefix}/metadata/${n}-strata-${randomUUID()}.metadata.json`;
  await store.putBytes(key, stringifyJson(meta));
  return store.uri(key);
}

/** A Parquet data file's manifest entry body, from its statistics. */
export function dataFile(path: string, bytes: number, s: FileStats, partition: DataFile['partition'] = {}): DataFile {
  return {
    content: 0,
    file_path: path,
    file_format: 'PARQUET',
    partition,
    record_count: s.recordCount,
    file_size_in_bytes: bytes,
    column_sizes: s.columnSizes,
    value_counts: s.valueCounts,
    null_value_counts: s.nullValueCounts,
    nan_value_counts: null,
    lower_bounds: s.lowerBounds,
    upper_bounds: s.upperBounds,
    key_metadata: null,
    split_offsets: s.splitOffsets.length ? s.splitOffsets : null,
    equality_ids: null,
    sort_order_id: null,
  };
}

const DECIMAL_TYPE = /^decimal\((\d+),\s*(\d+)\)$/;

/**
 * A file's partition values as the manifest's Avro record holds them: by field name, a
 * decimal's unscaled value as its `fixed` bytes (minBytesRequired(P)), the rest as they are.
 */
export function avroPartition(
  fields: { name: string; type: unknown }[],
  values: Record<string, PartitionValue> | undefined,
): DataFile['partition'] {
  const out: DataFile['partition'] = {};
  for (const f of fields) {
    const v = values?.[f.name] ?? null;
    const dec = typeof f.type === 'string' ? DECIMAL_TYPE.exec(f.type) : null;
    out[f.name] =
      dec && v !== null && typeof v !== 'boolean' ? fixedDecimal(BigInt(v), decimalRequiredBytes(Number(dec[1]))) : v;
  }
  return out;
}

/** A partition value in Iceberg's single-value binary form (Appendix D), for the manifest list's bounds. */
function partitionBytes(type: unknown, v: PartitionValue): Buffer | null {
  if (v === null || v === undefined) return null;
  if (typeof type === 'string' && DECIMAL_TYPE.test(type) && typeof v !== 'boolean') return decimalBytes(BigInt(v));
  const b = Buffer.alloc(8);
  if (type === 'int' || type === 'date') {
    b.writeInt32LE(Number(v));
    return b.subarray(0, 4);
  }
  if (type === 'long' || type === 'timestamp' || type === 'timestamptz') {
    b.writeBigInt64LE(BigInt(v));
    return b;
  }
  if (type === 'double') {
    b.writeDoubleLE(Number(v));
    return b;
  }
  if (type === 'boolean') return Buffer.from([v ? 1 : 0]);
  if (type === 'string') return Buffer.from(String(v), 'utf8');
  return null;
}

/** Per partition field of a manifest: whether a null is there, and the lowest and highest value (readers prune manifests by them). */
function partitionSummaries(
  fields: { name: string; type: unknown }[],
  files: IcebergFile[],
): ManifestFile['partitions'] {
  return fields.map((f) => {
    const vals = files.map((x) => x.partition?.[f.name] ?? null);
    const present = vals.filter((v): v is Exclude<PartitionValue, null> => v !== null);
    // Strings by their UTF-8 bytes (Iceberg's order), numbers exactly (a decimal's unscaled value may be a bigint).
    const cmp = (a: Exclude<PartitionValue, null>, b: Exclude<PartitionValue, null>) =>
      typeof a === 'string' ? Buffer.compare(Buffer.from(a), Buffer.from(String(b))) : a < b ? -1 : a > b ? 1 : 0;
    const sorted = [...present].sort(cmp);
    const bound = (v: PartitionValue | undefined) =>
      v === undefined ||
      (!['int', 'date', 'long', 'timestamp', 'timestamptz', 'string', 'boolean'].includes(String(f.type)) &&
        !DECIMAL_TYPE.test(String(f.type)))
        ? null
        : partitionBytes(f.type, v);
    return {
      contains_null: present.length < vals.length,
      contains_nan: null,
      lower_bound: bound(sorted[0]),
      upper_bound: bound(sorted[sorted.length - 1]),
    };
  });
}

/** The key of a URI inside the tenant's store; anything outside is refused (a table may not point out of its warehouse). */
export function keyOf(store: ObjectStore, uri: string): string {
  const root = store.root.replace(/\/+$/, '');
  const norm = (u: string) => u.replace(/^s3a?:\/\//, 's3://').replace(/^file:\/(?!\/)/, 'file:///');
  const u = norm(uri);
  const r = norm(root);
  if (
    !u.startsWith(`${r}/`) ||
    u
      .slice(r.length + 1)
      .split('/')
      .includes('..')
  )
    throw new Error(`${uri} is outside this warehouse (${root})`);
  return u.slice(r.length + 1);
}

export async function readManifestList(store: ObjectStore, uri: string): Promise<ManifestFile[]> {
  return (await decodeContainer<ManifestFile>(await store.getBytes(keyOf(store, uri)))).records;
}

/** The live data files of a snapshot (all manifests, entries not deleted). */
export async function snapshotFiles(store: ObjectStore, meta: TableMetadata, snapshotId?: number): Promise<string[]> {
  const id = snapshotId ?? meta['current-snapshot-id'];
  if (id === undefined) return [];
  const snap = snapshotById(meta, id);
  if (!snap) throw new Error(`no snapshot ${id}`);
  const out: string[] = [];
  for (const m of await readManifestList(store, snap['manifest-list'])) {
    if (m.content !== 0) throw new Error('tables with delete files are not read by Strata yet');
    const { records } = await decodeContainer<ManifestEntry>(await store.getBytes(keyOf(store, m.manifest_path)));
    for (const e of records) if (e.status !== 2) out.push(e.data_file.file_path);
  }
  return out;
}

export type { Schema };
