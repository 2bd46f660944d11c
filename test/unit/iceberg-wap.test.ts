/**
 * Write-audit-publish on Iceberg metadata (pure): a run's commit to `main` lands on its audit
 * branch, the publish is a guarded move of `main`, and partition values are Iceberg's own
 * (the spec's Murmur3 test vectors, the transform names and ids).
 */
import { describe, expect, it } from 'vitest';
import { decimalBytes, fixedDecimal } from '../../activities/iceberg/stats.js';
import { newTableMetadata, checkRequirements, applyUpdates, MetadataError } from '../../activities/iceberg/metadata.js';
import type { TableMetadata } from '../../activities/iceberg/metadata.js';
import {
  asSeenOnBranch,
  branchSnapshots,
  publishBranch,
  redirectToBranch,
  refHead,
  rejectBranch,
  WapRefusal,
} from '../../activities/iceberg/wap.js';
import { DuckDBInstance } from '@duckdb/node-api';
import {
  decodeContainer,
  encodeContainer,
  manifestEntrySchema,
  type ManifestEntry,
} from '../../activities/iceberg/avro.js';
import {
  murmur3,
  parsePartitionBy,
  partitionExpr,
  resolveSpec,
  truncateExpr,
  withSpec,
} from '../../activities/iceberg/partition.js';
import { avroPartition, dataFile } from '../../activities/iceberg/writer.js';
import { auditBranch } from '../../store/iceberg-audit.js';

const base = (): TableMetadata =>
  newTableMetadata({
    uuid: 'u',
    location: 's3://lake/t/silver/default/orders',
    schema: {
      type: 'struct',
      fields: [
        { id: 1, name: 'id', required: false, type: 'long' },
        { id: 2, name: 'ts', required: false, type: 'timestamp' },
        { id: 3, name: 'customer', required: false, type: 'string' },
        { id: 4, name: 'amount', required: false, type: 'decimal(10, 2)' },
      ],
    },
    lastColumnId: 4,
    now: 1,
  });

const snap = (id: number, parent: number | undefined, seq: number) => ({
  'snapshot-id': id,
  ...(parent !== undefined ? { 'parent-snapshot-id': parent } : {}),
  'sequence-number': seq,
  'timestamp-ms': seq,
  'manifest-list': `s3://lake/t/silver/default/orders/metadata/snap-${id}.avro`,
  summary: { operation: 'append' },
});

/** A job's commit as any engine makes it, on the table as the catalog shows the job: assert main, add a snapshot, move main. */
function engineCommit(m: TableMetadata, id: number, branch = 'audit-x') {
  const view = asSeenOnBranch(m, branch);
  const main = view.refs.main?.['snapshot-id'] ?? null;
  const r = redirectToBranch(
    m,
    [{ type: 'assert-ref-snapshot-id', ref: 'main', 'snapshot-id': main }],
    [
      { action: 'add-snapshot', snapshot: snap(id, main ?? undefined, view['last-sequence-number'] + 1) },
      { action: 'set-snapshot-ref', 'ref-name': 'main', type: 'branch', 'snapshot-id': id },
    ],
    { branch, runId: 'pipeline/acme/p/r1', taskId: 'spark' },
  );
  checkRequirements(m, r.requirements);
  return applyUpdates(m, r.updates, { now: 2, uuid: 'u' });
}

describe('a run credential commits to its audit branch, never to main', () => {
  it('the first commit forks the branch from main; the second builds on the branch; main stays', () => {
    const published = applyUpdates(
      base(),
      [
        { action: 'add-snapshot', snapshot: snap(1, undefined, 1) },
        { action: 'set-snapshot-ref', 'ref-name': 'main', type: 'branch', 'snapshot-id': 1 },
      ],
      { now: 1, uuid: 'u' },
    );
    const once = engineCommit(published, 10);
    expect(refHead(once, 'main')).toBe('1');
    expect(refHead(once, 'audit-x')).toBe('10');
    expect(once['current-snapshot-id']).toBe(1);
    const staged = once.snapshots.find((s) => s['snapshot-id'] === 10)!;
    expect(staged.summary).toMatchObject({ 'strata.status': 'staged', 'strata.task-id': 'spark' });
    // The job sees its branch as main, so its next commit asserts the branch head and passes.
    const seen = asSeenOnBranch(once, 'audit-x');
    expect(seen.refs.main['snapshot-id']).toBe(10);
    expect(seen['current-snapshot-id']).toBe(10);
    const twice = engineCommit(once, 11);
    expect(refHead(twice, 'main')).toBe('1');
    expect(refHead(twice, 'audit-x')).toBe('11');
    expect(branchSnapshots(twice, 'audit-x', '1').map((s) => s['snapshot-id'])).toEqual([11, 10]);
  });

  it('a stale assertion on main (another writer moved the branch) is a conflict, as for any writer', () => {
    const m = engineCommit(base(), 10);
    const r = redirectToBranch(m, [{ type: 'assert-ref-snapshot-id', ref: 'main', 'snapshot-id': null }], [], {
      branch: 'audit-x',
      runId: 'r',
      taskId: 't',
    });
    expect(() => checkRequirements(m, r.requirements)).toThrow(/audit-x is at 10/);
  });

  it('refuses what a job has no business doing: other refs, dropping snapshots, moving the table', () => {
    const m = base();
    const o = { branch: 'audit-x', runId: 'r', taskId: 't' };
    expect(() =>
      redirectToBranch(
        m,
        [],
        [{ action: 'set-snapshot-ref', 'ref-name': 'prod', 'snapshot-id': 1, type: 'branch' }],
        o,
      ),
    ).toThrow(WapRefusal);
    expect(() => redirectToBranch(m, [], [{ action: 'remove-snapshots', 'snapshot-ids': [1] }], o)).toThrow(
      /remove-snapshots.*owner/,
    );
    expect(() => redirectToBranch(m, [], [{ action: 'set-location', location: 's3://x' }], o)).toThrow(WapRefusal);
    expect(() =>
      redirectToBranch(m, [{ type: 'assert-ref-snapshot-id', ref: 'prod', 'snapshot-id': 1 }], [], o),
    ).toThrow(/may not assert on ref prod/);
  });
});

describe('the publish is a guarded move of main', () => {
  it('moves main to the staged snapshot when main is where the branch forked, and records the version', () => {
    const m = engineCommit(base(), 10);
    const p = publishBranch(m, { branch: 'audit-x', base: null, snapshotId: '10', version: 1, now: 5 });
    expect(p.refs.main).toEqual({ 'snapshot-id': 10, type: 'branch' });
    expect(p['current-snapshot-id']).toBe(10);
    expect(p['snapshot-log'].at(-1)).toEqual({ 'timestamp-ms': 5, 'snapshot-id': 10 });
    expect(p.snapshots.find((s) => s['snapshot-id'] === 10)!.summary).toMatchObject({
      'strata.status': 'published',
      'strata.version': '1',
    });
  });

  it('fails, naming both snapshots, when main moved during the audit; main stays where the other writer put it', () => {
    const m = engineCommit(base(), 10);
    const moved = applyUpdates(
      m,
      [
        { action: 'add-snapshot', snapshot: snap(20, undefined, m['last-sequence-number'] + 1) },
        { action: 'set-snapshot-ref', 'ref-name': 'main', type: 'branch', 'snapshot-id': 20 },
      ],
      { now: 3, uuid: 'u' },
    );
    let err: unknown;
    try {
      publishBranch(moved, { branch: 'audit-x', base: null, snapshotId: '10', now: 5 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MetadataError);
    expect((err as MetadataError).kind).toBe('conflict');
    expect((err as Error).message).toMatch(/main moved during the audit of audit-x: it was at nothing .* is at 20 now/);
    expect(refHead(moved, 'main')).toBe('20');
  });

  it('a rejection leaves main alone and marks the staged snapshot rejected', () => {
    const m = engineCommit(base(), 10);
    const r = rejectBranch(m, '10', 3);
    expect(r.refs.main).toBeUndefined();
    expect(refHead(r, 'audit-x')).toBe('10');
    expect(r.snapshots[0].summary['strata.status']).toBe('rejected');
  });

  it('an audit branch is named per run and task, in characters a ref keeps', () => {
    expect(auditBranch('pipeline/acme/orders/r 1', 'load.x')).toBe('audit-pipeline_acme_orders_r_1-load.x');
  });
});

describe('partition specs as Iceberg writes them', () => {
  it("bucket hashes are the spec's Murmur3 (Appendix B test vectors)", () => {
    const long = (n: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(n);
      return b;
    };
    expect(murmur3(long(34n))).toBe(2017239379);
    expect(murmur3(Buffer.from('iceberg'))).toBe(1210000089);
    // date 2017-11-16 is day 17486, hashed as a long
    expect(murmur3(long(17486n))).toBe(-653330422);
  });

  it('resolves transforms to source ids with Iceberg field names and ids after the last partition id', () => {
    const m = base();
    const decls = parsePartitionBy(['day(ts)', 'customer', 'bucket(16, id)', 'month(ts)']);
    expect(decls.map((d) => d.transform)).toEqual(['day', 'identity', 'bucket[16]', 'month']);
    const fields = resolveSpec(decls, m.schemas[0], m['last-partition-id'], m['partition-specs']);
    expect(fields).toEqual([
      { 'source-id': 2, 'field-id': 1000, name: 'ts_day', transform: 'day' },
      { 'source-id': 3, 'field-id': 1001, name: 'customer', transform: 'identity' },
      { 'source-id': 1, 'field-id': 1002, name: 'id_bucket', transform: 'bucket[16]' },
      { 'source-id': 2, 'field-id': 1003, name: 'ts_month', transform: 'month' },
    ]);
    // The same spec again keeps its id; another one is added with the next id.
    const once = withSpec(m['partition-specs'], fields);
    expect(once.spec['spec-id']).toBe(1);
    expect(withSpec(once.specs, fields).spec['spec-id']).toBe(1);
    expect(resolveSpec(decls, m.schemas[0], 1003, once.specs)).toEqual(fields);
  });

  it('says what to change for a transform that does not fit the column', () => {
    const s = base().schemas[0];
    expect(() => resolveSpec(parsePartitionBy(['day(customer)']), s, 999)).toThrow(/needs a date or timestamp/);
    expect(() => resolveSpec(parsePartitionBy(['nope']), s, 999)).toThrow(/not a top-level column/);
    expect(() => resolveSpec(parsePartitionBy(['amount']), s, 999)).toThrow(/decimal/);
    expect(() => parsePartitionBy(['truncate[4](customer)'])).toThrow(/truncate\(W, COLUMN\)/);
    expect(() => parsePartitionBy(['truncate(0, customer)'])).toThrow(/truncate width is 1 to 1000000/);
    expect(() => resolveSpec(parsePartitionBy(['truncate(4, ts)']), s, 999)).toThrow(
      /truncates int, long, decimal and string columns; ts is timestamp/,
    );
  });
});

describe('truncate[W] as the spec defines it', () => {
  /** The DuckDB expression Strata writes with, evaluated over one value of a column of that type. */
  async function truncated(duckType: string, icebergType: string, w: number, values: string[]): Promise<unknown[]> {
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    try {
      const out: unknown[] = [];
      for (const v of values) {
        const r = await c.runAndReadAll(
          `SELECT ${truncateExpr('v', icebergType, w)} FROM (SELECT CAST(${v} AS ${duckType}) AS v)`,
        );
        out.push(r.getRows()[0][0]);
      }
      return out;
    } finally {
      c.closeSync();
      db.closeSync();
    }
  }

  it("int and long: v - (((v % W) + W) % W), the spec's examples 1 → 0 and -1 → -10 for W=10", async () => {
    expect(await truncated('INTEGER', 'int', 10, ['1', '-1', '0', '10', '19', '-10', '-11'])).toEqual([
      0, -10, 0, 10, 10, -10, -20,
    ]);
    expect(await truncated('BIGINT', 'long', 10, ['1', '-1', '9223372036854775807'])).toEqual([
      0n,
      -10n,
      9223372036854775800n,
    ]);
  });

  it("decimal: on the unscaled value with the column's scale, the spec's example 10.65 → 10.50 for W=50, s=2", async () => {
    // As unscaled values: 10.65 → 1050 (10.50); -0.05 → -50 (-0.50); 10.6 (10.60) → 1050; scale 0: 12 → 0 for W=50.
    expect(await truncated('DECIMAL(10,2)', 'decimal(10, 2)', 50, ['10.65', '-0.05', '10.6', '0'])).toEqual([
      1050n,
      -50n,
      1050n,
      0n,
    ]);
    expect(await truncated('DECIMAL(5,0)', 'decimal(5, 0)', 50, ['12', '-12'])).toEqual([0n, -50n]);
    // The widest decimal is exact (no scaling that could overflow).
    expect(await truncated('DECIMAL(38,2)', 'decimal(38, 2)', 10, ['999999999999999999999999999999999999.99'])).toEqual(
      [99999999999999999999999999999999999990n],
    );
  });

  it("string: the first W code points, the spec's example iceberg → ice for L=3, never half a character", async () => {
    expect(await truncated('VARCHAR', 'string', 3, ["'iceberg'", "'ic'", "'äöü😀xyz'", "''"])).toEqual([
      'ice',
      'ic',
      'äöü',
      '',
    ]);
    expect(await truncated('VARCHAR', 'string', 4, ["'äöü😀xyz'"])).toEqual(['äöü😀']);
    // A null stays null.
    expect(await truncated('VARCHAR', 'string', 3, ['NULL'])).toEqual([null]);
  });

  it('names the field col_trunc with the source type as result type, and writes a decimal as fixed bytes of minBytesRequired(P)', async () => {
    const m = base();
    const fields = resolveSpec(
      parsePartitionBy(['truncate(4, customer)', 'truncate(10, id)', 'truncate(50, amount)']),
      m.schemas[0],
      999,
    );
    expect(fields).toEqual([
      { 'source-id': 3, 'field-id': 1000, name: 'customer_trunc', transform: 'truncate[4]' },
      { 'source-id': 1, 'field-id': 1001, name: 'id_trunc', transform: 'truncate[10]' },
      { 'source-id': 4, 'field-id': 1002, name: 'amount_trunc', transform: 'truncate[50]' },
    ]);
    expect(partitionExpr(fields[0], m.schemas[0])).toBe(truncateExpr('"customer"', 'string', 4));
    const partType = [
      { name: 'customer_trunc', id: 1000, type: 'string' },
      { name: 'id_trunc', id: 1001, type: 'long' },
      { name: 'amount_trunc', id: 1002, type: 'decimal(10, 2)' },
      { name: 'other_trunc', id: 1003, type: 'decimal(10, 2)' },
    ];
    const stats = {
      recordCount: 1,
      columnSizes: [],
      valueCounts: [],
      nullValueCounts: [],
      lowerBounds: [],
      upperBounds: [],
      splitOffsets: [],
    };
    const entry: ManifestEntry = {
      status: 1,
      snapshot_id: 1,
      sequence_number: null,
      file_sequence_number: null,
      data_file: dataFile(
        's3://lake/t/f.parquet',
        10,
        stats,
        avroPartition(partType, { customer_trunc: 'ice', id_trunc: 10, amount_trunc: 1050, other_trunc: -50n }),
      ),
    };
    const schema = manifestEntrySchema(partType);
    const body = await encodeContainer(schema, [entry], {});
    const [back] = (await decodeContainer<ManifestEntry>(body)).records;
    // decimal(10, 2) takes 5 bytes; 1050 = 0x041a, -50 two's complement.
    expect(back.data_file.partition).toEqual({
      customer_trunc: 'ice',
      id_trunc: 10,
      amount_trunc: Buffer.from([0, 0, 0, 0x04, 0x1a]),
      other_trunc: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xce]),
    });
    // The writer's schema: the fixed type defined once, named as Iceberg names it, referred to by name after.
    const part = JSON.stringify(schema);
    expect(part).toContain(
      '{"type":"fixed","name":"decimal_10_2","size":5,"logicalType":"decimal","precision":10,"scale":2}',
    );
    expect(part).toContain('"type":["null","decimal_10_2"]');
  });
});

describe("a decimal's unscaled value as bytes (two's complement, big-endian)", () => {
  it('minimum bytes for bounds, a fixed width sign-extended for manifests, and a value too wide refused', () => {
    const hex = (b: Buffer) => b.toString('hex');
    expect([0n, 127n, 128n, -1n, -128n, -129n, 1065n].map((v) => hex(decimalBytes(v)))).toEqual([
      '00',
      '7f',
      '0080',
      'ff',
      '80',
      'ff7f',
      '0429',
    ]);
    expect(hex(fixedDecimal(-5n, 5))).toBe('fffffffffb');
    expect(hex(fixedDecimal(1065n, 5))).toBe('0000000429');
    expect(() => fixedDecimal(128n, 1)).toThrow(/does not fit in 1 bytes/);
  });
});
