/**
 * Finding an Airbyte Iceberg destination's tables: which destinations write Iceberg and where,
 * which tables a connection's streams land in, and the newest metadata file of each table in
 * the layouts Iceberg catalogs use (a real folder store).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findTables, icebergDestination, stagedMetadata, streamTables } from '../../activities/airbyte/iceberg.js';
import { newTableMetadata, type TableMetadata } from '../../activities/iceberg/metadata.js';
import { duckTypeOf } from '../../activities/iceberg/schema.js';
import { openStore } from '../../activities/s3/client.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('Airbyte Iceberg destinations', () => {
  it('reads the warehouse and namespace of S3 Data Lake and the older Iceberg destination; other types are not Iceberg', () => {
    expect(
      icebergDestination({
        destinationType: 's3-data-lake',
        configuration: {
          warehouse_location: 's3://lake/acme/airbyte/',
          catalog_type: { catalog_type: 'GLUE', database_name: 'raw' },
        },
      }),
    ).toEqual({ warehouse: 's3://lake/acme/airbyte', namespace: 'raw' });
    expect(
      icebergDestination({
        destinationType: 'iceberg',
        configuration: {
          storage_config: { s3_warehouse_uri: 's3://lake/acme/wh' },
          catalog_config: { catalog_type: 'Rest', namespace: 'landing' },
        },
      }),
    ).toEqual({ warehouse: 's3://lake/acme/wh', namespace: 'landing' });
    expect(icebergDestination({ destinationType: 'postgres', configuration: { warehouse_location: 's3://x' } })).toBe(
      undefined,
    );
  });

  it("names a connection's stream tables: prefix + stream, lower-cased; the namespace its definition gives", () => {
    const dest = { warehouse: 's3://lake/acme/wh', namespace: 'raw' };
    const streams = { streams: [{ name: 'Orders' }, { name: 'line-items' }] };
    expect(streamTables({ configurations: streams, namespaceDefinition: 'destination', prefix: 'ab_' }, dest)).toEqual({
      names: new Set(['ab_orders', 'ab_line_items']),
      namespace: 'raw',
    });
    expect(
      streamTables({ configurations: streams, namespaceDefinition: 'custom_format', namespaceFormat: 'Shop' }, dest),
    ).toMatchObject({ namespace: 'shop' });
    // ${SOURCE_NAMESPACE} and `source`: the namespace is the source's, which the API does not tell: any.
    expect(
      streamTables(
        { configurations: streams, namespaceDefinition: 'custom_format', namespaceFormat: '${SOURCE_NAMESPACE}_x' },
        dest,
      ).namespace,
    ).toBeUndefined();
    expect(streamTables({ configurations: streams, namespaceDefinition: 'source' }, dest).namespace).toBeUndefined();
    expect(
      streamTables({ configurations: { streams: [] }, namespaceDefinition: 'destination' }, dest).names,
    ).toBeUndefined();
  });

  it('finds each table folder and its newest metadata file, in Nessie, Glue and Hadoop layouts', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ab-ice-'));
    dirs.push(dir);
    const store = openStore(dir);
    const put = (k: string) => store.putBytes(k, '{}');
    // Nessie: {ns}/{table}_{uuid}; Java's 0000N-uuid names: 00010 is newer than 00009.
    await put('wh/raw/orders_0123456789abcdef0123456789abcdef/metadata/00009-a.metadata.json');
    await put('wh/raw/orders_0123456789abcdef0123456789abcdef/metadata/00010-b.metadata.json');
    await put('wh/raw/orders_0123456789abcdef0123456789abcdef/metadata/snap-1-1-x.avro');
    // Strata's own metadata files in the destination's folder (write-audit-publish) are not the destination's.
    await put('wh/raw/orders_0123456789abcdef0123456789abcdef/metadata/00011-strata-d.metadata.json');
    await put('wh/raw/orders_0123456789abcdef0123456789abcdef/data/00000-0.parquet');
    // Glue: {ns}.db/{table}; gzipped metadata counts too.
    await put('wh/raw.db/customers/metadata/00001-c.gz.metadata.json');
    // Hadoop: v{N}.metadata.json; the version hint is not a metadata file.
    await put('wh/other/events-01234567-89ab-cdef-0123-456789abcdef/metadata/v2.metadata.json');
    await put('wh/other/events-01234567-89ab-cdef-0123-456789abcdef/metadata/v12.metadata.json');
    await put('wh/other/events-01234567-89ab-cdef-0123-456789abcdef/metadata/version-hint.text');
    // Not a table: a metadata-looking file outside a metadata folder, and another warehouse.
    await put('wh/raw/notes/00001-x.metadata.json');
    await put('elsewhere/raw/orders/metadata/00099-z.metadata.json');
    expect(await findTables(store, 'wh')).toEqual([
      {
        namespace: 'other',
        table: 'events',
        metadataKey: 'wh/other/events-01234567-89ab-cdef-0123-456789abcdef/metadata/v12.metadata.json',
      },
      { namespace: 'raw', table: 'customers', metadataKey: 'wh/raw.db/customers/metadata/00001-c.gz.metadata.json' },
      {
        namespace: 'raw',
        table: 'orders',
        metadataKey: 'wh/raw/orders_0123456789abcdef0123456789abcdef/metadata/00010-b.metadata.json',
      },
    ]);
  });

  it('reads an Iceberg schema as DuckDB types (the inverse of the writer)', () => {
    expect(['long', 'int', 'string', 'timestamptz', 'decimal(10, 2)', 'fixed[16]'].map(duckTypeOf)).toEqual([
      'BIGINT',
      'INTEGER',
      'VARCHAR',
      'TIMESTAMP WITH TIME ZONE',
      'DECIMAL(10,2)',
      'BLOB',
    ]);
    expect(
      duckTypeOf({
        type: 'struct',
        fields: [
          {
            id: 1,
            name: 'tags',
            required: false,
            type: { type: 'list', 'element-id': 2, element: 'string', 'element-required': false },
          },
        ],
      }),
    ).toBe('STRUCT("tags" VARCHAR[])');
  });

  it("stages a sync's snapshot on the audit branch, main where Strata published it (nothing the first time)", () => {
    const snap = (id: number, parent?: number) => ({
      'snapshot-id': id,
      ...(parent ? { 'parent-snapshot-id': parent } : {}),
      'sequence-number': id,
      'timestamp-ms': id,
      'manifest-list': `s3://lake/t/metadata/snap-${id}.avro`,
      summary: { operation: 'append' },
    });
    const dest = (ids: number[]): TableMetadata => ({
      ...newTableMetadata({
        uuid: 'u',
        location: 's3://lake/t',
        schema: { type: 'struct', fields: [] },
        lastColumnId: 0,
        now: 1,
      }),
      'last-sequence-number': ids.length,
      snapshots: ids.map((id, i) => snap(id, ids[i - 1])),
      'current-snapshot-id': ids[ids.length - 1],
      refs: { main: { 'snapshot-id': ids[ids.length - 1], type: 'branch' } },
      'metadata-log': [{ 'timestamp-ms': 1, 'metadata-file': 's3://lake/t/metadata/00000-a.metadata.json' }],
    });
    const o = { branch: 'audit-r1-ingest', snapshotId: '1', runId: 'r1', taskId: 'ingest', now: 5 };
    const first = stagedMetadata(dest([1]), undefined, undefined, o);
    expect(first.refs).toEqual({ 'audit-r1-ingest': { 'snapshot-id': 1, type: 'branch' } });
    expect(first['current-snapshot-id']).toBe(-1);
    expect(first['snapshot-log']).toEqual([]);
    expect(first.snapshots[0].summary).toMatchObject({ 'strata.status': 'staged', 'strata.branch': 'audit-r1-ingest' });
    // Published, then the destination appends 2 and 3: main stays at 1, the new branch points at 3, earlier verdicts kept.
    const published: TableMetadata = {
      ...first,
      refs: { ...first.refs, main: { 'snapshot-id': 1, type: 'branch' } },
      'current-snapshot-id': 1,
      snapshots: [{ ...first.snapshots[0], summary: { ...first.snapshots[0].summary, 'strata.status': 'published' } }],
    };
    const next = stagedMetadata(dest([1, 2, 3]), published, 's3://lake/t/metadata/00001-strata-b.metadata.json', {
      ...o,
      branch: 'audit-r2-ingest',
      snapshotId: '3',
    });
    expect(next['current-snapshot-id']).toBe(1);
    expect(next.refs).toEqual({
      main: { 'snapshot-id': 1, type: 'branch' },
      'audit-r1-ingest': { 'snapshot-id': 1, type: 'branch' },
      'audit-r2-ingest': { 'snapshot-id': 3, type: 'branch' },
    });
    expect(next.snapshots.map((s) => s.summary['strata.status'])).toEqual(['published', undefined, 'staged']);
    expect(next['metadata-log'].map((m) => m['metadata-file'])).toEqual([
      's3://lake/t/metadata/00000-a.metadata.json',
      's3://lake/t/metadata/00001-strata-b.metadata.json',
    ]);
    expect(() => stagedMetadata(dest([1]), undefined, undefined, { ...o, snapshotId: '9' })).toThrow(
      /not in the destination/,
    );
  });
});
