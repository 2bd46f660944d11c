/**
 * Continue-as-new never waits on an external job: a run whose history fills up while a Spark
 * job runs hands the running job over to its next execution (the job's workflow outlives the
 * execution that started it and reports its end to the run), instead of waiting for it.
 */
import type { WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extLake, extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

/** This file's tenant (its Spark namespace is this file's alone on the run's API server). */
const ACME = 'ho-acme';
let stack: TestStack;
let d: Doubles;
beforeAll(async () => {
  [stack, d] = await Promise.all([extTestStack('handover'), startDoubles({ tenant: ACME, sparkTenants: [ACME] })]);
  const { root: _root, ...lake } = await extLake(stack);
  Object.assign(d.deps, lake);
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
});

const FAST = { initial: '50ms', max: '200ms' };
/** A Spark job beside a chain of no-ops long enough to fill a 40-event history several times. */
const pipeline = (id: string) =>
  spec({
    id,
    maxParallel: 4,
    tasks: [
      { id: 'job', kind: 'pyspark', file: 'jobs/long.py', poll: FAST },
      ...Array.from({ length: 30 }, (_, i) => ({ id: `n${i}`, kind: 'noop', needs: i ? [`n${i - 1}`] : [] })),
      { id: 'after', kind: 'noop', needs: ['job', 'n29'] },
    ],
  });
const appOf = (pipelineId: string) => d.kube.apps(pipelineId);

async function executions(workflowId: string) {
  const out: { runId: string; status: string; closeTime?: Date; events: number }[] = [];
  let runId: string | undefined = (await stack.client.workflow.getHandle(workflowId).describe()).runId;
  // Walk back from the latest execution through continuedExecutionRunId.
  while (runId) {
    const h: WorkflowHandle = stack.client.workflow.getHandle(workflowId, runId);
    const [desc, history]: [WorkflowExecutionDescription, History] = await Promise.all([
      h.describe(),
      h.fetchHistory(),
    ]);
    out.unshift({
      runId,
      status: desc.status.name,
      closeTime: desc.closeTime,
      events: history.events?.length ?? 0,
    });
    runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return out;
}

describe('continue-as-new with running external jobs', () => {
  it('hands a running Spark job over to the next execution instead of waiting for it; the job is submitted once', async () => {
    d.kube.sim.scenario = () => ({ runMs: 6000 });
    const { st, execs, job } = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: pipeline('handover-ok'),
        tenant: ACME,
        trigger: 'manual',
        options: { continueAsNewAfterEvents: 40 },
      });
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      const job = await stack.client.workflow.getHandle(`${h.runId}/task/job`).describe();
      return { st: await stack.runs.state(h.runId), execs: await executions(h.runId), job };
    });
    expect(st.status).toBe('success');
    expect(st.tasks.job.status).toBe('success');
    expect(st.tasks.job.output).toMatchObject({ engine: 'spark-k8s', states: expect.arrayContaining(['COMPLETED']) });
    expect(st.tasks.after.status).toBe('success');
    expect(execs.length).toBeGreaterThanOrEqual(2);
    // The first execution closed (continued as new) while the job was still running: it did not wait.
    expect(execs[0].status).toBe('CONTINUED_AS_NEW');
    expect(execs[0].closeTime!.getTime()).toBeLessThan(job.closeTime!.getTime());
    expect(job.status.name).toBe('COMPLETED');
    // Every execution's history stays small whatever the job does.
    for (const e of execs) expect(e.events).toBeLessThan(200);
    expect(await appOf('handover-ok')).toHaveLength(1);
    expect(d.kube.tap.count('POST', /\/sparkapplications$/)).toBe(1);
  });

  it('cancelling the run after a handover still stops the job at the engine before the run ends cancelled', async () => {
    d.kube.sim.scenario = () => ({ hold: true });
    const { st, execs } = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: pipeline('handover-cancel'),
        tenant: ACME,
        trigger: 'manual',
        options: { continueAsNewAfterEvents: 40 },
      });
      // Wait until the chain of no-ops is done (several executions later) with the job still running.
      await waitFor(async () => (await stack.runs.state(h.runId)).tasks.n29?.status === 'success', 60_000);
      expect(await appOf('handover-cancel')).toHaveLength(1);
      await stack.client.workflow.getHandle(h.runId).cancel();
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      return { st: await stack.runs.state(h.runId), execs: await executions(h.runId) };
    });
    expect(execs.length).toBeGreaterThanOrEqual(2);
    expect(st.status).toBe('cancelled');
    expect(st.tasks.job.status).toBe('cancelled');
    expect(await appOf('handover-cancel')).toHaveLength(0);
    expect(d.kube.tap.count('DELETE', /\/sparkapplications\/.*handover-cancel/, 200)).toBe(1);
  });

  it('a handed-over job whose workflow is terminated fails its task through the sweeper instead of holding the run', async () => {
    d.kube.sim.scenario = () => ({ hold: true });
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: pipeline('handover-lost'),
        tenant: ACME,
        trigger: 'manual',
        options: { continueAsNewAfterEvents: 40 },
      });
      await waitFor(async () => (await stack.runs.state(h.runId)).tasks.n29?.status === 'success', 60_000);
      expect((await executions(h.runId)).length).toBeGreaterThanOrEqual(2);
      const job = `${h.runId}/task/job`;
      await stack.client.workflow.getHandle(job).terminate('test: lost without a word');
      // Visibility lists the terminated job (eventually consistent), then one sweep releases the run.
      await waitFor(async () => {
        const r = (await stack.client.workflow.execute('orphanSweep', {
          taskQueue: stack.taskQueue,
          workflowId: `sweep-${stack.taskQueue}-${Date.now()}`,
          args: [],
        })) as { released: string[] };
        return r.released.includes(job);
      });
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      return stack.runs.state(h.runId);
    });
    expect(st.status).toBe('failed');
    expect(st.tasks.job).toMatchObject({ status: 'failed', errorType: 'JobTerminated' });
    expect(st.tasks.job.error).toContain('was terminated');
    expect(st.tasks.after.status).toBe('upstream_failed');
    // And its application, whose owner is the terminated workflow, is stopped by the sweep as an orphan.
    expect(await appOf('handover-lost')).toHaveLength(0);
  });
});
