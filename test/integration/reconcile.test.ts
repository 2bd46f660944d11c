import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReconciliationsService } from '../../client/reconciliations.js';
import { generatePair, truthCounts } from '../fakes/reconcile-data.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let recs: ReconciliationsService;
/** Holds a comparison after its first compared partition until the test releases it, so a fast machine cannot finish before the test looks. */
let hold: Promise<void> | undefined;
const holdUntilReleased = () => {
  let release!: () => void;
  hold = new Promise<void>((res) => (release = res));
  return () => {
    hold = undefined;
    release();
  };
};
beforeAll(async () => {
  stack = await testStack('reconcile', {
    reconcileFaults: { afterPartition: (done) => (done === 1 ? hold : undefined) },
  });
  recs = new ReconciliationsService(stack.client, stack.taskQueue);
});
afterAll(async () => stack?.close());

describe('reconciliation as a workflow', () => {
  it('runs as a pipeline task, and as a quality gate stops its downstream', async () => {
    const truth = await generatePair(
      path.join(stack.tenantRoot, 'legacy.csv'),
      path.join(stack.tenantRoot, 'migrated.csv'),
      { rows: 3000, rate: 0.01, seed: 11 },
    );
    const s = spec(`
id: migration_check
tasks:
  - { id: compare, kind: reconcile, left: legacy.csv, right: migrated.csv, key: [id] }
  - { id: gate, kind: reconcile, left: legacy.csv, right: migrated.csv, key: [id], failOnDifference: true }
  - { id: publish, kind: noop, needs: [gate] }
`);
    const st = await stack.withWorker(() => stack.runToEnd(s));
    expect(st.tasks.compare.status).toBe('success');
    expect(st.tasks.compare.output).toMatchObject({
      method: 'memory',
      counts: truthCounts(truth),
      differences: truth.changed + truth.onlyLeft + truth.onlyRight,
    });
    expect(st.tasks.gate).toMatchObject({ status: 'failed', errorType: 'DatasetsDiffer', attempts: 1 });
    expect(st.tasks.gate.error).toContain(`${truth.changed} changed`);
    expect(st.tasks.publish.status).toBe('upstream_failed');
  });

  it('runs standalone with progress and an exact result; bad input is a 400 and cancel stops it', async () => {
    const l = path.join(stack.tenantRoot, 'big-l.csv');
    const r = path.join(stack.tenantRoot, 'big-r.csv');
    const truth = await generatePair(l, r, { rows: 150_000, rate: 0.001, duplicates: true, seed: 5 });
    await stack.withWorker(async () => {
      let release = holdUntilReleased();
      const { id } = await recs.start(stack.tenant, {
        left: 'big-l.csv',
        right: { uri: `file://${r}` },
        options: { key: ['id'], memoryLimitBytes: 1_000_000 },
        heartbeatTimeoutMs: 2000,
      });
      expect(id.startsWith(`reconcile/${stack.tenant}/`)).toBe(true);
      let sawProgress = false;
      let st = await recs.get(id);
      try {
        while (st.status === 'running') {
          if (!sawProgress && st.progress && st.progress.rows > 0) {
            sawProgress = true;
            release();
          }
          await new Promise((res) => setTimeout(res, 200));
          st = await recs.get(id);
        }
      } finally {
        release();
      }
      expect(st.status).toBe('completed');
      expect(sawProgress).toBe(true);
      expect(st.result).toMatchObject({
        method: 'duckdb',
        counts: {
          matched: truth.matched,
          changed: truth.changed,
          onlyLeft: truth.onlyLeft,
          onlyRight: truth.onlyRight,
        },
        duplicates: { left: { keys: truth.duplicateKeysLeft }, right: { keys: truth.duplicateKeysRight } },
      });

      await expect(
        recs.start(stack.tenant, { left: '', right: 'x.csv', options: { tolerance: -1, bogus: 1 } }),
      ).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/left.uri.*tolerance|tolerance.*left/s) });
      await expect(recs.get('reconcile/acme/nope')).rejects.toMatchObject({ status: 404 });

      release = holdUntilReleased();
      const c = await recs.start(stack.tenant, {
        left: 'big-l.csv',
        right: 'big-r.csv',
        options: { key: ['id'], partitions: 64, parallelism: 1 },
        heartbeatTimeoutMs: 1000,
      });
      try {
        await waitFor(async () => (await recs.get(c.id)).progress?.partitionsDone === 1);
        await recs.cancel(c.id);
      } finally {
        release();
      }
      await waitFor(async () => (await recs.get(c.id)).status === 'cancelled');
      await expect(recs.cancel(c.id)).rejects.toMatchObject({ status: 409 });
    });
  });

  it('says clearly when a dataset is missing', async () => {
    await writeFile(path.join(stack.tenantRoot, 'one.csv'), 'id\n1\n');
    const s = spec(
      `id: missing_input\ntasks:\n  - { id: c, kind: reconcile, left: one.csv, right: nope.csv, retry: { attempts: 3, initialInterval: 50ms } }\n`,
    );
    const st = await stack.withWorker(() => stack.runToEnd(s));
    expect(st.tasks.c).toMatchObject({ status: 'failed', attempts: 1, error: 'dataset not found: nope.csv' });
  });
});
