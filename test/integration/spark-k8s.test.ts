/**
 * Spark tasks on the run's real Kubernetes API server, the Spark Operator simulated: the
 * operator's states as Strata sees them, failures with the driver's own log, the driver log
 * followed through the API server and kwok while the application runs, cancel and timeout
 * reaching the cluster, restarts through 5xx bursts without a second submit.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { tenantNamespace } from '../../activities/spark-k8s/manifest.js';
import { toK8sError } from '../../activities/spark-k8s/client.js';
import { loadConfig } from '../../schemas/config.js';
import type { RunState } from '../../schemas/run.js';
import { sparkApplicationProblems } from '../fakes/spark-validate.js';
import { appState, extLake, extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

/** This file's tenant: its namespace is this file's alone on the shared API server. */
const ACME = 'sk-acme';
const NS = tenantNamespace(ACME);
let stack: TestStack;
let d: Doubles;
/** Where the tenant's job files are, as Spark reads them (s3a://): `{lake}/{tenant}/…`. */
let acmeLake: string;
beforeAll(async () => {
  [stack, d] = await Promise.all([extTestStack('spark'), startDoubles({ tenant: ACME, sparkTenants: [ACME] })]);
  const { root, ...lake } = await extLake(stack);
  Object.assign(d.deps, lake);
  acmeLake = `${root.replace(/^s3:/, 's3a:')}/${ACME}`;
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
});

const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };
const POSTS = /\/sparkapplications$/;
/** The one application of a pipeline, once the API server has it in `state`. */
const appIn = async (pipeline: string, state: string) =>
  waitFor(async () => (await d.kube.apps(pipeline)).some((a) => appState(a) === state), 60_000).then(
    async () => (await d.kube.apps(pipeline))[0],
  );

const run = (s: ReturnType<typeof spec>, tenant = ACME): Promise<RunState> => stack.runToEnd(s, { tenant });

describe('Spark on Kubernetes through the Spark Operator', () => {
  it('runs pyspark and sql tasks as SparkApplications in the tenant namespace and reports driver, executors and log tail', async () => {
    // bronze: every state held 1.5 s, and its first driver lost before it runs (a rerun).
    d.kube.sim.scenario = (app) =>
      app.spec.mainApplicationFile === `${acmeLake}/jobs/bronze.py`
        ? { phaseMs: 1500, rerun: true, runMs: 1500 }
        : { runMs: 300 };
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
    const apps = await d.kube.apps('spark-ok');
    expect(apps).toHaveLength(2);
    const bronze = apps.find((a) => a.spec.mainApplicationFile === `${acmeLake}/jobs/bronze.py`)! as any;
    expect(bronze.metadata.namespace).toBe(NS);
    expect(bronze.status.submissionAttempts).toBe(2);
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
    // As stored by the API server: the project's SparkApplication schema, and the operator's CRD where the specs are present.
    for (const a of apps) expect(sparkApplicationProblems(a)).toEqual([]);
    const quota = await d.kube.admin.core.readNamespacedResourceQuota({ name: 'strata-tier', namespace: NS });
    expect(quota.spec).toEqual({ hard: { 'requests.cpu': '64', 'requests.memory': '256Gi', pods: '72' } });
  });

  it('fails the task with the operator error message', async () => {
    d.kube.sim.scenario = () => ({ runMs: 150, fail: 'java.lang.OutOfMemoryError: Java heap space' });
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
    // The driver's log, read through the API server from the kubelet (kwok), and the operator's warning event.
    expect(String(st.tasks.job.output?.logTail)).toContain('ERROR strata: java.lang.OutOfMemoryError: Java heap space');
    expect(JSON.stringify(st.tasks.job.output?.warnings)).toContain(
      'SparkApplicationFailed: SparkApplication ' + String(st.tasks.job.output?.job),
    );
  });

  it('follows a running driver log over the API: lines written while RUNNING arrive while it runs, the stream ends with the driver, each line once; then the kept tail', async () => {
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
    const [acme, globex] = [await key(ACME), await key('globex')];
    const get = (url: string, k = acme) => fetch(base + url, { headers: { authorization: `Bearer ${k}` } });
    try {
      d.kube.sim.scenario = () => ({ hold: true });
      await withExtWorker(stack, d.deps, async () => {
        const h = await stack.runs.start({
          spec: spec({
            id: 'spark-logs',
            tasks: [
              { id: 'job', kind: 'pyspark', file: 'jobs/logs.py', poll: FAST },
              { id: 'after', kind: 'noop', needs: ['job'] },
            ],
          }),
          tenant: ACME,
          trigger: 'manual',
        });
        const url = `/api/v1/runs/${encodeURIComponent(h.runId)}/tasks/job/logs`;
        const sparkApp = await appIn('spark-logs', 'RUNNING');
        const name = sparkApp.metadata.name;
        await waitFor(async () => (await stack.runs.state(h.runId)).tasks.job.status === 'running');
        const live = await get(url);
        expect(live.status).toBe(200);
        expect(live.headers.get('x-strata-log-source')).toBe('driver-pod');
        expect(live.headers.get('x-strata-log-follow')).toBe('true');
        const reader = live.body!.getReader();
        let text = '';
        const readUntil = async (line: string) => {
          const end = Date.now() + 60_000;
          while (!text.includes(line)) {
            if (Date.now() > end) throw new Error(`no "${line}" in the followed log within 60 s; got:\n${text}`);
            const { value, done } = await reader.read();
            if (done) throw new Error(`the followed log ended before "${line}"; got:\n${text}`);
            text += new TextDecoder().decode(value);
          }
        };
        await readUntil('INFO strata: state RUNNING');
        // The driver writes while it runs; the lines reach the open stream, and the application is still RUNNING.
        for (const i of [1, 2, 3]) {
          await d.kube.sim.log(NS, name, `INFO strata: batch ${i} written`);
          await readUntil(`INFO strata: batch ${i} written`);
          expect(appState(await d.kube.find('sparkapplications', NS, name))).toBe('RUNNING');
        }
        d.kube.sim.finish(NS, name);
        // The body ends when the driver does (kwok keeps the stream open: Strata ends it), nothing lost or repeated.
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += new TextDecoder().decode(value);
        }
        expect(text).toBe(
          [
            'INFO SparkContext: Running Spark version 3.5.3',
            `INFO strata: main ${acmeLake}/jobs/logs.py`,
            'INFO strata: state RUNNING',
            'INFO strata: batch 1 written',
            'INFO strata: batch 2 written',
            'INFO strata: batch 3 written',
            'INFO strata: state SUCCEEDING',
            'INFO strata: state COMPLETED',
            '',
          ].join('\n'),
        );
        // It went through the API server: a followed pods/log request.
        expect(
          d.kube.tap.records.some(
            (r) => r.path === `/api/v1/namespaces/${NS}/pods/${name}-driver/log` && r.query.get('follow') === 'true',
          ),
        ).toBe(true);
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

        // The SparkApplication deleted, and with it (garbage collection) its driver pod: the tail kept in the task output answers.
        await d.kube.admin.delete('sparkapplications', 'v1beta2', NS, name);
        await waitFor(
          async () =>
            (await d.kube.admin.core.readNamespacedPod({ namespace: NS, name: `${name}-driver` }).then(
              () => 200,
              (e) => toK8sError(e, 'pod').code,
            )) === 404,
          90_000,
        );
        const kept = await get(url);
        expect(kept.headers.get('x-strata-log-source')).toBe('log-tail');
        expect(await kept.text()).toContain('INFO strata: state COMPLETED');
      });
    } finally {
      await app.close();
    }
  });

  it('cancelling the run deletes the SparkApplication', async () => {
    d.kube.sim.scenario = () => ({ hold: true });
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: spec({
          id: 'spark-cancel',
          tasks: [{ id: 'forever', kind: 'pyspark', file: 'jobs/stream.py', poll: FAST }],
        }),
        tenant: ACME,
        trigger: 'manual',
      });
      await appIn('spark-cancel', 'RUNNING');
      await stack.client.workflow.getHandle(h.runId).cancel();
      return stack.runs.wait(h.runId);
    });
    expect(st.status).toBe('cancelled');
    expect(st.tasks.forever.status).toBe('cancelled');
    expect(await d.kube.apps('spark-cancel')).toHaveLength(0);
    expect(d.kube.tap.count('DELETE', /\/sparkapplications\/.*spark-cancel/, 200)).toBe(1);
  });

  it('a task that outlives its timeout is stopped and fails with a timeout', async () => {
    d.kube.sim.scenario = () => ({ hold: true });
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
    expect(d.kube.tap.count('DELETE', /\/sparkapplications\/.*spark-timeout/, 200)).toBe(1);
    expect(await d.kube.apps('spark-timeout')).toHaveLength(0);
  });

  it('a worker restarted mid-poll resumes the same application without a second submit, through 5xx bursts', async () => {
    d.kube.sim.scenario = () => ({ runMs: 2500 });
    const before = d.kube.tap.count('POST', POSTS);
    const s = spec({ id: 'spark-restart', tasks: [{ id: 'long', kind: 'pyspark', file: 'jobs/long.py', poll: FAST }] });
    const h = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({ spec: s, tenant: ACME, trigger: 'manual' });
      await appIn('spark-restart', 'RUNNING');
      return h;
    });
    d.kube.tap.failNext(3, 503, (m, p) => m === 'GET' && p.includes('spark-restart'));
    const st = await withExtWorker(stack, d.deps, async () => {
      await stack.client.workflow.getHandle(h.runId).result();
      return stack.runs.state(h.runId);
    });
    expect(st.status).toBe('success');
    expect(d.kube.tap.count('POST', POSTS) - before).toBe(1);
    expect(d.kube.tap.count('GET', /spark-restart/, 503)).toBe(3);
    expect(await d.kube.apps('spark-restart')).toHaveLength(1);
  });

  it('a resubmitted create that finds the application adopts it (409 AlreadyExists)', async () => {
    d.kube.sim.scenario = () => ({ runMs: 100 });
    const manifest = {
      apiVersion: 'sparkoperator.k8s.io/v1beta2',
      kind: 'SparkApplication',
      metadata: { name: 'adopt-me', namespace: NS },
      spec: { type: 'Python', sparkVersion: '3.5.3', mainApplicationFile: 's3://x/y.py', driver: {}, executor: {} },
    };
    const conflicts = d.kube.tap.count('POST', /\/sparkapplications$/, 409);
    const created = await d.deps.spark!.createOrAdopt('sparkapplications', 'v1beta2', manifest);
    // The same create again, as a retried submit sends it: the API server answers 409 AlreadyExists.
    const again = await d.deps.spark!.createOrAdopt('sparkapplications', 'v1beta2', manifest);
    expect([created.adopted, again.adopted]).toEqual([false, true]);
    expect(again.obj.metadata.uid).toBe(created.obj.metadata.uid);
    expect(d.kube.tap.count('POST', /\/sparkapplications$/, 409) - conflicts).toBe(1);
  });

  it('an application that disappears while polled fails the task clearly', async () => {
    d.kube.sim.scenario = () => ({ hold: true });
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: spec({ id: 'spark-gone', tasks: [{ id: 'gone', kind: 'pyspark', file: 'jobs/x.py', poll: FAST }] }),
        tenant: ACME,
        trigger: 'manual',
      });
      const app = await appIn('spark-gone', 'RUNNING');
      // Deleted by someone else (or by timeToLiveSeconds), not through Strata.
      await d.kube.admin.delete('sparkapplications', 'v1beta2', NS, app.metadata.name);
      return stack.runs.wait(h.runId);
    });
    expect(st.tasks.gone.status).toBe('failed');
    expect(st.tasks.gone.error).toMatch(/disappeared while running/);
  });

  it('refuses a job over the tenant tier before submitting anything', async () => {
    const before = d.kube.tap.count('POST', POSTS);
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
    expect(d.kube.tap.count('POST', POSTS)).toBe(before);
  });
});
