/**
 * The trigger outbox: an accepted API trigger is a row in Postgres first and a workflow
 * after the dispatcher starts it. Nothing accepted is lost (no dispatcher, a dispatcher
 * that died after starting, a start that failed) and nothing runs twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TriggerDispatcher } from '../../api/dispatcher.js';
import { taskLog } from '../../client/task-logs.js';
import { RunsService, type PreparedStart } from '../../client/runs.js';
import { listRuns, recordQueued } from '../../store/runs.js';
import { claimTriggers, enqueueTrigger, getTrigger } from '../../store/triggers.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let runs: RunsService;
beforeAll(async () => {
  stack = await testStack('outbox');
  runs = new RunsService(stack.client, {
    taskQueue: stack.taskQueue,
    namespace: 'default',
    uiUrl: 'http://ui',
    outbox: stack.db,
  });
});
afterAll(async () => stack?.close());

const quiet = () => undefined;
const count = async (workflowId: string) => {
  let n = 0;
  for await (const _ of stack.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) n++;
  return n;
};

describe('trigger outbox', () => {
  it('keeps an accepted trigger queued until a dispatcher starts it, then runs it once', async () => {
    const s = spec({
      id: 'outbox_one',
      tasks: [
        { id: 'a', kind: 'noop' },
        { id: 'b', kind: 'noop', needs: ['a'] },
      ],
    });
    const h = await runs.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api', params: {} });
    expect(h).toMatchObject({ queued: true, existing: false });
    // No dispatcher yet (say the API stopped right after answering): the run is queued, not lost.
    const queued = await runs.state(h.runId);
    expect(queued).toMatchObject({
      status: 'queued',
      pipelineId: 'outbox_one',
      tasks: { a: { status: 'pending' }, b: { status: 'pending' } },
    });
    expect(await count(h.runId)).toBe(0);
    // Listed in the runs index as queued from the moment it is accepted.
    const listed = async () =>
      (await listRuns(stack.db, stack.tenant, { pipeline: 'outbox_one', limit: 10 })).map((r) => r.status);
    expect(await listed()).toEqual(['queued']);
    await expect(taskLog({ runs }, undefined, queued, 'a', {})).rejects.toMatchObject({
      status: 409,
      message: expect.stringContaining('is queued and has not started'),
    });

    const d = new TriggerDispatcher(stack.db, runs, { idleMs: 50, log: quiet }).start();
    try {
      await stack.withWorker(async () => {
        await waitFor(async () => (await runs.state(h.runId)).status === 'success');
      });
      expect((await getTrigger(stack.db, h.runId))?.started_at).toBeInstanceOf(Date);
      expect(await count(h.runId)).toBe(1);
      await waitFor(async () => (await listed())[0] === 'success');
    } finally {
      await d.stop();
    }
  });

  it('answers an idempotent retry with the same run, and refuses a clashing run key', async () => {
    const s = spec({ id: 'outbox_idem', tasks: [{ id: 'a', kind: 'noop' }] });
    const a = await runs.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api', runKey: 'k1', idempotent: true });
    const b = await runs.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api', runKey: 'k1', idempotent: true });
    expect(b).toMatchObject({ runId: a.runId, existing: true });
    await expect(runs.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api', runKey: 'k1' })).rejects.toMatchObject({
      status: 409,
    });
    await expect(
      runs.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api', only: ['ghost'] }),
    ).rejects.toMatchObject({ status: 400 });
  });

  it('a dispatcher that died after starting a run (its answer lost) does not make a second one', async () => {
    const s = spec({ id: 'outbox_lost', tasks: [{ id: 'a', kind: 'noop' }] });
    const h = await runs.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api' });
    // The first dispatcher claims the trigger and starts the workflow, then dies before recording it.
    const [row] = await claimTriggers<PreparedStart>(stack.db, stack.taskQueue, 1, 60_000, h.runId);
    await runs.startPrepared(row.request, true);
    await stack.db.query(`UPDATE run_triggers SET claimed_until = now() - interval '1 second' WHERE workflow_id = $1`, [
      h.runId,
    ]);

    const d = new TriggerDispatcher(stack.db, runs, { idleMs: 50, log: quiet }).start();
    try {
      await waitFor(async () => !!(await getTrigger(stack.db, h.runId))?.started_at);
    } finally {
      await d.stop();
    }
    expect((await getTrigger(stack.db, h.runId))?.attempts).toBe(2);
    expect(await count(h.runId)).toBe(1);
  });

  it('retries a start that failed, keeping the trigger and its error', async () => {
    const s = spec({ id: 'outbox_retry', tasks: [{ id: 'a', kind: 'noop' }] });
    let failures = 1;
    const flaky = new RunsService(stack.client, {
      taskQueue: stack.taskQueue,
      namespace: 'default',
      uiUrl: 'http://ui',
      outbox: stack.db,
    });
    const real = flaky.startPrepared.bind(flaky);
    flaky.startPrepared = async (p, dispatch) => {
      if ((p.input.specRef?.pipelineId ?? p.input.spec?.id) === 'outbox_retry' && failures-- > 0)
        throw new Error('14 UNAVAILABLE: connection refused');
      return real(p, dispatch);
    };
    const h = await flaky.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api' });
    const d = new TriggerDispatcher(stack.db, flaky, { idleMs: 50, log: quiet }).start();
    try {
      await waitFor(
        async () => (await getTrigger(stack.db, h.runId))?.last_error === '14 UNAVAILABLE: connection refused',
      );
      expect((await runs.state(h.runId)).status).toBe('queued');
      await waitFor(async () => !!(await getTrigger(stack.db, h.runId))?.started_at, 20_000);
    } finally {
      await d.stop();
    }
    expect(await count(h.runId)).toBe(1);
  });

  it('dead-letters a trigger Temporal refuses for good: failed_to_start with the reason, after bounded retries', async () => {
    // A trigger accepted before starts were size-checked: its workflow input (a 3 MB spec inline)
    // is over Temporal's payload limit, so every start is refused.
    const pad = 'x'.repeat(300);
    const s = spec({
      id: 'outbox_huge',
      tasks: Array.from({ length: 10_000 }, (_, i) => ({ id: `t${i}`, kind: 'noop', description: pad })),
    });
    const p = new RunsService(stack.client, {
      taskQueue: stack.taskQueue,
      namespace: 'default',
      uiUrl: 'http://ui',
    }).prepare({ spec: s, tenant: stack.tenant, trigger: 'api' });
    expect(Buffer.byteLength(JSON.stringify(p.input))).toBeGreaterThan(3e6);
    await enqueueTrigger(stack.db, {
      workflowId: p.workflowId,
      tenant: stack.tenant,
      pipelineId: s.id,
      taskQueue: stack.taskQueue,
      request: p,
    });
    await recordQueued(stack.db, {
      runId: p.workflowId,
      tenant: stack.tenant,
      pipelineId: s.id,
      trigger: 'api',
      logicalDate: new Date().toISOString(),
      acceptedAt: new Date().toISOString(),
      tasks: {},
    });
    const logs: string[] = [];
    const d = new TriggerDispatcher(stack.db, runs, { idleMs: 50, log: (m) => logs.push(m) }).start();
    try {
      await waitFor(async () => !!(await getTrigger(stack.db, p.workflowId))?.failed_at, 30_000);
    } finally {
      await d.stop();
    }
    const t = await getTrigger(stack.db, p.workflowId);
    expect(t).toMatchObject({ attempts: 3, started_at: null });
    expect(t?.last_error).toMatch(/could not start \(3 attempts\): .*(size|limit)/i);
    expect(d.failedToStart).toBe(1);
    // The runs list and the run say so, with the reason; nothing was started, and nothing retries it.
    const [row] = await listRuns(stack.db, stack.tenant, { pipeline: 'outbox_huge', limit: 5 });
    expect(row).toMatchObject({ status: 'failed_to_start', error: t?.last_error });
    expect(
      (await listRuns(stack.db, stack.tenant, { status: 'failed_to_start', limit: 50 })).map((r) => r.run_id),
    ).toContain(p.workflowId);
    const st = await runs.state(p.workflowId);
    expect(st).toMatchObject({ status: 'failed_to_start', error: t?.last_error, taskCount: 10_000 });
    expect(st.endedAt).toBeDefined();
    expect(await count(p.workflowId)).toBe(0);
    expect(await claimTriggers(stack.db, stack.taskQueue, 10, 1000, p.workflowId)).toEqual([]);
    await expect(runs.cancel(p.workflowId)).rejects.toMatchObject({
      status: 409,
      message: expect.stringContaining('failed to start'),
    });
    await expect(runs.repair(p.workflowId)).rejects.toMatchObject({
      status: 409,
      message: expect.stringContaining('never started'),
    });
    expect(logs.some((l) => /failed for good after 3 attempts/.test(l))).toBe(true);
  });

  it('cancelling a queued run starts it and cancels it, so it ends cancelled in Temporal too', async () => {
    const s = spec({ id: 'outbox_cancel', tasks: [{ id: 'nap', kind: 'wait', duration: '5m' }] });
    const h = await runs.enqueue({ spec: s, tenant: stack.tenant, trigger: 'api' });
    await stack.withWorker(async () => {
      await runs.cancel(h.runId);
      const st = await runs.wait(h.runId);
      expect(st.status).toBe('cancelled');
    });
    expect((await stack.client.workflow.getHandle(h.runId).describe()).status.name).toBe('CANCELLED');
    await expect(runs.cancel(h.runId)).rejects.toMatchObject({ status: 409 });
  });
});
