/**
 * A worker killed with SIGKILL mid-comparison: the retry resumes from the last
 * heartbeat checkpoint (it does not start from zero) and the result is still exact.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { ReconciliationsService } from '../../client/reconciliations.js';
import { generatePair, truthCounts } from '../fakes/reconcile-data.js';
import { waitFor } from '../harness/specs.js';
import { runCli, startProcess, type Proc } from '../harness/processes.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
const procs: Proc[] = [];
beforeAll(async () => {
  stack = await testStack('reconcrash');
});
afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await stack?.close();
});

const env = () => ({
  TEMPORAL_ADDRESS: inject('temporalAddress'),
  STRATA_TASK_QUEUE: stack.taskQueue,
  STRATA_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
  STRATA_LAKE_ROOT: stack.lakeRoot,
  STRATA_TENANT: 'acme',
  DATABASE_URL: inject('databases').postgresUrl,
  // Each compared partition takes at least this long, so the kill lands mid-comparison on any machine.
  STRATA_FAULT_RECONCILE_PARTITION_DELAY_MS: '250',
});

function worker(): Proc {
  const p = startProcess('workers/worker.ts', [], env());
  procs.push(p);
  return p;
}

it('resumes a killed comparison from its checkpoint with the same exact answer', async () => {
  // Inputs live in the tenant's own folder of the lake.
  await mkdir(path.join(stack.lakeRoot, 'acme'), { recursive: true });
  const truth = await generatePair(
    path.join(stack.lakeRoot, 'acme', 'a.csv'),
    path.join(stack.lakeRoot, 'acme', 'b.csv'),
    { rows: 200_000, rate: 0.001, duplicates: true, seed: 9 },
  );
  const recs = new ReconciliationsService(stack.client, stack.taskQueue);
  const w1 = worker();
  await w1.waitForOutput(/strata worker: task queue/);
  const { id } = await recs.start('acme', {
    left: 'a.csv',
    right: 'b.csv',
    options: { key: ['id'], partitions: 40, parallelism: 1 },
    heartbeatTimeoutMs: 2000,
  });
  await waitFor(async () => {
    const p = (await recs.get(id)).progress;
    return p?.phase === 'compare' && (p.partitionsDone ?? 0) >= 3;
  }, 120_000);
  w1.child.kill('SIGKILL');
  await w1.exited();

  const w2 = worker();
  await w2.waitForOutput(/strata worker: task queue/);
  await waitFor(async () => (await recs.get(id)).status !== 'running', 120_000);
  const st = await recs.get(id);
  expect(st.status).toBe('completed');
  const r = st.result as {
    method: string;
    counts: Record<string, number>;
    resumedFrom?: { compared: number; leftDone: boolean; rightDone: boolean };
    attempts: number;
  };
  expect(r.attempts).toBe(2);
  expect(r.resumedFrom).toMatchObject({ leftDone: true, rightDone: true });
  expect(r.resumedFrom!.compared).toBeGreaterThanOrEqual(3); // did not start from zero
  expect(r.method).toBe('duckdb'); // the default engine for these inputs, resumed on its own checkpoint
  expect(r.counts).toEqual(truthCounts(truth));

  // The CLI tells the same story.
  const cli = await runCli(['reconcile', 'a.csv', 'b.csv', '--key', 'id'], env());
  expect(cli.code).toBe(1);
  expect(cli.out).toContain(`changed: ${truth.changed}`);
  expect(cli.out).toContain(`${truth.changed + truth.onlyLeft + truth.onlyRight} differences`);
  w2.child.kill('SIGTERM');
  await w2.exited();
});
