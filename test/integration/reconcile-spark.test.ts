/**
 * `engine: spark`: a reconcile task runs as a Spark job (a SparkApplication in the tenant's
 * namespace on the harness's real Kubernetes API server) with the same result as the local
 * exact path. The Spark Operator simulator moves the application's states; the test stands in
 * for the Spark driver: it runs the job's generated SQL (the plan the job's runner is given)
 * on DuckDB over the same input files and writes the output directories collect reads.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SparkK8sClient } from '../../activities/spark-k8s/client.js';
import { tenantNamespace } from '../../activities/spark-k8s/manifest.js';
import { SPARK_RUNNER, type SparkJobPlan } from '../../activities/reconcile/spark.js';
import type { ActivityDeps } from '../../activities/index.js';
import type { Truth } from '../fakes/reconcile-data.js';
import { withExtWorker } from '../fakes/ext-stack.js';
import { SparkOperatorSim } from '../fakes/spark-operator-sim.js';
import { playJobFromLake } from '../fakes/spark-duck.js';
import { expectSameAnswer, landPair, localAndSparkSpec, sparkReconcileSpec } from '../harness/reconcile.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let sim: SparkOperatorSim;
let spark: SparkK8sClient;
let deps: Partial<ActivityDeps>;
let ns: string;
let truth: Truth;
let scratch: string;

beforeAll(async () => {
  const kube = inject('kube');
  spark = SparkK8sClient.fromKubeconfig(kube.kubeconfig);
  stack = await testStack('recon-spark', { lake: 's3' });
  ns = tenantNamespace(stack.tenant);
  sim = await SparkOperatorSim.start({ kubeconfig: kube.kubeconfig, namespaces: [ns], nodeName: kube.nodeName });
  deps = { spark, lake: stack.lake, s3: stack.s3, tenantTiers: { [stack.tenant]: 'free' } };
  scratch = await mkdtemp(path.join(os.tmpdir(), 'strata-recon-spark-'));
  truth = await landPair(stack, scratch, { rows: 5000, rate: 0.02, seed: 31, duplicates: true, awkward: true });
}, 180_000);
afterAll(async () => {
  await sim?.stop();
  await stack?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
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
  const dir = await mkdtemp(path.join(scratch, 'job-'));
  const plan = await playJobFromLake(stack.store!, keyOf, app.spec.arguments![0], dir);
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

describe('reconcile with engine spark', () => {
  it('runs as a SparkApplication whose output (the generated SQL run on DuckDB, standing in for the driver) collects to the local exact answer: counts, samples, lists', async () => {
    const { st, plans } = await runPlayingJobs(
      localAndSparkSpec('recon_spark', 'on_spark', {
        differences: 'silver.diffs_spark',
        executor: { instances: 2, cores: 1, memory: '1g' },
      }),
    );
    const b = await expectSameAnswer(stack, st, 'on_spark', truth, 'silver.diffs_spark');

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
        spec: sparkReconcileSpec('recon_spark_fail', 'on_spark'),
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
      sparkReconcileSpec('recon_spark_bad', 'on_spark', { key: ['no_such_column'] }),
      false,
    );
    expect(st.tasks.on_spark.status).toBe('failed');
    expect(st.tasks.on_spark.error).toMatch(/column "no_such_column" is not in the left dataset/);
    expect((await apps()).filter((a) => a.metadata.name.includes('recon-spark-bad'))).toEqual([]);
  });
});
