import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { loadConfig } from '../../schemas/config.js';
import type { RunState } from '../../schemas/run.js';
import { SCENARIOS, sparkApplicationProblems } from '../fakes/k8s-double.js';
import { extLake, extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

let stack: TestStack;
let d: Doubles;
/** Where acme's job files are, as Spark reads them (s3a://): `{lake}/acme/…`. */
let acmeLake: string;
beforeAll(async () => {
  [stack, d] = await Promise.all([extTestStack('spark'), startDoubles()]);
  const { root, ...lake } = await extLake(stack);
  Object.assign(d.deps, lake);
  acmeLake = `${root.replace(/^s3:/, 's3a:')}/acme`;
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
});

const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };
const POSTS = /\/sparkapplications$/;

async function run(s: ReturnType<typeof spec>, tenant = 'acme'): Promise<RunState> {
  const h = await stack.runs.start({ spec: s, tenant, trigger: 'manual' });
  await stack.client.workflow
    .getHandle(h.runId)
    .result()
    .catch(() => undefined);
  return stack.runs.state(h.runId);
}

describe('Spark on Kubernetes through the Spark Operator', () => {
  it('runs pyspark and sql tasks as SparkApplications in the tenant namespace and reports driver, executors and log tail', async () => {
    d.k8s.scenario = (app) =>
      app.spec.mainApplicationFile === `${acmeLake}/jobs/bronze.py` ? SCENARIOS.slowStart(1500) : SCENARIOS.success();
    const s = spec({
      id: 'spark-ok',
      tasks: [
        {
          id: 'bronze',
          kind: 'pyspark',
          file: 'jobs/bronze.py',
          args: ['--date', '{{ ds }}'],
          s3Secret: 'lake-creds',
          executor: { instances: 3, cores: 2, memory: '2g' },
          sparkConf: { 'spark.sql.shuffle.partitions': '8' },
          poll: FAST,
        },
        {
          id: 'silver',
          kind: 'sql',
          engine: 'spark',
          sql: 'insert into silver.t select * from bronze.t',
          needs: ['bronze'],
          poll: FAST,
        },
      ],
    });
    const st = await withExtWorker(stack, d.deps, () => run(s));
    expect(st.status).toBe('success');
    const out = st.tasks.bronze.output!;
    // Timers fire at about one-second granularity on the server, so each 1.5 s phase is seen.
    expect(out.states).toEqual([
      'NEW',
      'SUBMITTED',
      'PENDING_RERUN',
      'SUBMITTED',
      'RUNNING',
      'SUCCEEDING',
      'COMPLETED',
    ]);
    expect(out.driverPod).toBe(`${String(out.job)}-driver`);
    expect(out.executors).toBe(3);
    // The lake path reached Spark as the full URI of acme's object.
    expect(String(out.logTail)).toContain(`main ${acmeLake}/jobs/bronze.py`);
    const apps = d.k8s.apps().filter((a) => a.metadata.labels?.['strata.dev/pipeline'] === 'spark-ok');
    expect(apps).toHaveLength(2);
    const bronze = apps.find((a) => a.spec.mainApplicationFile === `${acmeLake}/jobs/bronze.py`)!;
    expect(bronze.metadata.namespace).toBe('strata-acme');
    expect(bronze.spec.arguments[0]).toBe('--date');
    expect(bronze.spec.arguments[1]).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(bronze.spec.executor).toMatchObject({ instances: 3, cores: 2, memory: '2g' });
    // The secret is referenced by name; no value is anywhere in the manifest.
    expect(bronze.spec.driver.env).toContainEqual({
      name: 'AWS_SECRET_ACCESS_KEY',
      valueFrom: { secretKeyRef: { name: 'lake-creds', key: 'AWS_SECRET_ACCESS_KEY' } },
    });
    const silver = apps.find((a) => a !== bronze)!;
    expect(silver.spec.arguments).toEqual(['--sql', 'insert into silver.t select * from bronze.t']);
    // The project's SparkApplication schema, and the operator's CRD where the specs are present.
    for (const a of apps) expect(sparkApplicationProblems(a)).toEqual([]);
    expect(d.k8s.namespaces.has('strata-acme')).toBe(true);
    expect(d.k8s.quotas.get('strata-acme/strata-tier')?.spec).toEqual({
      hard: { 'requests.cpu': '64', 'requests.memory': '256Gi', pods: '72' },
    });
  });

  it('fails the task with the operator error message', async () => {
    d.k8s.scenario = () => SCENARIOS.failure('java.lang.OutOfMemoryError: Java heap space');
    const st = await withExtWorker(stack, d.deps, () =>
      run(spec({ id: 'spark-fail', tasks: [{ id: 'job', kind: 'pyspark', file: 'jobs/oom.py', poll: FAST }] })),
    );
    expect(st.status).toBe('failed');
    expect(st.tasks.job.status).toBe('failed');
    expect(st.tasks.job.errorType).toBe('ExternalJobFailed');
    expect(st.tasks.job.error).toMatch(/ended FAILED: java\.lang\.OutOfMemoryError: Java heap space/);
    // What the engine said stays with the failed task: its states and the driver's log tail.
    expect(st.tasks.job.output).toMatchObject({
      engine: 'spark-k8s',
      states: expect.arrayContaining(['FAILED']),
      driverPod: expect.stringMatching(/-driver$/),
    });
    expect(String(st.tasks.job.output?.logTail)).toContain('ERROR strata: java.lang.OutOfMemoryError: Java heap space');
  });

  it('streams a running driver log over the API, following it to the end, and falls back to the kept tail', async () => {
    const BOOT = 'bootstrap-admin-key-for-spark-logs-01';
    const config = loadConfig({
      STRATA_TASK_QUEUE: stack.taskQueue,
      STRATA_BOOTSTRAP_ADMIN_KEY: BOOT,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
    });
    const { app } = await buildApi({ db: stack.db, client: stack.client, config, spark: d.deps.spark });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    const key = async (tenant: string) =>
      (
        (await (
          await fetch(`${base}/api/v1/keys`, {
            method: 'POST',
            headers: { authorization: `Bearer ${BOOT}`, 'content-type': 'application/json' },
            body: JSON.stringify({ tenant, role: 'viewer' }),
          })
        ).json()) as { key: string }
      ).key;
    const [acme, globex] = [await key('acme'), await key('globex')];
    const get = (url: string, k = acme) => fetch(base + url, { headers: { authorization: `Bearer ${k}` } });
    try {
      d.k8s.scenario = () => SCENARIOS.success(1500);
      await withExtWorker(stack, d.deps, async () => {
        const h = await stack.runs.start({
          spec: spec({
            id: 'spark-logs',
            tasks: [
              { id: 'job', kind: 'pyspark', file: 'jobs/logs.py', poll: FAST },
              { id: 'after', kind: 'noop', needs: ['job'] },
            ],
          }),
          tenant: 'acme',
          trigger: 'manual',
        });
        const url = `/api/v1/runs/${encodeURIComponent(h.runId)}/tasks/job/logs`;
        await waitFor(
          async () =>
            (await stack.runs.state(h.runId)).tasks.job.status === 'running' &&
            d.k8s
              .apps()
              .some(
                (a) =>
                  a.metadata.labels?.['strata.dev/pipeline'] === 'spark-logs' &&
                  d.k8s.currentPhase(a as never)?.state === 'RUNNING',
              ),
        );
        const live = await get(url);
        expect(live.status).toBe(200);
        expect(live.headers.get('x-strata-log-source')).toBe('driver-pod');
        expect(live.headers.get('x-strata-log-follow')).toBe('true');
        // The body ends only when the driver does: it holds the lines written after the request began.
        const text = await live.text();
        expect(text).toContain(`INFO strata: main ${acmeLake}/jobs/logs.py`);
        expect(text).toContain('INFO strata: state RUNNING');
        expect(text).toContain('INFO strata: state COMPLETED');
        expect(d.k8s.logRequests.some((r) => r.follow)).toBe(true);
        await stack.client.workflow.getHandle(h.runId).result();

        const done = await get(url);
        expect(done.headers.get('x-strata-log-follow')).toBe('false');
        expect(await done.text()).toContain('INFO strata: state COMPLETED');
        expect(await (await get(`${url}?follow=false&tail=1`)).text()).toBe('INFO strata: state COMPLETED\n');
        expect((await get(`${url}?follow=maybe`)).status).toBe(400);

        const after = await get(`/api/v1/runs/${encodeURIComponent(h.runId)}/tasks/after/logs`);
        expect(after.status).toBe(404);
        expect(((await after.json()) as { error: string }).error).toContain('task after (noop) keeps no log');
        expect((await get(url, globex)).status).toBe(404);
        expect((await get(`/api/v1/runs/${encodeURIComponent(h.runId)}/tasks/nope/logs`)).status).toBe(404);

        // The SparkApplication (and its driver pod) deleted: the tail kept in the task output answers.
        for (const [k, o] of d.k8s.objects)
          if (o.metadata.labels?.['strata.dev/pipeline'] === 'spark-logs') d.k8s.objects.delete(k);
        const kept = await get(url);
        expect(kept.headers.get('x-strata-log-source')).toBe('log-tail');
        expect(await kept.text()).toContain('INFO strata: state COMPLETED');
      });
    } finally {
      await app.close();
    }
  });

  it('cancelling the run deletes the SparkApplication', async () => {
    d.k8s.scenario = () => SCENARIOS.runForever();
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: spec({
          id: 'spark-cancel',
          tasks: [{ id: 'forever', kind: 'pyspark', file: 'jobs/stream.py', poll: FAST }],
        }),
        tenant: 'acme',
        trigger: 'manual',
      });
      await waitFor(async () =>
        d.k8s
          .apps()
          .some(
            (a) =>
              a.metadata.labels?.['strata.dev/pipeline'] === 'spark-cancel' &&
              d.k8s.currentPhase(a as never)?.state === 'RUNNING',
          ),
      );
      await stack.client.workflow.getHandle(h.runId).cancel();
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      return stack.runs.state(h.runId);
    });
    expect(st.status).toBe('cancelled');
    expect(st.tasks.forever.status).toBe('cancelled');
    expect(d.k8s.apps().filter((a) => a.metadata.labels?.['strata.dev/pipeline'] === 'spark-cancel')).toHaveLength(0);
    expect(d.k8s.count('DELETE', /\/sparkapplications\/.*spark-cancel/, 200)).toBe(1);
  });

  it('a task that outlives its timeout is stopped and fails with a timeout', async () => {
    d.k8s.scenario = () => SCENARIOS.runForever();
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({
          id: 'spark-timeout',
          tasks: [{ id: 'slow', kind: 'pyspark', file: 'jobs/slow.py', timeout: '2s', poll: FAST }],
        }),
      ),
    );
    expect(st.tasks.slow.status).toBe('failed');
    expect(st.tasks.slow.errorType).toBe('Timeout');
    expect(st.tasks.slow.error).toMatch(/did not finish within the task timeout \(2000 ms\); it was stopped/);
    expect(d.k8s.count('DELETE', /\/sparkapplications\/.*spark-timeout/, 200)).toBe(1);
  });

  it('a worker restarted mid-poll resumes the same application without a second submit, through 5xx bursts', async () => {
    d.k8s.scenario = () => SCENARIOS.success(2500);
    const before = d.k8s.count('POST', POSTS);
    const s = spec({ id: 'spark-restart', tasks: [{ id: 'long', kind: 'pyspark', file: 'jobs/long.py', poll: FAST }] });
    const h = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({ spec: s, tenant: 'acme', trigger: 'manual' });
      await waitFor(async () =>
        d.k8s
          .apps()
          .some(
            (a) =>
              a.metadata.labels?.['strata.dev/pipeline'] === 'spark-restart' &&
              d.k8s.currentPhase(a as never)?.state === 'RUNNING',
          ),
      );
      return h;
    });
    d.k8s.failNext(3, 503, (m, p) => m === 'GET' && p.includes('spark-restart'));
    const st = await withExtWorker(stack, d.deps, async () => {
      await stack.client.workflow.getHandle(h.runId).result();
      return stack.runs.state(h.runId);
    });
    expect(st.status).toBe('success');
    expect(d.k8s.count('POST', POSTS) - before).toBe(1);
    expect(d.k8s.count('GET', /spark-restart/, 503)).toBe(3);
  });

  it('a resubmitted create that finds the application adopts it (409 AlreadyExists)', async () => {
    d.k8s.scenario = () => SCENARIOS.success(100);
    const created = await d.deps.spark!.createOrAdopt('sparkapplications', 'v1beta2', {
      apiVersion: 'sparkoperator.k8s.io/v1beta2',
      kind: 'SparkApplication',
      metadata: { name: 'adopt-me', namespace: 'strata-acme' },
      spec: { type: 'Python', sparkVersion: '3.5.3', mainApplicationFile: 's3://x/y.py', driver: {}, executor: {} },
    });
    const again = await d.deps.spark!.createOrAdopt('sparkapplications', 'v1beta2', {
      ...created.obj,
      status: undefined,
    });
    expect([created.adopted, again.adopted]).toEqual([false, true]);
    expect(again.obj.metadata.uid).toBe(created.obj.metadata.uid);
  });

  it('an application that disappears while polled fails the task clearly', async () => {
    d.k8s.scenario = () => SCENARIOS.runForever();
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: spec({ id: 'spark-gone', tasks: [{ id: 'gone', kind: 'pyspark', file: 'jobs/x.py', poll: FAST }] }),
        tenant: 'acme',
        trigger: 'manual',
      });
      await waitFor(async () => d.k8s.apps().some((a) => a.metadata.labels?.['strata.dev/pipeline'] === 'spark-gone'));
      const app = d.k8s.apps().find((a) => a.metadata.labels?.['strata.dev/pipeline'] === 'spark-gone')!;
      d.k8s.remove('sparkapplications', 'strata-acme', app.metadata.name);
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      return stack.runs.state(h.runId);
    });
    expect(st.tasks.gone.status).toBe('failed');
    expect(st.tasks.gone.error).toMatch(/disappeared while running/);
  });

  it('refuses a job over the tenant tier before submitting anything', async () => {
    const before = d.k8s.count('POST', POSTS);
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({
          id: 'spark-big',
          tasks: [
            {
              id: 'huge',
              kind: 'pyspark',
              file: 'jobs/x.py',
              executor: { instances: 10, cores: 4, memory: '8g' },
              poll: FAST,
            },
          ],
        }),
        'tiny',
      ),
    );
    expect(st.tasks.huge.status).toBe('failed');
    expect(st.tasks.huge.errorType).toBe('QuotaExceeded');
    expect(st.tasks.huge.error).toMatch(/tenant tiny's tier allows: 10 executors \(tier allows 4\)/);
    expect(d.k8s.count('POST', POSTS)).toBe(before);
  });
});
