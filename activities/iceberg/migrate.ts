/**
 * `strata tables migrate`: datasets written before every version was an Iceberg snapshot
 * become Iceberg tables, each of their versions a snapshot, with one command. Nothing is
 * copied or rewritten: each version's Parquet files go into a manifest (with statistics
 * read from their footers) exactly as they are, so Strata keeps reading them as before and
 * an Iceberg reader reads the same rows. Those files carry no Iceberg field ids, so the
 * table gets a name mapping (`schema.name-mapping.default`, the Iceberg way of reading
 * files written before a table was Iceberg) from column names to the ids of its schemas.
 *
 * Per dataset, in version order: a version whose snapshot already exists (summary
 * `strata.version`) is left alone, so a dataset half written before and half after Iceberg
 * gets only its missing early snapshots, and a second run changes nothing. An incremental
 * version (its files a superset of the previous version's) is an `append` over the
 * previous manifests; others an `overwrite`; a rejected version a staged snapshot off
 * `main`; versions already removed by retention have no files left and are reported, not
 * migrated. The table's pointer moves once per dataset under the dataset's and the table's
 * row locks; a crash before that leaves only unreferenced files (orphan removal's work).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { Layer, type DatasetId } from '../../schemas/lake.js';
import { Catalog, datasetKey } from '../../store/catalog.js';
import { queryRows, type Db } from '../../store/db.js';
import { IcebergStore } from '../../store/iceberg.js';
import type { ObjectStore } from '../s3/client.js';
import { openDuck } from '../sql/sandbox.js';
import {
  decodeContainer,
  encodeContainer,
  MANIFEST_LIST_SCHEMA,
  manifestEntrySchema,
  manifestMeta,
  type ManifestEntry,
  type ManifestFile,
} from './avro.js';
import {
  currentSchema,
  defaultSpec,
  newTableMetadata,
  withSchema,
  type Snapshot,
  type TableMetadata,
  tableMetadataOrUndefined,
} from './metadata.js';
import { schemaFor, type Schema } from './schema.js';
import { fileStats } from './stats.js';
import { addedManifest, dataFile, datasetLocation, icebergIdent, keyOf, writeMetadata } from './writer.js';

export interface MigrateDeps {
  db: Db;
  /** A tenant's own store (its lake prefix). */
  storeFor: (tenant: string) => ObjectStore;
  cacheDir: string;
}

export interface MigratedDataset {
  tenant: string;
  dataset: string;
  /** Versions that became snapshots (or would, on a dry run). */
  added: number[];
  /** Versions already snapshots. */
  present: number[];
  /** Versions whose files retention removed: nothing to migrate. */
  vacuumed: number[];
  created: boolean;
}

export interface MigrateReport {
  datasets: MigratedDataset[];
  dryRun: boolean;
}

export async function migrateDatasets(
  deps: MigrateDeps,
  o: { tenant?: string; dryRun?: boolean; now?: number },
): Promise<MigrateReport> {
  const rows = await queryRows(
    deps.db,
    z.object({ tenant: z.string(), layer: Layer, namespace: z.string(), name: z.string() }),
    `SELECT tenant, layer, namespace, name FROM lake_datasets WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, layer, namespace, name`,
    [o.tenant ?? null],
  );
  const out: MigrateReport = { datasets: [], dryRun: !!o.dryRun };
  for (const d of rows) {
    const id: DatasetId = { layer: d.layer, namespace: d.namespace, name: d.name };
    out.datasets.push(await migrateDataset(deps, d.tenant, id, o));
  }
  return out;
}

/** The snapshot ids of a table's Strata versions (summary strata.version → snapshot id). */
function versionsIn(meta: TableMetadata | undefined): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of meta?.snapshots ?? []) {
    const v = Number(s.summary?.['strata.version']);
    if (Number.isInteger(v) && v > 0) m.set(v, s['snapshot-id']);
  }
  return m;
}

async function migrateDataset(
  deps: MigrateDeps,
  tenant: string,
  id: DatasetId,
  o: { dryRun?: boolean; now?: number },
): Promise<MigratedDataset> {
  const catalog = new Catalog(deps.db);
  const ident = icebergIdent(id);
  const versions = (await catalog.versions(tenant, id)).sort((a, b) => a.version - b.version);
  const row = await new IcebergStore(deps.db).table(tenant, ident.namespace, ident.name);
  const have = versionsIn(tableMetadataOrUndefined(row?.metadata));
  const res: MigratedDataset = {
    tenant,
    dataset: datasetKey(id),
    added: [],
    present: versions.filter((v) => have.has(v.version)).map((v) => v.version),
    vacuumed: versions.filter((v) => !have.has(v.version) && v.status === 'vacuumed').map((v) => v.version),
    created: !row,
  };
  const missing = versions.filter((v) => !have.has(v.version) && v.status !== 'vacuumed');
  res.added = missing.map((v) => v.version);
  if (!missing.length || o.dryRun) return res;

  const store = deps.storeFor(tenant);
  const prefix = datasetLocation(id);
  const scratch = path.join(deps.cacheDir, 'migrate', randomUUID());
  await mkdir(scratch, { recursive: true });
  const written = new Map<
    number,
    { list: string; manifests: ManifestFile[]; snapshot: Snapshot; files: Set<string> }
  >();
  const duck = await openDuck();
  try {
    // Local copies of every file to read statistics from (the sandbox reaches only these).
    const locals = new Map<string, string>();
    for (const v of missing)
      for (const key of v.files) {
        if (locals.has(key)) continue;
        const direct = store.localPath(key);
        if (direct) locals.set(key, direct);
        else {
          const f = path.join(scratch, `${locals.size}.parquet`);
          await store.getFile(key, f);
          locals.set(key, f);
        }
      }
    await duck.lock({ files: [...locals.values()], scratch });

    await deps.db.tx(async (tx) => {
      await tx.query(
        `SELECT 1 FROM lake_datasets WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4 FOR UPDATE`,
        [tenant, id.layer, id.namespace, id.name],
      );
      const cat = new IcebergStore(tx);
      await cat.ensureNamespace(tenant, ident.namespace);
      const locked = await cat.table(tenant, ident.namespace, ident.name, true);
      const now = o.now ?? Date.now();
      const first = missing[0];
      let meta: TableMetadata =
        tableMetadataOrUndefined(locked?.metadata) ??
        newTableMetadata({
          uuid: randomUUID(),
          location: store.uri(prefix),
          schema: schemaFor(first.schema, undefined, 0).schema,
          lastColumnId: schemaFor(first.schema, undefined, 0).lastColumnId,
          properties: { 'write.format.default': 'parquet', 'strata.dataset': `${id.layer}.${id.namespace}.${id.name}` },
          now,
        });
      const startSchemaId = locked ? meta['current-schema-id'] : undefined;
      const already = versionsIn(meta);
      const ids = new Set(meta.snapshots.map((s) => String(s['snapshot-id'])));
      const tag = randomUUID();
      const log = [...meta['snapshot-log']];
      for (const v of missing) {
        if (already.has(v.version)) continue;
        const planned = schemaFor(v.schema, currentSchema(meta), meta['last-column-id']);
        meta = withSchema(meta, planned.schema, planned.lastColumnId);
        const schema = currentSchema(meta);
        const spec = defaultSpec(meta);
        // The version it followed: the newest earlier one that was committed.
        const prev = [...versions].reverse().find((p) => p.version < v.version && p.status !== 'rejected');
        const prevSnap = prev && (written.get(prev.version) ?? snapshotOf(meta, already.get(prev.version)));
        const prevFiles = prev ? new Set(prev.files) : new Set<string>();
        const append = !!prev && prev.files.length > 0 && prev.files.every((f) => v.files.includes(f)) && !!prevSnap;
        const newFiles = append ? v.files.filter((f) => !prevFiles.has(f)) : v.files;
        const snapshotId = ids.has(String(v.version)) ? randomSnapshotId() : v.version;
        ids.add(String(snapshotId));
        const seq = meta['last-sequence-number'] + 1;
        const entries: ManifestEntry[] = [];
        for (const key of newFiles) {
          const local = locals.get(key);
          if (!local) throw new Error(`${key} was not fetched before its statistics were read`);
          const stats = await fileStats(duck.conn, local, schema);
          const size = (await store.head(key))?.size ?? 0;
          entries.push({
            status: 1,
            snapshot_id: snapshotId,
            sequence_number: null,
            file_sequence_number: null,
            data_file: dataFile(store.uri(key), size, stats),
          });
        }
        const manifestKey = `${prefix}/metadata/migrate-${tag}-v${v.version}-m0.avro`;
        const body = await encodeContainer(manifestEntrySchema([]), entries, manifestMeta(schema, spec));
        await store.putBytes(manifestKey, body);
        const rows = entries.reduce((a, e) => a + e.data_file.record_count, 0);
        const added = addedManifest({
          path: store.uri(manifestKey),
          length: body.length,
          specId: spec['spec-id'],
          seq,
          snapshotId,
          files: entries.length,
          rows,
          partitions: [],
        });
        const kept = append && prevSnap ? await manifestsOf(store, prevSnap) : [];
        const manifests = [added, ...kept];
        const listKey = `${prefix}/metadata/snap-${snapshotId}-1-migrate-${tag}.avro`;
        await store.putBytes(
          listKey,
          await encodeContainer(MANIFEST_LIST_SCHEMA, manifests, {
            'snapshot-id': String(snapshotId),
            ...(prevSnap ? { 'parent-snapshot-id': String(prevSnap.snapshot['snapshot-id']) } : {}),
            'sequence-number': String(seq),
            'format-version': '2',
          }),
        );
        const created = Date.parse(v.createdAt);
        const snapshot: Snapshot = {
          'snapshot-id': snapshotId,
          ...(prevSnap ? { 'parent-snapshot-id': prevSnap.snapshot['snapshot-id'] } : {}),
          'sequence-number': seq,
          'timestamp-ms': created,
          'manifest-list': store.uri(listKey),
          summary: {
            operation: append ? 'append' : prevSnap ? 'overwrite' : 'append',
            'added-data-files': String(entries.length),
            'added-records': String(rows),
            'total-records': String(v.rowCount),
            'total-files-size': String(v.bytes),
            'total-data-files': String(v.files.length),
            'total-delete-files': '0',
            'strata.version': String(v.version),
            'strata.run-id': v.runId,
            'strata.task-id': v.taskId,
            'strata.status': v.status === 'rejected' ? 'rejected' : 'published',
            'strata.migrated': 'true',
          },
          'schema-id': schema['schema-id'],
        };
        meta = { ...meta, snapshots: [...meta.snapshots, snapshot], 'last-sequence-number': seq };
        if (v.promotedAt) log.push({ 'timestamp-ms': Date.parse(v.promotedAt), 'snapshot-id': snapshotId });
        written.set(v.version, { list: store.uri(listKey), manifests, snapshot, files: new Set(v.files) });
      }
      // main: where it was, or (a new table) the dataset's current version.
      const current = versions.find((v) => v.current);
      const currentSnap =
        current && (written.get(current.version)?.snapshot['snapshot-id'] ?? already.get(current.version));
      if (!locked && currentSnap !== undefined) {
        meta = {
          ...meta,
          'current-snapshot-id': currentSnap,
          refs: { ...meta.refs, main: { 'snapshot-id': currentSnap, type: 'branch' } },
        };
      }
      const schemaOfCurrent =
        startSchemaId ??
        (currentSnap !== undefined
          ? meta.snapshots.find((s) => s['snapshot-id'] === currentSnap)?.['schema-id']
          : undefined) ??
        meta['current-schema-id'];
      meta = {
        ...meta,
        'current-schema-id': schemaOfCurrent,
        'snapshot-log': log.sort((a, b) => a['timestamp-ms'] - b['timestamp-ms']),
        'last-updated-ms': now,
        properties: {
          ...meta.properties,
          'schema.name-mapping.default': JSON.stringify(nameMapping(meta.schemas, schemaOfCurrent)),
        },
        'metadata-log': locked
          ? [
              ...meta['metadata-log'],
              { 'timestamp-ms': meta['last-updated-ms'], 'metadata-file': locked.metadataLocation },
            ]
          : [],
      };
      const location = await writeMetadata(store, prefix, meta);
      if (locked) {
        if (!(await cat.swap(tenant, ident.namespace, ident.name, locked.metadataLocation, location, meta)))
          throw new Error(`table ${datasetKey(id)} moved while locked`);
      } else if (!(await cat.createTable(tenant, ident.namespace, ident.name, location, meta)))
        throw new Error(`table ${datasetKey(id)} appeared meanwhile: run the migration again`);
    });
  } finally {
    await duck.close();
    await rm(scratch, { recursive: true, force: true });
  }
  return res;
}

function snapshotOf(meta: TableMetadata, id: number | undefined) {
  const noManifests: ManifestFile[] | undefined = undefined;
  const s = id === undefined ? undefined : meta.snapshots.find((x) => String(x['snapshot-id']) === String(id));
  return s && { list: s['manifest-list'], manifests: noManifests, snapshot: s };
}

async function manifestsOf(
  store: ObjectStore,
  p: { list: string; manifests?: ManifestFile[] | undefined },
): Promise<ManifestFile[]> {
  return p.manifests ?? (await decodeContainer<ManifestFile>(await store.getBytes(keyOf(store, p.list)))).records;
}

function randomSnapshotId(): number {
  return Number(BigInt.asUintN(52, BigInt(`0x${randomUUID().replace(/-/g, '').slice(0, 13)}`)));
}

/**
 * Iceberg's name mapping: for files without field ids, which id a column name means. The
 * current schema's names first; a name only older schemas had maps to its newest id there.
 */
export function nameMapping(schemas: Schema[], currentId: number): { 'field-id': number; names: string[] }[] {
  const ordered = [
    ...schemas.filter((s) => s['schema-id'] === currentId),
    ...[...schemas].filter((s) => s['schema-id'] !== currentId).sort((a, b) => b['schema-id'] - a['schema-id']),
  ];
  const seen = new Map<string, number>();
  for (const s of ordered) for (const f of s.fields) if (!seen.has(f.name)) seen.set(f.name, f.id);
  return [...seen].map(([name, id]) => ({ 'field-id': id, names: [name] }));
}
