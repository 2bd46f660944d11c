/**
 * What Airbyte's S3 Data Lake destination leaves in S3 after a sync, for the Airbyte double:
 * per stream an Iceberg v2 table committed through the destination's own catalog (not
 * Strata's), laid out as Nessie lays it out: `{warehouse}/{namespace}/{table}_{uuid}/`,
 * Parquet data files with field ids, an Avro manifest and manifest list per append, and
 * metadata files `0000N-{uuid}.metadata.json`. Each sync appends a snapshot. Written here
 * from the table spec directly (no Strata metadata code), so Strata's registration is
 * checked against files it did not write; iceberg-go then reads them through Strata.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { encodeContainer, manifestEntrySchema, MANIFEST_LIST_SCHEMA } from '../../activities/iceberg/avro.js';
import type { ObjectStore } from '../../activities/s3/client.js';

export interface Row {
  id: number;
  name: string;
}

interface TableState {
  folder: string;
  uuid: string;
  n: number;
  meta: Record<string, unknown> & { snapshots: Record<string, unknown>[] };
  manifests: Record<string, unknown>[];
  rows: number;
  bytes: number;
  last?: string;
}

const SCHEMA = {
  type: 'struct',
  'schema-id': 0,
  fields: [
    { id: 1, name: 'id', required: true, type: 'long' },
    { id: 2, name: 'name', required: false, type: 'string' },
  ],
};

export class IcebergDestination {
  private tables = new Map<string, TableState>();
  /** Every metadata key written, in order. */
  readonly written: string[] = [];
  constructor(
    /** The store whose keys the warehouse is under (the lake root, not a tenant's folder). */
    private readonly store: ObjectStore,
    /** Key of the warehouse folder in that store. */
    private readonly warehouseKey: string,
  ) {}

  /** One sync of one stream: appends rows as a new snapshot (the table is created on the first). */
  async append(namespace: string, table: string, rows: Row[]): Promise<string> {
    const key = `${namespace}.${table}`;
    let t = this.tables.get(key);
    const now = Date.now();
    if (!t) {
      const uuid = randomUUID();
      const folder = `${this.warehouseKey}/${namespace}/${table}_${uuid.replace(/-/g, '')}`;
      t = {
        folder,
        uuid,
        n: 0,
        manifests: [],
        rows: 0,
        bytes: 0,
        meta: {
          'format-version': 2,
          'table-uuid': uuid,
          location: this.store.uri(folder),
          'last-sequence-number': 0,
          'last-updated-ms': now,
          'last-column-id': 2,
          schemas: [SCHEMA],
          'current-schema-id': 0,
          'partition-specs': [{ 'spec-id': 0, fields: [] }],
          'default-spec-id': 0,
          'last-partition-id': 999,
          properties: { 'write.format.default': 'parquet', 'airbyte.sync': 'true' },
          snapshots: [],
          'snapshot-log': [],
          'metadata-log': [],
          'sort-orders': [{ 'order-id': 0, fields: [] }],
          'default-sort-order-id': 0,
          refs: {},
        },
      };
      this.tables.set(key, t);
    }
    const seq = (t.meta['last-sequence-number'] as number) + 1;
    const snapshotId = Math.floor(Math.random() * 2 ** 48) + 1;
    const tag = randomUUID();
    // The data file, with Iceberg field ids in the Parquet schema.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'iceberg-dest-'));
    const local = path.join(dir, 'part.parquet');
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    try {
      const values = rows.map((r) => `(${r.id}::BIGINT, '${r.name.replace(/'/g, "''")}')`).join(', ');
      await conn.run(
        `COPY (SELECT * FROM (VALUES ${values}) v(id, name)) TO '${local}' (FORMAT PARQUET, FIELD_IDS {id: 1, name: 2})`,
      );
    } finally {
      conn.closeSync();
      db.closeSync();
    }
    const parquet = await readFile(local);
    await rm(dir, { recursive: true, force: true });
    const dataKey = `${t.folder}/data/00000-${seq}-${tag}.parquet`;
    await this.store.putBytes(dataKey, parquet);
    const entry = {
      status: 1,
      snapshot_id: snapshotId,
      sequence_number: null,
      file_sequence_number: null,
      data_file: {
        content: 0,
        file_path: this.store.uri(dataKey),
        file_format: 'PARQUET',
        partition: {},
        record_count: rows.length,
        file_size_in_bytes: parquet.length,
        column_sizes: null,
        value_counts: null,
        null_value_counts: null,
        nan_value_counts: null,
        lower_bounds: null,
        upper_bounds: null,
        key_metadata: null,
        split_offsets: null,
        equality_ids: null,
        sort_order_id: null,
      },
    };
    const manifest = await encodeContainer(manifestEntrySchema([]), [entry], {
      schema: JSON.stringify(SCHEMA),
      'schema-id': '0',
      'partition-spec': '[]',
      'partition-spec-id': '0',
      'format-version': '2',
      content: 'data',
    });
    const manifestKey = `${t.folder}/metadata/${tag}-m0.avro`;
    await this.store.putBytes(manifestKey, manifest);
    t.manifests.push({
      manifest_path: this.store.uri(manifestKey),
      manifest_length: manifest.length,
      partition_spec_id: 0,
      content: 0,
      sequence_number: seq,
      min_sequence_number: seq,
      added_snapshot_id: snapshotId,
      added_files_count: 1,
      existing_files_count: 0,
      deleted_files_count: 0,
      added_rows_count: rows.length,
      existing_rows_count: 0,
      deleted_rows_count: 0,
      partitions: [],
      key_metadata: null,
    });
    const parent = t.meta['current-snapshot-id'] as number | undefined;
    const list = await encodeContainer(MANIFEST_LIST_SCHEMA, [...t.manifests].reverse(), {
      'snapshot-id': String(snapshotId),
      ...(parent ? { 'parent-snapshot-id': String(parent) } : {}),
      'sequence-number': String(seq),
      'format-version': '2',
    });
    const listKey = `${t.folder}/metadata/snap-${snapshotId}-1-${tag}.avro`;
    await this.store.putBytes(listKey, list);
    t.rows += rows.length;
    t.bytes += parquet.length;
    const previous = t.last && this.store.uri(t.last);
    t.meta = {
      ...t.meta,
      'last-sequence-number': seq,
      'last-updated-ms': now,
      'current-snapshot-id': snapshotId,
      snapshots: [
        ...t.meta.snapshots,
        {
          'snapshot-id': snapshotId,
          ...(parent ? { 'parent-snapshot-id': parent } : {}),
          'sequence-number': seq,
          'timestamp-ms': now,
          'manifest-list': this.store.uri(listKey),
          summary: {
            operation: 'append',
            'added-data-files': '1',
            'added-records': String(rows.length),
            'total-records': String(t.rows),
            'total-files-size': String(t.bytes),
            'total-data-files': String(t.manifests.length),
            'total-delete-files': '0',
          },
          'schema-id': 0,
        },
      ],
      'snapshot-log': [...(t.meta['snapshot-log'] as unknown[]), { 'timestamp-ms': now, 'snapshot-id': snapshotId }],
      'metadata-log': previous
        ? [...(t.meta['metadata-log'] as unknown[]), { 'timestamp-ms': now, 'metadata-file': previous }]
        : [],
      refs: { main: { 'snapshot-id': snapshotId, type: 'branch' } },
    };
    const metaKey = `${t.folder}/metadata/${String(t.n).padStart(5, '0')}-${randomUUID()}.metadata.json`;
    t.n++;
    t.last = metaKey;
    await this.store.putBytes(metaKey, JSON.stringify(t.meta));
    this.written.push(metaKey);
    return metaKey;
  }
}
