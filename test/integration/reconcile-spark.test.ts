/**
 * `engine: spark`: a reconcile task runs as a Spark job (a SparkApplication in the tenant's
 * namespace on the harness's real Kubernetes API server) with the same result as the local
 * exact path. The Spark Operator simulator moves the application's states; the test stands in
 * for the Spark driver: it runs the job's generated SQL (the plan the job's runner is given)
 * on DuckDB over the same input files and writes the output directories collect reads.
 */
import { mkdtemp, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SparkK8sClient } from '../../activities/spark-k8s/client.js';
import { tenantNamespace } from '../../activities/spark-k8s/manifest.js';
import { SPARK_RUNNER, type SparkJobPlan } from '../../activities/reconcile/spark.js';
import type { ActivityDeps } from '../../activities/index.js';
import { generatePair, type Truth } from '../fakes/reconcile-data.js';
import { withExtWorker } from '../fakes/ext-stack.js';
import { SparkOperatorSim } from '../fakes/spark-operator-sim.js';
import { playPlanOnDuckDB, type LocalInput } from '../fakes/spark-duck.js';
import { lakeQuery } from '../harness/duck.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let sim: SparkOperatorSim;
let spark: SparkK8sClient;
let deps: Partial<ActivityDeps>;
let ns: string;
let truth: Truth;
let scratch: string;
const FAST = { initial: '40ms', max: '200ms', backoff: 1.5 };

beforeAll(async () => {
  const kube = inject('kube');
  spark = SparkK8sClient.fromKubeconfig(kube.kubeconfig);
  stack = await testStack('recon-spark', { lake: 's3' });
  ns = tenantNamespace(stack.tenant);
  sim = await SparkOperatorSim.start({ kubeconfig: kube.kubeconfig, namespaces: [ns], nodeName: kube.nodeName });
  deps = { spark, lake: stack.lake, s3: stack.s3, tenantTiers: { [stack.tenant]: 'free' } };
  scratch = await mkdtemp(path.join(os.tmpdir(), 'strata-recon-spark-'));
  const l = path.join(scratch, 'l.csv');
  const r = path.join(scratch, 'r.csv');
  truth = await generatePair(l, r, { rows: 5000, rate: 0.02, seed: 31, duplicates: true, awkward: true });
  await stack.store!.putFile('landing/l.csv', l);
  await stack.store!.putFile('landing/r.csv', r);
}, 180_000);
afterAll(async () => {
  await sim?.stop();
  await stack?.close();
});

const apps = async () =>
  (
    (await spark.custom.listNamespacedCustomObject({
      group: 'sparkoperator.k8s.io',
      version: 'v1beta2',
      namespace: ns,
      plural: 'sparkapplications',
    })) as {
      items: {
        metadata: { name: string };
        spec: { mainApplicationFile: string; arguments?: string[]; type: string };
        status?: { applicationState?: { state?: string } };
      }[];
    }
  ).items;

/** A key of the tenant's lake for an s3a:// URI the job was given (only the tenant's own objects). */
const keyOf = (uri: string) => {
  const root = stack.store!.root;
  const s3 = uri.replace(/^s3a:\/\//, 's3://');
  if (!s3.startsWith(`${root}/`)) throw new Error(`${uri} is outside the tenant's lake ${root}`);
  return s3.slice(root.length + 1);
};

/**
 * The Spark driver's part, played for the held application `name`: read the plan the job was
 * given, run its SQL on DuckDB over local copies of the inputs, upload each output directory
 * where the plan says, then let the simulator complete the application.
 */
async function playJob(name: string): Promise<SparkJobPlan> {
  const [app] = (await apps()).filter((a) => a.metadata.name === name);
  const store = stack.store!;
  const plan = JSON.parse((await store.getBytes(keyOf(app.spec.arguments![0]))).toString()) as SparkJobPlan;
  const dir = await mkdtemp(path.join(scratch, 'job-'));
  const local = async (side: 'left' | 'right'): Promise<LocalInput> => {
    const i = plan.inputs[side];
    const files: string[] = [];
    for (const [n, uri] of i.uris.entries()) {
      const f = path.join(dir, `${side}-${n}.${i.format}`);
      await store.getFile(keyOf(uri), f);
      files.push(f);
    }
    return { format: i.format, files, csv: i.csv, columns: i.columns };
  };
  const out = (n: string) => path.join(dir, 'out', n);
  await playPlanOnDuckDB(plan, await local('left'), await local('right'), out);
  for (const o of plan.outputs)
    for (const f of await readdir(out(o.name))) await store.putFile(`${keyOf(o.path)}/${f}`, path.join(out(o.name), f));
  sim.finish(ns, name);
  return plan;
}

/** Runs `s`, playing every Spark job it starts; returns the run's state and the plans played. */
async function runPlayingJobs(s: ReturnType<typeof spec>, play = true) {
  sim.scenario = () => ({ hold: true });
  const plans: SparkJobPlan[] = [];
  const st = await withExtWorker(stack, deps, async () => {
    const h = await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual' });
    const done = stack.client.workflow
      .getHandle(h.runId)
      .result()
      .then(
        () => true,
        () => true,
      );
    let finished = false;
    void done.then(() => (finished = true));
    const played = new Set<string>();
    while (!finished) {
      for (const a of await apps())
        if (a.status?.applicationState?.state === 'RUNNING' && !played.has(a.metadata.name)) {
          played.add(a.metadata.name);
          if (play) plans.push(await playJob(a.metadata.name));
          else sim.finish(ns, a.metadata.name);
        }
      await new Promise((r) => setTimeout(r, 200));
    }
    return stack.runs.state(h.runId);
  });
  return { st, plans };
}

const query = (sql: string) => lakeQuery(stack, sql);

const sorted = (xs: unknown) => (xs as unknown[]).map((x) => JSON.stringify(x)).sort();

describe('reconcile with engine spark', () => {
  it('runs as a SparkApplication whose output (the generated SQL run on DuckDB, standing in for the driver) collects to the local exact answer: counts, samples, lists', async () => {
    const task = { left: 'landing/l.csv', right: 'landing/r.csv', key: ['id'], sampleLimit: 1000 };
    const { st, plans } = await runPlayingJobs(
      spec({
        id: 'recon_spark',
        tasks: [
          { id: 'local', kind: 'reconcile', ...task, differences: 'silver.diffs_local' },
          {
            id: 'on_spark',
            kind: 'reconcile',
            engine: 'spark',
            ...task,
            differences: 'silver.diffs_spark',
            executor: { instances: 2, cores: 1, memory: '1g' },
            poll: FAST,
          },
        ],
      }),
    );
    expect(st.tasks.local.status, JSON.stringify(st.tasks.local)).toBe('success');
    expect(st.tasks.on_spark.status, JSON.stringify(st.tasks.on_spark)).toBe('success');
    const a = st.tasks.local.output as Record<string, any>;
    const b = st.tasks.on_spark.output as Record<string, any>;
    expect(b.method).toBe('spark');
    expect(b.exact).toBe(true);
    // The planted truth, found by both.
    expect(a.counts).toMatchObject({ changed: truth.changed, onlyLeft: truth.onlyLeft, onlyRight: truth.onlyRight });
    expect(b.counts).toEqual(a.counts);
    expect(b.columnMismatches).toEqual(a.columnMismatches);
    expect(b.differences).toBe(a.differences);
    for (const side of ['left', 'right']) {
      expect(b.duplicates[side].keys).toBe(a.duplicates[side].keys);
      expect(b.duplicates[side].rows).toBe(a.duplicates[side].rows);
      expect(sorted(b.duplicates[side].samples)).toEqual(sorted(a.duplicates[side].samples));
    }
    // Fewer differences of each kind than the sample limit: the samples are all of them.
    for (const k of ['onlyLeft', 'onlyRight', 'changed']) expect(sorted(b.samples[k])).toEqual(sorted(a.samples[k]));
    expect(b.columns).toEqual(a.columns);
    // The full lists, as catalogued datasets: the same rows.
    const local = await query('SELECT * FROM silver.diffs_local ORDER BY ALL');
    expect(local.length).toBeGreaterThan(truth.changed);
    expect(await query('SELECT * FROM silver.diffs_spark ORDER BY ALL')).toEqual(local);
    expect(b.differencesDataset).toMatchObject({ dataset: 'silver.diffs_spark', version: 1, rows: local.length });

    // The job: a pyspark application in the tenant's namespace, running Strata's runner from the
    // tenant's lake over the plan it was given; it went through the operator's states.
    expect(plans).toHaveLength(1);
    const [app] = await apps();
    expect(app.spec.type).toBe('Python');
    expect(app.spec.mainApplicationFile).toMatch(/^s3a:\/\/.*\/\.strata\/reconcile\/[0-9a-f]+\/reconcile\.py$/);
    expect(app.spec.arguments?.[0]).toMatch(/\/plan\.json$/);
    expect(b.job).toMatchObject({ engine: 'spark-k8s', job: app.metadata.name });
    // RUNNING is proven above: the test played the driver when the API server showed it RUNNING
    // (one plan). The job's own polls can miss that short window, so they need only see the end.
    expect(b.job.states).toContain('COMPLETED');
    expect(plans[0].outputs.map((o) => o.name)).toContain('differences_changed');
    expect(plans[0].inputs.left.uris[0]).toMatch(/\/landing\/l\.csv$/);
    // The runner and plan (and the outputs, the tenant's rows) are gone once collected.
    expect(await stack.store!.list('.strata/reconcile/')).toEqual([]);
    expect(SPARK_RUNNER).toContain('spark.sql');
  });

  it('a job that ends FAILED fails the task with the engine message, and no result is recorded', async () => {
    sim.scenario = () => ({ runMs: 100, fail: 'org.apache.spark.SparkException: Job aborted' });
    const st = await withExtWorker(stack, deps, async () => {
      const h = await stack.runs.start({
        spec: spec({
          id: 'recon_spark_fail',
          tasks: [
            {
              id: 'on_spark',
              kind: 'reconcile',
              engine: 'spark',
              left: 'landing/l.csv',
              right: 'landing/r.csv',
              key: ['id'],
              poll: FAST,
            },
          ],
        }),
        tenant: stack.tenant,
        trigger: 'manual',
      });
      return stack.runs.wait(h.runId);
    });
    expect(st.tasks.on_spark.status).toBe('failed');
    expect(st.tasks.on_spark.errorType).toBe('ExternalJobFailed');
    expect(st.tasks.on_spark.error).toMatch(/ended FAILED: org\.apache\.spark\.SparkException: Job aborted/);
    const rows = await stack.db.query(`SELECT id FROM reconciliations WHERE run_id LIKE $1`, [`%recon_spark_fail%`]);
    expect(rows.rows).toEqual([]);
  });

  it('refuses, before any job, a comparison Spark cannot read: a key missing on one side', async () => {
    const { st } = await runPlayingJobs(
      spec({
        id: 'recon_spark_bad',
        tasks: [
          {
            id: 'on_spark',
            kind: 'reconcile',
            engine: 'spark',
            left: 'landing/l.csv',
            right: 'landing/r.csv',
            key: ['no_such_column'],
            poll: FAST,
          },
        ],
      }),
      false,
    );
    expect(st.tasks.on_spark.status).toBe('failed');
    expect(st.tasks.on_spark.error).toMatch(/column "no_such_column" is not in the left dataset/);
    expect((await apps()).filter((a) => a.metadata.name.includes('recon-spark-bad'))).toEqual([]);
  });
});
