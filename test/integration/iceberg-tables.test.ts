/**
 * Dataset versions are Iceberg v2 snapshots: the files carry the table's field ids, the
 * manifests their statistics, the metadata schemas (evolved with stable ids), snapshots,
 * `main` and the snapshot log. A failed check leaves a staged snapshot off `main`.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeContainer, type ManifestEntry, type ManifestFile } from '../../activities/iceberg/avro.js';
import { currentSchema, type TableMetadata } from '../../activities/iceberg/metadata.js';
import { keyOf, snapshotFiles } from '../../activities/iceberg/writer.js';
import { localFile } from '../../activities/lake/engine.js';
import { forTenant } from '../../activities/lake/open.js';
import type { RunState } from '../../schemas/run.js';
import { IcebergStore } from '../../store/iceberg.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack('iceberg-tables', { lake: 's3' });
});
afterAll(async () => stack?.close());

const run = (s: ReturnType<typeof spec>): Promise<RunState> => stack.withWorker(() => stack.runToEnd(s));

const pipeline = (sql: string, checks = '[]') =>
  spec(`
id: iceberg_tables
tasks:
  - id: orders
    kind: sql
    layer: silver
    sql: ${JSON.stringify(sql)}
    output: silver.orders
    checks: ${checks}
`);

async function table(): Promise<TableMetadata> {
  const row = await new IcebergStore(stack.db).table(stack.tenant, ['silver'], 'orders');
  expect(row, 'silver.orders is an Iceberg table in namespace silver').toBeDefined();
  const stored = JSON.parse((await stack.store!.getBytes(keyOf(stack.store!, row!.metadataLocation))).toString());
  expect(stored).toEqual(row!.metadata);
  return row!.metadata as unknown as TableMetadata;
}

describe('dataset versions are Iceberg snapshots', () => {
  it('writes field ids, manifests with statistics, evolving schemas, main and the snapshot log', async () => {
    const v1 = await run(
      pipeline(
        `SELECT i::BIGINT AS id, 'c' || (i % 3) AS customer, (i * 1.5)::DOUBLE AS amount, i::SMALLINT AS qty, DATE '2026-01-01' + i::INT AS day FROM range(1, 11) t(i)`,
      ),
    );
    expect(v1.status).toBe('success');
    let meta = await table();
    expect(meta['format-version']).toBe(2);
    expect(meta['current-snapshot-id']).toBe(1);
    expect(meta.refs.main).toEqual({ 'snapshot-id': 1, type: 'branch' });
    const s1 = currentSchema(meta);
    expect(s1.fields.map((f) => [f.id, f.name, f.type])).toEqual([
      [1, 'id', 'long'],
      [2, 'customer', 'string'],
      [3, 'amount', 'double'],
      [4, 'qty', 'int'],
      [5, 'day', 'date'],
    ]);

    // The manifest list and manifest: one added file with its row count and exact bounds.
    const store = stack.store!;
    const list = (
      await decodeContainer<ManifestFile>(await store.getBytes(keyOf(store, meta.snapshots[0]['manifest-list'])))
    ).records;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ added_files_count: 1, added_rows_count: 10, sequence_number: 1, content: 0 });
    const manifest = await decodeContainer<ManifestEntry>(await store.getBytes(keyOf(store, list[0].manifest_path)));
    expect(JSON.parse(manifest.meta.schema).fields.map((f: { id: number }) => f.id)).toEqual([1, 2, 3, 4, 5]);
    expect(manifest.meta['format-version']).toBe('2');
    expect(manifest.meta.content).toBe('data');
    expect(JSON.parse(manifest.meta['avro.schema']).fields[4].type.fields[1]['field-id']).toBe(100);
    const df = manifest.records[0].data_file;
    expect(df.record_count).toBe(10);
    const bound = (m: { key: number; value: Buffer }[] | null, id: number) => m!.find((x) => x.key === id)!.value;
    expect(bound(df.lower_bounds, 1).readBigInt64LE()).toBe(1n);
    expect(bound(df.upper_bounds, 1).readBigInt64LE()).toBe(10n);
    expect(bound(df.lower_bounds, 2).toString()).toBe('c0');
    expect(bound(df.upper_bounds, 5).readInt32LE()).toBe(Date.UTC(2026, 0, 11) / 86_400_000);
    expect(df.null_value_counts!.find((x) => x.key === 3)!.value).toBe(0);

    // The Parquet file carries the field ids (what Iceberg readers project by).
    const local = await localFile(forTenant(stack.lake!, stack.tenant), keyOf(store, df.file_path));
    const duck = await (await DuckDBInstance.create(':memory:')).connect();
    const ids = (
      await duck.runAndReadAll(`SELECT name, field_id FROM parquet_schema('${local}') WHERE field_id IS NOT NULL`)
    ).getRowObjectsJson();
    expect(ids).toEqual([
      { name: 'id', field_id: '1' },
      { name: 'customer', field_id: '2' },
      { name: 'amount', field_id: '3' },
      { name: 'qty', field_id: '4' },
      { name: 'day', field_id: '5' },
    ]);

    // v2: a column dropped, one promoted (int → long keeps its id), one renamed away (new id), one added.
    const v2 = await run(pipeline(`SELECT i::BIGINT AS id, i::BIGINT AS qty, 'x' AS note FROM range(1, 4) t(i)`));
    expect(v2.status).toBe('success');
    meta = await table();
    expect(meta['current-snapshot-id']).toBe(2);
    expect(meta.schemas).toHaveLength(2);
    expect(currentSchema(meta).fields.map((f) => [f.id, f.name, f.type])).toEqual([
      [1, 'id', 'long'],
      [4, 'qty', 'long'],
      [6, 'note', 'string'],
    ]);
    expect(meta['last-column-id']).toBe(6);
    expect(
      meta.snapshots.map((s) => [
        s['snapshot-id'],
        s['parent-snapshot-id'],
        s['schema-id'],
        s.summary['strata.version'],
      ]),
    ).toEqual([
      [1, undefined, 0, '1'],
      [2, 1, 1, '2'],
    ]);
    expect(meta['snapshot-log'].map((e) => e['snapshot-id'])).toEqual([1, 2]);
    expect(meta['metadata-log']).toHaveLength(1);

    // A version is a snapshot: snapshot 1's files are version 1's.
    const id = { layer: 'silver' as const, namespace: 'default', name: 'orders' };
    const version1 = await stack.lake!.catalog.version(stack.tenant, id, 1);
    expect((await snapshotFiles(store, meta, 1)).map((u) => keyOf(store, u))).toEqual(version1!.files);

    // A failing error check: the version is rejected, its snapshot staged off main.
    const v3 = await run(pipeline(`SELECT 1::BIGINT AS id`, `[{ expect: "id > 5" }]`));
    expect(v3.status).toBe('failed');
    meta = await table();
    expect(meta['current-snapshot-id']).toBe(2);
    expect(meta.refs.main['snapshot-id']).toBe(2);
    const staged = meta.snapshots.find((s) => s['snapshot-id'] === 3)!;
    expect(staged.summary['strata.status']).toBe('rejected');
    expect(meta['snapshot-log'].map((e) => e['snapshot-id'])).toEqual([1, 2]);
  });
});
