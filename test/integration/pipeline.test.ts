import { WorkflowFailedError } from '@temporalio/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunState } from '../../schemas/run.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack('pipeline');
});
afterAll(async () => stack?.close());

async function runToEnd(
  s: ReturnType<typeof spec>,
  extra: Partial<Parameters<TestStack['runs']['start']>[0]> = {},
): Promise<RunState> {
  const h = await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual', ...extra });
  return stack.runs.wait(h.runId);
}

const statuses = (st: RunState) => Object.fromEntries(Object.entries(st.tasks).map(([id, t]) => [id, t.status]));

describe('pipelineRun', () => {
  it('runs ready tasks in parallel, starting each as soon as its needs are done', async () => {
    const s = spec(`
id: parallel
maxParallel: 4
tasks:
  - { id: slow, kind: noop, sleep: 1500ms }
  - { id: fast, kind: noop }
  - { id: after_fast, kind: noop, needs: [fast] }
  - { id: join, kind: noop, needs: [slow, after_fast] }
`);
    const st = await stack.withWorker(() => runToEnd(s));
    expect(st.status).toBe('success');
    expect(statuses(st)).toEqual({ slow: 'success', fast: 'success', after_fast: 'success', join: 'success' });
    const t = (id: string, k: 'startedAt' | 'endedAt') => Date.parse(st.tasks[id][k]!);
    // after_fast does not wait for slow (no waves), join waits for both.
    expect(t('after_fast', 'startedAt')).toBeLessThan(t('slow', 'endedAt'));
    expect(t('join', 'startedAt')).toBeGreaterThanOrEqual(t('slow', 'endedAt'));
    expect(t('fast', 'startedAt') - t('slow', 'startedAt')).toBeLessThan(1000);
  });

  it('keeps at most maxParallel tasks running', async () => {
    const s = spec({
      id: 'capped',
      maxParallel: 2,
      tasks: Array.from({ length: 6 }, (_, i) => ({ id: `t${i}`, kind: 'noop', sleep: '300ms' })),
    });
    const st = await stack.withWorker(() => runToEnd(s));
    const spans = Object.values(st.tasks).map((t) => [Date.parse(t.startedAt!), Date.parse(t.endedAt!)] as const);
    const maxOverlap = Math.max(...spans.map(([a]) => spans.filter(([b, e]) => b <= a && a < e).length));
    expect(maxOverlap).toBeLessThanOrEqual(2);
    expect(st.status).toBe('success');
  });

  it('propagates failures through trigger rules and fails the run with every task final', async () => {
    const s = spec(`
id: rules
tasks:
  - { id: ok, kind: noop }
  - { id: boom, kind: fail, message: "disk on fire" }
  - { id: needs_boom, kind: noop, needs: [boom] }
  - { id: grandchild, kind: noop, needs: [needs_boom] }
  - { id: cleanup, kind: noop, needs: [boom, ok], trigger: all_done }
  - { id: alert, kind: noop, needs: [boom], trigger: one_failed }
  - { id: not_alert, kind: noop, needs: [ok], trigger: one_failed }
  - { id: after_skip, kind: noop, needs: [not_alert] }
  - { id: tolerant, kind: noop, needs: [not_alert, ok], trigger: none_failed }
  - { id: any_ok, kind: noop, needs: [boom, ok], trigger: one_success }
`);
    const { err, st } = await stack.withWorker(async () => {
      const h = await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual' });
      const err = await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch((e) => e);
      return { err, st: await stack.runs.state(h.runId) };
    });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(String(err.cause?.message)).toContain('boom: disk on fire');
    expect(st.status).toBe('failed');
    expect(statuses(st)).toEqual({
      ok: 'success',
      boom: 'failed',
      needs_boom: 'upstream_failed',
      grandchild: 'upstream_failed',
      cleanup: 'success',
      alert: 'success',
      not_alert: 'skipped',
      after_skip: 'skipped',
      tolerant: 'success',
      any_ok: 'success',
    });
    expect(st.tasks.boom.error).toBe('disk on fire');
    expect(st.tasks.boom.attempts).toBe(1);
  });

  it('retries by the task policy and records the attempts', async () => {
    const s = spec(`
id: retries
tasks:
  - id: flaky
    kind: fail
    succeedOnAttempt: 3
    retry: { attempts: 5, initialInterval: 50ms, backoff: 1.5 }
  - id: hopeless
    kind: fail
    message: nope
    retry: { attempts: 3, initialInterval: 50ms }
  - id: fatal
    kind: fail
    nonRetryable: true
    message: bad input
    retry: { attempts: 5, initialInterval: 50ms }
`);
    const st = await stack.withWorker(async () => {
      const h = await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual' });
      return stack.runs.wait(h.runId);
    });
    expect(st.tasks.flaky).toMatchObject({ status: 'success', attempts: 3 });
    expect(st.tasks.hopeless).toMatchObject({ status: 'failed', attempts: 3, error: 'nope' });
    expect(st.tasks.fatal).toMatchObject({ status: 'failed', attempts: 1, error: 'bad input' });
  });

  it('runs only chosen tasks, with their upstream when asked', async () => {
    const s = spec(`
id: subset
tasks:
  - { id: a, kind: noop }
  - { id: b, kind: noop, needs: [a] }
  - { id: c, kind: noop, needs: [b] }
  - { id: d, kind: noop }
`);
    const only = await stack.withWorker(() => runToEnd(s, { only: ['c'] }));
    expect(statuses(only)).toEqual({ a: 'excluded', b: 'excluded', c: 'success', d: 'excluded' });
    const up = await stack.withWorker(() => runToEnd(s, { only: ['b'], withUpstream: true }));
    expect(statuses(up)).toEqual({ a: 'success', b: 'success', c: 'excluded', d: 'excluded' });
    await expect(stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual', only: ['zz'] })).rejects.toThrow(
      /unknown task "zz"/,
    );
  });

  it('cancels a run: running tasks see it, nothing is left running', async () => {
    const s = spec(`
id: cancelme
tasks:
  - { id: long, kind: noop, sleep: 60s }
  - { id: timer, kind: wait, duration: 60s }
  - { id: after, kind: noop, needs: [long] }
`);
    const st = await stack.withWorker(async (worker) => {
      const h = await stack.runs.start({
        spec: s,
        tenant: stack.tenant,
        trigger: 'manual',
        options: { heartbeatTimeoutMs: 2000 },
      });
      await waitFor(async () => (await stack.runs.state(h.runId)).tasks.long.status === 'running');
      await new Promise((r) => setTimeout(r, 300));
      // The 60 s noop is running in this worker now.
      expect(worker.getStatus().numInFlightNonLocalActivities).toBe(1);
      await stack.runs.cancel(h.runId);
      const res = await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch((e) => e);
      expect(res).toBeInstanceOf(WorkflowFailedError);
      const desc = await stack.client.workflow.getHandle(h.runId).describe();
      expect(desc.status.name).toBe('CANCELLED');
      // Nothing is left running: the run closed only after its activity stopped (no activity in
      // flight in the worker, none pending on the server).
      expect(worker.getStatus().numInFlightActivities).toBe(0);
      expect(desc.raw.pendingActivities ?? []).toHaveLength(0);
      expect(desc.raw.pendingChildren ?? []).toHaveLength(0);
      return stack.runs.state(h.runId);
    });
    expect(st.status).toBe('cancelled');
    expect(statuses(st)).toEqual({ long: 'cancelled', timer: 'cancelled', after: 'cancelled' });
  });

  it('reports cancelled only after its activities stopped: the Postgres statement is gone before the run closes', async () => {
    const marker = `strata_cancel_${Date.now()}`;
    const s = spec({
      id: 'cancel_pg',
      tasks: [
        {
          id: 'nap',
          kind: 'sql',
          engine: 'postgres',
          connection: 'warehouse',
          sql: `SELECT pg_sleep(60), '${marker}' AS marker`,
        },
      ],
    });
    const watcher = new pg.Client({ connectionString: stack.connections.warehouse.url });
    await watcher.connect();
    const active = async () =>
      Number(
        (
          await watcher.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`,
            [`%pg_sleep(60), '${marker}'%`],
          )
        ).rows[0].n,
      );
    try {
      await stack.withWorker(async () => {
        // Heartbeats every second: the cancel reaches the activity up to a second after the request.
        const h = await stack.runs.start({
          spec: s,
          tenant: stack.tenant,
          trigger: 'manual',
          options: { heartbeatTimeoutMs: 3000 },
        });
        await waitFor(async () => (await active()) === 1, 20_000);
        await stack.runs.cancel(h.runId);
        await stack.client.workflow
          .getHandle(h.runId)
          .result()
          .catch(() => undefined);
        // The moment the run has closed, the statement has already ended on the engine.
        expect(await active()).toBe(0);
        const desc = await stack.client.workflow.getHandle(h.runId).describe();
        expect(desc.status.name).toBe('CANCELLED');
        const st = await stack.runs.state(h.runId);
        expect(st.status).toBe('cancelled');
        expect(st.tasks.nap.status).toBe('cancelled');
        // The activity's own end (cancelled) is in the history before the run's cancellation.
        const events = (await stack.client.workflow.getHandle(h.runId).fetchHistory()).events ?? [];
        const at = (pred: (e: (typeof events)[number]) => boolean) => events.findIndex(pred);
        const activityCancelled = at((e) => !!e.activityTaskCanceledEventAttributes);
        expect(activityCancelled).toBeGreaterThan(0);
        expect(activityCancelled).toBeLessThan(at((e) => !!e.workflowExecutionCanceledEventAttributes));
        // Nothing was committed: the ledger has no row for the task.
        expect(
          (await watcher.query(`SELECT count(*)::int AS n FROM strata_task_ledger WHERE workflow_id = $1`, [h.runId]))
            .rows[0].n,
        ).toBe(0);
      });
    } finally {
      await watcher.end();
    }
  });

  it('repairs a failed run: re-runs only what did not succeed and reuses the rest', async () => {
    const pgc = new pg.Client({ connectionString: stack.connections.warehouse.url });
    await pgc.connect();
    await pgc.query('DROP TABLE IF EXISTS repair_src, repair_dst');
    await pgc.query('CREATE TABLE repair_src (n int)');
    const s = spec(`
id: repairable
tasks:
  - { id: extract, kind: sql, engine: postgres, connection: warehouse, sql: "INSERT INTO repair_src VALUES (1), (2)" }
  - { id: transform, kind: sql, engine: postgres, connection: warehouse, needs: [extract], sql: "INSERT INTO repair_dst SELECT n * 10 FROM repair_src" }
  - { id: load, kind: noop, needs: [transform] }
  - { id: side, kind: noop }
`);
    await stack.withWorker(async () => {
      const first = await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual' });
      const st1 = await stack.runs.wait(first.runId);
      expect(statuses(st1)).toEqual({
        extract: 'success',
        transform: 'failed',
        load: 'upstream_failed',
        side: 'success',
      });
      expect(st1.tasks.transform.error).toMatch(/relation "repair_dst" does not exist/);
      expect(st1.tasks.transform.attempts).toBe(1); // a missing table is not retried

      await pgc.query('CREATE TABLE repair_dst (n int)'); // the fix
      const rep = await stack.runs.repair(first.runId);
      const st2 = await stack.runs.wait(rep.runId);
      expect(st2.status).toBe('success');
      expect(st2.trigger).toBe('repair');
      expect(st2.tasks.extract).toMatchObject({ status: 'success', reusedFrom: first.runId, attempts: 0 });
      expect(st2.tasks.side).toMatchObject({ status: 'success', reusedFrom: first.runId });
      expect(st2.tasks.transform).toMatchObject({ status: 'success', attempts: 1 });
      expect(st2.tasks.load.status).toBe('success');
      // extract was not applied a second time
      expect((await pgc.query('SELECT count(*)::int AS n FROM repair_src')).rows[0].n).toBe(2);
      expect((await pgc.query('SELECT sum(n)::int AS s FROM repair_dst')).rows[0].s).toBe(30);

      await expect(stack.runs.repair(rep.runId)).rejects.toThrow(/succeeded: there is nothing to repair/);
      await expect(stack.runs.repair('pipeline/acme/repairable/nope')).rejects.toThrow(/no run/);
    });
    await pgc.end();
  });

  it('continues as new to keep history small, carrying the DAG state', async () => {
    const s = spec({
      id: 'longdag',
      maxParallel: 4,
      tasks: Array.from({ length: 40 }, (_, i) => ({
        id: `t${i}`,
        kind: 'noop',
        needs: i >= 4 ? [`t${i - 4}`] : [],
        ...(i === 21 ? { trigger: 'all_done' } : {}),
      })),
    });
    const st = await stack.withWorker(async () => {
      const h = await stack.runs.start({
        spec: s,
        tenant: stack.tenant,
        trigger: 'manual',
        options: { continueAsNewAfterEvents: 60 },
      });
      const end = await stack.runs.wait(h.runId);
      expect(end.runId).toBe(h.runId);
      return end;
    });
    expect(st.status).toBe('success');
    expect(st.continuations).toBeGreaterThanOrEqual(2);
    expect(Object.values(st.tasks).every((t) => t.status === 'success' && t.attempts === 1)).toBe(true);
    // needs were honoured across executions
    for (let i = 4; i < 40; i++)
      expect(Date.parse(st.tasks[`t${i}`].startedAt!)).toBeGreaterThanOrEqual(
        Date.parse(st.tasks[`t${i - 4}`].endedAt!),
      );
  });

  it('renders params and the logical date into task fields', async () => {
    const s = spec(`
id: templated
params: { greeting: hello }
tasks:
  - id: q
    kind: sql
    engine: duckdb
    sql: "SELECT {{ params.greeting | literal }} AS g, DATE '{{ ds }}' AS d"
    output: "out/{{ ds_nodash }}/{{ params.greeting }}.parquet"
`);
    const st = await stack.withWorker(() =>
      runToEnd(s, { params: { greeting: 'bonjour' }, logicalDate: '2026-03-04' }),
    );
    expect(st.tasks.q.status).toBe('success');
    expect(st.tasks.q.output).toMatchObject({ rowCount: 1, location: 'out/20260304/bonjour.parquet' });
    await expect(
      stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual', params: { nope: '1' } }),
    ).rejects.toThrow(/unknown param "nope"/);
  });
});
