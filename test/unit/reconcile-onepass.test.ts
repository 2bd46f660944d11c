import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReconcileOptions } from '../../schemas/reconcile.js';
import { generatePair, truthCounts } from '../fakes/reconcile-data.js';
import { tempDir } from '../harness/tmp.js';

describe('reconcile: DuckDB one pass out of memory', () => {
  it('takes the partitioned DuckDB path, says why in reason, and gives the exact answer', async () => {
    // The one pass's DuckDB memory is read when the module loads: 1 MB cannot hold its aggregation.
    const before = process.env.STRATA_RECONCILE_ONE_PASS_MEMORY;
    process.env.STRATA_RECONCILE_ONE_PASS_MEMORY = '1MB';
    const { reconcile } = await import('../../activities/reconcile/client.js');
    if (before === undefined) delete process.env.STRATA_RECONCILE_ONE_PASS_MEMORY;
    else process.env.STRATA_RECONCILE_ONE_PASS_MEMORY = before;
    const dir = await tempDir('strata-onepass-');
    const l = path.join(dir, 'l.csv');
    const r = path.join(dir, 'r.csv');
    const truth = await generatePair(l, r, { rows: 20_000, rate: 0.01, duplicates: true, awkward: true, seed: 7 });
    const res = await reconcile({ uri: l }, { uri: r }, ReconcileOptions.parse({ key: ['id'], memoryLimitBytes: 1 }), {
      lakeRoot: dir,
      workDir: path.join(dir, 'work'),
    });
    expect(res.method).toBe('duckdb');
    expect(res.reason).toMatch(/one pass ran out of memory/);
    expect(res.partitions).toBeGreaterThan(1);
    expect(res.counts).toEqual(truthCounts(truth));
    expect(res.duplicates.left.keys).toBe(truth.duplicateKeysLeft);
    expect(res.duplicates.right.keys).toBe(truth.duplicateKeysRight);
  });
});
