/**
 * `engine: spark` with `clusterId`: a reconcile task runs as an EMR step (spark-submit of the
 * generated runner in the tenant's lake) on the tenant's own cluster, through the same
 * externalJob child as every EMR task, with the same result as the local exact path. The EMR
 * double (AWS JSON protocol) moves the step's states; the test stands in for the step's Spark
 * driver: it runs the plan the step was given on DuckDB over the same input files and writes
 * the output directories collect reads, then lets the step complete.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../../activities/index.js';
import { ReconciliationsService } from '../../client/reconciliations.js';
import { resourceConf, sparkJobTask, sparkMemory, type SparkJobPlan } from '../../activities/reconcile/spark.js';
import { validateSpec } from '../../schemas/pipeline.js';
import { listExternalJobs } from '../../store/external-jobs.js';
import type { RunState } from '../../schemas/run.js';
import { EmrDouble, type StepPhase } from '../fakes/emr-double.js';
import { emrClientOf, withExtWorker } from '../fakes/ext-stack.js';
import type { Truth } from '../fakes/reconcile-data.js';
import { playJobFromLake } from '../fakes/spark-duck.js';
import { expectSameAnswer, landPair, localAndSparkSpec, sparkReconcileSpec } from '../harness/reconcile.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

/** A step that waits in RUNNING until the test (playing its driver) ends it. */
const HELD: StepPhase[] = [{ state: 'PENDING', ms: 50 }, { state: 'RUNNING' }];

let stack: TestStack;
let emr: EmrDouble;
let deps: Partial<ActivityDeps>;
let clusterId: string;
let foreignId: string;
let truth: Truth;
let scratch: string;

type Step = NonNullable<ReturnType<EmrDouble['clusters']['get']>>['steps'][number];
const stepsOn = (id: string): Step[] => emr.clusters.get(id)?.steps ?? [];

/** A key of the tenant's lake for an s3:// URI the step was given (only the tenant's own objects). */
const keyOf = (uri: string) => {
  const root = stack.store!.root;
  if (!uri.startsWith(`${root}/`)) throw new Error(`${uri} is outside the tenant's lake ${root}`);
  return uri.slice(root.length + 1);
};

/**
 * The step's Spark driver, played: the plan is the step's last argument (after the runner);
 * its SQL runs on DuckDB over local copies of the inputs, each output directory is uploaded
 * where the plan says, and the step then completes.
 */
async function playStep(step: Step): Promise<SparkJobPlan> {
  const args: string[] = step.Config.Args;
  const dir = await mkdtemp(path.join(scratch, 'step-'));
  const plan = await playJobFromLake(stack.store!, keyOf, args[args.length - 1], dir);
  step.timeline = [{ state: 'COMPLETED' }];
  return plan;
}

/**
 * Starts a workflow (`start` gives its id) on a worker with the EMR client and plays each step
 * that reaches RUNNING on `cluster` until the workflow closes; `read` then reads what it left.
 */
async function playingSteps<T>(start: () => Promise<string>, read: (id: string) => Promise<T>, cluster = clusterId) {
  emr.stepScenario = () => HELD;
  const plans: SparkJobPlan[] = [];
  const out = await withExtWorker(stack, deps, async () => {
    const id = await start();
    let finished = false;
    void stack.client.workflow
      .getHandle(id)
      .result()
      .catch(() => undefined)
      .finally(() => (finished = true));
    const played = new Set<string>();
    while (!finished) {
      for (const step of stepsOn(cluster))
        if (emr.stepPhase(step).state === 'RUNNING' && !played.has(step.Id)) {
          played.add(step.Id);
          plans.push(await playStep(step));
        }
      await new Promise((r) => setTimeout(r, 100));
    }
    return read(id);
  });
  return { out, plans };
}

/** Runs the pipeline `s`, playing its steps; returns the run's state and the plans played. */
async function runPlayingSteps(s: ReturnType<typeof spec>, cluster = clusterId) {
  const { out, plans } = await playingSteps(
    async () => (await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual' })).runId,
    (id) => stack.runs.state(id),
    cluster,
  );
  return { st: out, plans };
}

const ledger = async () => listExternalJobs(stack.db, stack.tenant, 1000);

describe('reconcile with engine spark on EMR (clusterId)', () => {
  beforeAll(async () => {
    [stack, emr] = await Promise.all([testStack('recon-emr', { lake: 's3' }), EmrDouble.start()]);
    clusterId = emr.addCluster('tenant-warehouse', undefined, { 'strata:tenant': stack.tenant });
    foreignId = emr.addCluster('their-warehouse', undefined, { 'strata:tenant': 'other-tenant' });
    deps = { emr: emrClientOf(emr), lake: stack.lake, s3: stack.s3 };
    scratch = await mkdtemp(path.join(os.tmpdir(), 'strata-recon-emr-'));
    truth = await landPair(stack, scratch, { rows: 4000, rate: 0.02, seed: 37, duplicates: true, awkward: true });
  }, 180_000);
  afterAll(async () => {
    await emr?.close();
    await stack?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('runs as an EMR step on the tenant cluster whose output (the generated SQL on DuckDB, standing in for the driver) collects to the local exact answer', async () => {
    const { st, plans } = await runPlayingSteps(
      localAndSparkSpec('recon_emr', 'on_emr', {
        clusterId,
        differences: 'silver.diffs_emr',
        executor: { instances: 2, cores: 1, memory: '1.5g' },
        sparkConf: { 'spark.sql.shuffle.partitions': '8' },
      }),
    );
    const b = await expectSameAnswer(stack, st, 'on_emr', truth, 'silver.diffs_emr');
    expect(b.reason).toMatch(/in the EMR step /);

    // The step: spark-submit of Strata's runner from the tenant's lake, given its plan, with the
    // task's resources as Spark settings; EMR reads s3:// (EMRFS), so the plan names s3:// too.
    expect(plans).toHaveLength(1);
    const steps = stepsOn(clusterId).filter((s) => s.Name.includes('recon-emr'));
    expect(steps).toHaveLength(1);
    const args: string[] = steps[0].Config.Args;
    const root = stack.store!.root;
    expect(args.slice(0, 3)).toEqual(['spark-submit', '--deploy-mode', 'cluster']);
    expect(args.slice(-2)[0]).toMatch(new RegExp(`^${root}/\\.strata/reconcile/[0-9a-f]+/reconcile\\.py$`));
    expect(args.slice(-1)[0]).toMatch(new RegExp(`^${root}/\\.strata/reconcile/[0-9a-f]+/plan\\.json$`));
    const confs = args.flatMap((x, i) => (args[i - 1] === '--conf' ? [x] : []));
    expect(confs.sort()).toEqual(
      [
        'spark.executor.cores=1',
        'spark.executor.instances=2',
        'spark.executor.memory=1536m',
        'spark.sql.shuffle.partitions=8',
      ].sort(),
    );
    expect(plans[0].inputs.left.uris).toEqual([`${root}/landing/l.csv`]);
    for (const o of plans[0].outputs) expect(o.path.startsWith(`${root}/.strata/reconcile/`)).toBe(true);
    expect(JSON.stringify(plans[0])).not.toContain('s3a://');
    expect(b.job).toMatchObject({ engine: 'emr', clusterId, stepId: steps[0].Id });
    expect(b.job.states).toContain('COMPLETED');
    // The ledger knows the step (owner: the reconcile job's externalJob child) and that it ended.
    const row = (await ledger()).find((r) => r.job_id === steps[0].Id);
    expect(row).toMatchObject({ engine: 'emr', scope: clusterId, end_state: 'COMPLETED', ended_by: 'emrPoll' });
    expect(row!.owner).toMatch(/\/job$/);
    // The runner and plan (and the outputs, the tenant's rows) are gone once collected.
    expect(await stack.store!.list('.strata/reconcile/')).toEqual([]);
  });

  it("refuses another tenant's EMR cluster before any step is added, without naming whose it is", async () => {
    const addsBefore = emr.calls.filter((c) => c.op === 'AddJobFlowSteps').length;
    const { st, plans } = await runPlayingSteps(
      sparkReconcileSpec('recon_emr_foreign', 'on_emr', { clusterId: foreignId }),
      foreignId,
    );
    expect(st.tasks.on_emr.status).toBe('failed');
    expect(st.tasks.on_emr.errorType).toBe('ClusterNotOwned');
    expect(st.tasks.on_emr.error).toMatch(new RegExp(`EMR cluster ${foreignId} belongs to another tenant`));
    expect(st.tasks.on_emr.error).not.toContain('other-tenant');
    // Its tags were read; no step was added anywhere, none runs on their cluster.
    expect(emr.calls.some((c) => c.op === 'DescribeCluster' && c.input.ClusterId === foreignId)).toBe(true);
    expect(emr.calls.filter((c) => c.op === 'AddJobFlowSteps').length).toBe(addsBefore);
    expect(stepsOn(foreignId)).toEqual([]);
    expect(plans).toEqual([]);
    const rows = await stack.db.query(`SELECT id FROM reconciliations WHERE run_id LIKE $1`, [`%recon_emr_foreign%`]);
    expect(rows.rows).toEqual([]);
  });

  it('a standalone reconciliation (options.engine spark, options.clusterId) runs as an EMR step with the same answer', async () => {
    const svc = new ReconciliationsService(stack.client, stack.taskQueue);
    const body = { left: 'landing/l.csv', right: 'landing/r.csv' };
    // clusterId means an EMR step: without engine spark it is bad input, said before anything starts.
    await expect(svc.start(stack.tenant, { ...body, options: { key: ['id'], clusterId } })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('options.clusterId: clusterId runs the comparison as an EMR step'),
    });
    const { out, plans } = await playingSteps(
      async () => (await svc.start(stack.tenant, { ...body, options: { key: ['id'], engine: 'spark', clusterId } })).id,
      (id) => svc.get(id),
    );
    expect(out.status, JSON.stringify(out)).toBe('completed');
    expect(plans).toHaveLength(1);
    expect(out.result).toMatchObject({
      method: 'spark',
      counts: { changed: truth.changed, onlyLeft: truth.onlyLeft, onlyRight: truth.onlyRight },
      duplicates: {
        left: { keys: truth.duplicateKeysLeft, rows: truth.duplicateRowsLeft },
        right: { keys: truth.duplicateKeysRight, rows: truth.duplicateRowsRight },
      },
      job: { engine: 'emr', clusterId },
    });
  });

  it('cancelling the run stops the step (CancelSteps), and the ledger records who stopped it', async () => {
    emr.stepScenario = () => HELD;
    const cancelsBefore = emr.count('CancelSteps');
    const named = () => stepsOn(clusterId).filter((s) => s.Name.includes('recon-emr-cancel'));
    const st: RunState = await withExtWorker(stack, deps, async () => {
      const h = await stack.runs.start({
        spec: sparkReconcileSpec('recon_emr_cancel', 'on_emr', { clusterId }),
        tenant: stack.tenant,
        trigger: 'manual',
      });
      const handle = stack.client.workflow.getHandle(h.runId);
      await waitFor(async () => named().some((s) => emr.stepPhase(s).state === 'RUNNING'));
      await handle.cancel();
      await handle.result().catch(() => undefined);
      return stack.runs.state(h.runId);
    });
    expect(st.tasks.on_emr.status).toBe('cancelled');
    const [step] = named();
    expect(emr.count('CancelSteps') - cancelsBefore).toBe(1);
    expect(emr.calls.find((c) => c.op === 'CancelSteps' && c.input.StepIds[0] === step.Id)?.input).toMatchObject({
      ClusterId: clusterId,
    });
    await waitFor(async () => emr.stepPhase(step).state === 'CANCELLED');
    const row = (await ledger()).find((r) => r.job_id === step.Id);
    expect(row).toMatchObject({
      engine: 'emr',
      scope: clusterId,
      ended_by: 'emrCancel',
      end_state: 'cancelled: SUBMITTED',
    });
  });
});

describe('reconcile on EMR: what the spec and the job task say', () => {
  const problems = (task: Record<string, unknown>) => {
    const r = validateSpec({
      id: 'p',
      params: { cluster: { type: 'string', default: 'j-ABC123' } },
      tasks: [{ id: 'r', kind: 'reconcile', left: 'a.csv', right: 'b.csv', key: ['id'], ...task }],
    });
    return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
  };

  it('accepts clusterId with engine spark, and refuses it without, beside a managed cluster, or with pod-only fields', () => {
    expect(problems({ engine: 'spark', clusterId: 'j-ABC123', executor: { instances: 2 } })).toEqual([]);
    expect(problems({ engine: 'spark', clusterId: '{{ params.cluster }}' })).toEqual([]);
    expect(problems({ clusterId: 'j-ABC123' })).toEqual([
      'tasks[0].clusterId: "clusterId" applies to engine spark only: remove it or set "engine: spark"',
    ]);
    expect(problems({ engine: 'spark', clusterId: 'j-ABC123', cluster: 'big' })).toEqual([
      'tasks[0].cluster: give "clusterId" or "cluster", not both',
    ]);
    expect(problems({ engine: 'spark', clusterId: 'j-ABC123', image: 'x/spark:1', s3Secret: 'creds' })).toEqual([
      `tasks[0].image: "image" shapes a SparkApplication on Kubernetes; an EMR step (clusterId) runs on the cluster's own Spark: remove it`,
      `tasks[0].s3Secret: "s3Secret" shapes a SparkApplication on Kubernetes; an EMR step (clusterId) runs on the cluster's own Spark: remove it`,
    ]);
    expect(problems({ engine: 'spark', clusterId: 'cluster-1' })[0]).toMatch(
      /^tasks\[0\]\.clusterId: an EMR cluster id/,
    );
    // Settings that reach past the job are refused on EMR too.
    expect(
      problems({ engine: 'spark', clusterId: 'j-ABC123', sparkConf: { 'spark.executorEnv.X': '1' } }),
    ).toHaveLength(1);
  });

  it('makes a pyspark step task for the cluster: the runner and its plan over s3://, resources as Spark settings', () => {
    const job = sparkJobTask(
      {
        id: 'r',
        kind: 'reconcile',
        engine: 'spark',
        clusterId: 'j-ABC123',
        driver: { memory: '2Gi' },
        executor: { instances: 3, memory: '512m' },
        sparkConf: { 'spark.executor.memory': '8g', 'spark.sql.adaptive.enabled': 'true' },
        poll: { initial: '1s' },
      },
      '.strata/reconcile/x/reconcile.py',
      's3://lake/t/.strata/reconcile/x/plan.json',
      'j-ABC123',
    );
    expect(job).toEqual({
      id: 'r',
      kind: 'pyspark',
      engine: 'emr',
      clusterId: 'j-ABC123',
      file: '.strata/reconcile/x/reconcile.py',
      args: ['s3://lake/t/.strata/reconcile/x/plan.json'],
      // The task's fields win over the same key in sparkConf.
      sparkConf: {
        'spark.driver.memory': '2048m',
        'spark.executor.memory': '512m',
        'spark.executor.instances': '3',
        'spark.sql.adaptive.enabled': 'true',
      },
      poll: { initial: '1s', max: '1m', backoff: 1.5 },
    });
    // Without clusterId: a SparkApplication's task, over s3a://.
    expect(sparkJobTask({ id: 'r', kind: 'reconcile' }, 'r.py', 's3://lake/p.json')).toMatchObject({
      engine: 'spark',
      args: ['s3a://lake/p.json'],
    });
    expect(resourceConf({ executor: { cores: 2 } })).toEqual({ 'spark.executor.cores': '2' });
    expect(['1g', '1.5g', '4Gi', '300', '1024k', '1t'].map(sparkMemory)).toEqual([
      '1024m',
      '1536m',
      '4096m',
      '300m',
      '1m',
      '1048576m',
    ]);
  });
});
