/**
 * Run option `localShortTasks` (on by default): no-op and fail tasks run as local activities (a marker in the
 * run's history, no activity task), with the same results, retries and trigger rules.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack('localtasks');
});
afterAll(async () => {
  await stack?.close();
});

const s = spec({
  id: 'local_short',
  tasks: [
    { id: 'a', kind: 'noop' },
    { id: 'flaky', kind: 'fail', needs: ['a'], succeedOnAttempt: 2, retry: { attempts: 3, initialInterval: '10ms' } },
    { id: 'broken', kind: 'fail', needs: ['a'], nonRetryable: true, message: 'on purpose' },
    { id: 'after', kind: 'noop', needs: ['flaky'] },
    { id: 'cleanup', kind: 'noop', needs: ['broken'], trigger: 'one_failed' },
  ],
});

async function runWith(localShortTasks: boolean) {
  return stack.withWorker(async () => {
    const h = await stack.runs.start({
      spec: s,
      tenant: stack.tenant,
      trigger: 'manual',
      runKey: `local-${localShortTasks}`,
      options: { localShortTasks },
    });
    await stack.client.workflow
      .getHandle(h.runId)
      .result()
      .catch(() => undefined);
    const history = await stack.client.workflow.getHandle(h.runId).fetchHistory();
    const types = (history.events ?? []).map((e) => String(e.eventType));
    return { st: await stack.runs.state(h.runId), types };
  });
}

describe('short tasks as local activities', () => {
  it('give the same states, attempts and errors as activities, with no activity task in the history', async () => {
    const local = await runWith(true);
    const remote = await runWith(false);
    const view = (st: typeof local.st) =>
      Object.fromEntries(
        Object.entries(st.tasks).map(([id, t]) => [id, { status: t.status, attempts: t.attempts, error: t.error }]),
      );
    expect(view(local.st)).toEqual(view(remote.st));
    expect(view(local.st)).toMatchObject({
      a: { status: 'success' },
      flaky: { status: 'success', attempts: 2 },
      broken: { status: 'failed', error: expect.stringContaining('on purpose') },
      after: { status: 'success' },
      cleanup: { status: 'success' },
    });
    expect(local.st.status).toBe('failed');
    // EventType 10 is ActivityTaskScheduled, 25 MarkerRecorded (numbers in the history's JSON form).
    const scheduled = (t: string[]) => t.filter((x) => x === '10' || x === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED');
    const markers = (t: string[]) => t.filter((x) => x === '25' || x === 'EVENT_TYPE_MARKER_RECORDED');
    // Only metastore writes are activities with local short tasks; every task is one with activities.
    expect(scheduled(remote.types).length - scheduled(local.types).length).toBeGreaterThanOrEqual(5);
    expect(markers(local.types).length).toBeGreaterThanOrEqual(5);
  });

  it('are the default for runs started without options, and a noop that sleeps stays an ordinary activity', async () => {
    const sleeper = spec({
      id: 'local_default',
      tasks: [
        { id: 'quick', kind: 'noop' },
        { id: 'slow', kind: 'noop', sleep: '10ms', needs: ['quick'] },
      ],
    });
    const types = await stack.withWorker(async () => {
      const h = await stack.runs.start({ spec: sleeper, tenant: stack.tenant, trigger: 'manual' });
      await stack.client.workflow.getHandle(h.runId).result();
      const history = await stack.client.workflow.getHandle(h.runId).fetchHistory();
      // Activities scheduled in the run's history, by type (metastore writes are activities too).
      return (history.events ?? []).flatMap((e) => {
        const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
        return name ? [name] : [];
      });
    });
    // Two noops ran; only the sleeping one went through the activity queue.
    expect(types.filter((t) => t === 'noopTask')).toHaveLength(1);
  });
});
