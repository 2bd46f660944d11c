/**
 * Runs at any size: a 10,000-task, 3.3 MB pipeline goes through the HTTP API like any
 * other, and nothing Strata writes to Temporal grows with it (the spec by reference in
 * bounded pages, compact results, answers and continue-as-new carry); per-task state is in
 * the metastore, read from there, with a live query only for what it lacks.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { RunsService } from '../../client/runs.js';
import { kib, runHistoryStats } from '../../bench/history-stats.js';
import { datasetOutput, layered, sqlTask } from '../../bench/shapes.js';
import { loadConfig } from '../../schemas/config.js';
import type { RunState } from '../../schemas/run.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

const KEY = 'scale-suite-bootstrap-admin-key-0123';
let stack: TestStack;
let app: FastifyInstance;

beforeAll(async () => {
  stack = await testStack('scale');
  ({ app } = await buildApi({
    db: stack.db,
    client: stack.client,
    config: loadConfig({
      STRATA_TASK_QUEUE: stack.taskQueue,
      STRATA_BOOTSTRAP_ADMIN_KEY: KEY,
      STRATA_BOOTSTRAP_TENANT: stack.tenant,
    }),
    dispatcher: { idleMs: 50, log: () => {} },
  }));
});
afterAll(async () => {
  await app?.close();
  await stack?.close();
});

async function api(method: 'GET' | 'POST', url: string, body?: unknown) {
  const r = await app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    payload: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.statusCode, json: r.json<any>(), bytes: r.rawPayload.length };
}

/**
 * 10,000 tasks, 100 wide; every 20th a real DuckDB statement writing Parquet, the rest no-ops
 * carrying 300 bytes each and reporting what a dataset task reports (about 400 bytes of output).
 */
function bigSpec(id: string) {
  const pad =
    'A no-op that stands for a statement of the size real pipelines carry; its text is kept only to make the spec as large as 10,000 real SQL tasks make it. '
      .repeat(3)
      .slice(0, 300);
  return {
    id,
    maxParallel: 200,
    tasks: layered(10_000, 100, (i) =>
      i % 20 === 0 ? sqlTask(i) : { kind: 'noop', description: pad, returns: datasetOutput(i) },
    ),
  };
}

describe('runs at any size', () => {
  it('registers, triggers and runs a 10,000-task, 3.3 MB pipeline through the API; no payload grows with it', async () => {
    const doc = bigSpec('big');
    const specBytes = Buffer.byteLength(JSON.stringify(doc));
    expect(specBytes).toBeGreaterThan(3.3e6);
    const reg = await api('POST', '/api/v1/pipelines', doc);
    expect(reg.status).toBe(201);
    const trig = await api('POST', '/api/v1/pipelines/big/runs', {});
    expect(trig.status).toBe(202);
    const runId: string = trig.json.runId;

    // The workflow's own answer is bounded and says so (the API completes it from the metastore).
    const answer = await stack.withWorker(async () => {
      // Waits on the run itself (polling the API for a 10,000-task run would load this small machine).
      await waitFor(
        async () => (await api('GET', `/api/v1/runs/${encodeURIComponent(runId)}`)).json.status !== 'queued',
        30_000,
      );
      await stack.client.workflow.getHandle(runId).result();
      return stack.client.workflow.getHandle(runId).query<RunState>('state');
    });
    const run = await api('GET', `/api/v1/runs/${encodeURIComponent(runId)}`);
    expect(run.json.status).toBe('success');
    expect(run.json.taskCount).toBe(10_000);
    expect(run.json.counts).toEqual({ success: 10_000 });
    expect(Object.keys(run.json.tasks)).toHaveLength(10_000);
    expect(run.json.tasks.t20).toMatchObject({
      status: 'success',
      attempts: 1,
      output: { rowCount: 1, location: 'bench/out/t20.parquet' },
    });
    expect(run.json.tasks.t9999).toMatchObject({ status: 'success', attempts: 1, output: datasetOutput(9999) });
    expect(run.json.tasks.t30.output).toEqual(datasetOutput(30));

    // Every task's final state is a row of its own in the metastore; the SQL tasks wrote their files.
    const rows = await stack.db.query<{ status: string; n: string }>(
      'SELECT status, count(*) AS n FROM run_tasks WHERE run_id = $1 GROUP BY status',
      [runId],
    );
    expect(rows.rows.map((r) => [r.status, Number(r.n)])).toEqual([['success', 10_000]]);
    const files = (await readdir(path.join(stack.lakeRoot, stack.tenant, 'bench', 'out'))).filter((f) =>
      f.endsWith('.parquet'),
    );
    expect(files).toHaveLength(500);

    // What went to Temporal: the spec by reference, pages and results bounded, several executions.
    const stats = await runHistoryStats(stack.client, runId);
    const why = `largest ${kib(stats.largestPayload)} at ${stats.largestAt}`;
    expect(stats.executions.length, 'continued as new').toBeGreaterThanOrEqual(2);
    expect(stats.largestPayload, why).toBeLessThan(300 * 1024);
    for (const e of stats.executions)
      expect(e.startInputBytes, 'a start or continue-as-new input').toBeLessThan(16 * 1024);
    expect(stats.maxEvents).toBeLessThan(10_240);
    expect(Buffer.byteLength(JSON.stringify(answer))).toBeLessThan(600 * 1024);
    expect(answer).toMatchObject({
      status: 'success',
      tasksPartial: true,
      taskCount: 10_000,
      counts: { success: 10_000 },
    });
    expect(Object.keys(answer.tasks).length).toBeLessThanOrEqual(1000);
  }, 400_000);

  it('reads a running run from the metastore, adding from the workflow only what it has not recorded yet', async () => {
    const s = spec({
      id: 'live',
      tasks: [
        { id: 'quick', kind: 'noop' },
        { id: 'slow', kind: 'noop', sleep: '4s', needs: ['quick'] },
        { id: 'after', kind: 'noop', needs: ['slow'] },
      ],
    });
    await stack.withWorker(async () => {
      const h = await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual' });
      await waitFor(async () => (await stack.runs.state(h.runId)).tasks.slow?.status === 'running', 20_000);
      // The metastore has the run and its task rows (seeded pending) but not yet the running task…
      const row = (
        await stack.db.query<{ task_id: string; status: string }>(
          'SELECT task_id, status FROM run_tasks WHERE run_id = $1 ORDER BY task_id',
          [h.runId],
        )
      ).rows;
      expect(row.map((r) => r.task_id)).toEqual(['after', 'quick', 'slow']);
      expect(row.find((r) => r.task_id === 'slow')?.status).toBe('pending');
      // …which the state read takes from the workflow's live answer (bounded: only unrecorded changes).
      const live = await stack.client.workflow.getHandle(h.runId).query<{ tasks: Record<string, unknown> }>('live');
      expect(Object.keys(live.tasks).sort()).toEqual(['quick', 'slow']);
      const st = await stack.runs.wait(h.runId);
      expect(st.tasks).toMatchObject({
        quick: { status: 'success' },
        slow: { status: 'success' },
        after: { status: 'success' },
      });
      const done = (
        await stack.db.query<{ status: string }>('SELECT status FROM run_tasks WHERE run_id = $1', [h.runId])
      ).rows;
      expect(done.map((r) => r.status)).toEqual(['success', 'success', 'success']);
      expect(
        (await stack.db.query('SELECT status, counts FROM runs WHERE run_id = $1', [h.runId])).rows[0],
      ).toMatchObject({ status: 'success', counts: { success: 3 } });
    });
  });

  it('refuses, before anything starts, a run whose start input is over the limit (a 3.3 MB spec started without a metastore)', async () => {
    const bare = new RunsService(stack.client, { taskQueue: stack.taskQueue, namespace: 'default', uiUrl: '' });
    const big = spec(bigSpec('big_inline'));
    const err = await bare
      .start({ spec: big, tenant: stack.tenant, trigger: 'manual', runKey: 'too-big' })
      .catch((e) => e);
    expect(err).toMatchObject({ status: 413 });
    expect(err.message).toMatch(
      /start input is \d+ KiB \(the spec inline \d+ KiB, params 1 KiB\); a run starts with at most 512 KiB: register the pipeline .* so the spec travels by reference/,
    );
    let n = 0;
    for await (const _ of stack.client.workflow.list({
      query: `WorkflowId = 'pipeline/${stack.tenant}/big_inline/too-big'`,
    }))
      n++;
    expect(n).toBe(0);
    // With a metastore the same spec starts, by reference.
    const h = await stack.runs.start({
      spec: big,
      tenant: stack.tenant,
      trigger: 'manual',
      runKey: 'by-ref',
      only: ['t1'],
    });
    const st = await stack.withWorker(() => stack.runs.wait(h.runId));
    expect(st.status).toBe('success');
    expect(st.counts).toEqual({ success: 1, excluded: 9_999 });
  });
});
