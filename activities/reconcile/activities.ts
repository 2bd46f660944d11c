/**
 * The reconcile task: heartbeats progress and its checkpoint, and on a retry (say, after
 * a worker crash) resumes from the last checkpoint instead of starting over.
 */
import { Context } from '@temporalio/activity';
import { createHash, randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import {
  CLUSTER_ID_NEEDS_SPARK,
  inputLabel,
  parseReconcileInput,
  ReconcileOptions,
  type ReconcileInput,
  type ReconcileResult,
} from '../../schemas/reconcile.js';
import { rm } from 'node:fs/promises';
import type { LakeDeps } from '../lake/engine.js';
import type { S3Config } from '../s3/client.js';
import type { Connections } from '../sql/connections.js';
import { materialise } from './inputs.js';
import { differencesId, diffWriter, publishDifferences } from './diffs.js';
import { attemptTag } from '../lake/activities.js';
import { parseDatasetName } from '../../schemas/lake.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { taskActivity } from '../core/task.js';
import { jobActivities } from '../core/job.js';
import { forTenant } from '../lake/open.js';
import {
  diffLines,
  planFor,
  readSparkOutputs,
  SPARK_RUNNER,
  sparkFolder,
  sparkInput,
  sparkJobPlan,
  sparkJobTask,
  sparkLayout,
  sparkTarget,
  type SparkPrepared,
} from './spark.js';
import type { Db } from '../../store/db.js';
import { isReconcileHeartbeat, reconcile, type ReconcileHeartbeat } from './client.js';
import { resolveUri } from './read.js';
import { tenantFolder } from '../s3/tenant.js';
import type { TaskActivityInput } from '../../schemas/run.js';

export interface ReconcileDeps {
  /** The local lake folder; each tenant's inputs resolve in its own `{lakeRoot}/{tenant}`. */
  lakeRoot: string;
  /** Per-tenant allowed locations outside the lake (STRATA_TENANT_LOCATIONS). */
  tenantLocations?: Record<string, string[]>;
  /** The lake (S3 or a folder) and its catalog: s3:// inputs, datasets, other tasks' outputs. */
  lake?: LakeDeps;
  s3?: S3Config;
  /** Named Postgres/MySQL connections (tables and queries as inputs, each only for its tenants). */
  connections?: Connections;
  /** Where results are kept (optional: without it they live in the workflow result only). */
  db?: Db;
  /** Where partition files live while a comparison runs (default: the OS temp folder). */
  workRoot?: string;
  /** Test seams: `afterPartition` is awaited after each compared partition (see the crash tests). */
  faults?: { afterPartition?: (partitionsDone: number) => void | Promise<void> };
}

const OPTION_KEYS = Object.keys(ReconcileOptions.shape);

function parseInputs(task: Record<string, unknown>) {
  const ref = (v: unknown, side: string): ReconcileInput => {
    const r = parseReconcileInput(v);
    if (!r.success)
      throw new NonRetryableError(
        `${side}: ${r.error.issues.map((i) => `${[...i.path].join('.')} ${i.message}`.trim()).join('; ')}`,
        'BadInput',
      );
    return r.data;
  };
  const opts = ReconcileOptions.safeParse(
    Object.fromEntries(OPTION_KEYS.filter((k) => task[k] !== undefined).map((k) => [k, task[k]])),
  );
  if (!opts.success)
    throw new NonRetryableError(
      opts.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      'BadInput',
    );
  if (opts.data.clusterId && opts.data.engine !== 'spark')
    throw new NonRetryableError(CLUSTER_ID_NEEDS_SPARK, 'BadInput');
  return { left: ref(task.left, 'left'), right: ref(task.right, 'right'), options: opts.data };
}

/** The dataset versions a comparison read (the differences dataset's lineage). */
function readVersions(sources: { dataset?: string; namespace?: string; version?: number }[]) {
  return sources.flatMap((x) => {
    const name = x.dataset && x.version ? parseDatasetName(x.dataset) : undefined;
    return name && x.version ? [{ ...name, namespace: x.namespace ?? 'default', version: x.version }] : [];
  });
}

export function summarize(r: ReconcileResult) {
  const differences = r.counts.changed + r.counts.onlyLeft + r.counts.onlyRight;
  return { ...r, differences, rowCount: r.counts.left };
}

export function createReconcileActivities(deps: ReconcileDeps) {
  /**
   * A comparison's answer, whichever engine found it: the policy's warning, the row in the
   * reconciliations table (listed by mapping over time), and the quality gate.
   */
  async function record<T extends ReturnType<typeof summarize>>(
    c: { task: Record<string, unknown>; run: TaskActivityInput['run']; left: ReconcileInput; right: ReconcileInput },
    out: T,
  ): Promise<T> {
    const { task, run } = c;
    const policy = task.failOnDifference ? 'fail' : typeof task.policy === 'string' ? task.policy : 'record';
    if (policy === 'warn' && out.differences > 0)
      Object.assign(out, {
        warning: `datasets differ: ${out.counts.changed} changed, ${out.counts.onlyLeft} only left, ${out.counts.onlyRight} only right`,
      });
    if (deps.db) {
      const id = run.pipelineId === 'reconcile' ? run.workflowId : `${run.workflowId}/${String(task.id)}`;
      await deps.db.query(
        `INSERT INTO reconciliations (id, tenant, left_uri, right_uri, method, differences, result, mapping, pipeline_id, run_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (id) DO UPDATE SET method = EXCLUDED.method, differences = EXCLUDED.differences, result = EXCLUDED.result, finished_at = now()`,
        [
          id,
          run.tenant,
          inputLabel(c.left),
          inputLabel(c.right),
          out.method,
          out.differences,
          JSON.stringify({ ...out, policy }),
          typeof task.mapping === 'string' ? task.mapping : null,
          run.pipelineId,
          run.workflowId,
        ],
      );
    }
    if (task.failOnDifference && out.differences > 0)
      throw new NonRetryableError(
        `datasets differ: ${out.counts.changed} changed, ${out.counts.onlyLeft} only left, ${out.counts.onlyRight} only right`,
        'DatasetsDiffer',
      );
    return out;
  }

  return {
    ...jobActivities({
      /** engine spark, step 1: the inputs on S3 in the tenant's reach, their columns, the job's plan and runner in the tenant's lake. */
      async reconcileSparkPrepare({ task, run }: TaskActivityInput): Promise<SparkPrepared> {
        const { left, right, options } = parseInputs(task);
        const lake = sparkLake(task.id);
        const env = {
          tenant: run.tenant,
          lake,
          s3: deps.s3,
          workflowId: run.pipelineId === 'reconcile' ? undefined : run.workflowId,
          scratch: path.join(deps.workRoot ?? path.join(os.tmpdir(), 'strata-reconcile'), `spark-${randomUUID()}`),
        };
        try {
          const l = await sparkInput(left, 'left', env);
          const r = await sparkInput(right, 'right', env);
          const lay = sparkLayout(l, r, options);
          const store = forTenant(lake, run.tenant).store;
          const folder = sparkFolder(run.workflowId, task.id);
          // A retried or repeated job starts from no outputs: collect must never read an earlier attempt's.
          const old = await store.list(`${folder}/`);
          if (old.length) await store.delete(old.map((o) => o.key));
          const target = sparkTarget(options);
          const plan = sparkJobPlan(planFor(lay, l, r, options), l, r, store.uri(`${folder}/out`), target);
          await store.putBytes(`${folder}/plan.json`, JSON.stringify(plan));
          await store.putBytes(`${folder}/reconcile.py`, SPARK_RUNNER);
          return {
            job: sparkJobTask(task, `${folder}/reconcile.py`, store.uri(`${folder}/plan.json`), options.clusterId),
            folder,
            columns: {
              key: lay.keyNames,
              compared: lay.compared,
              left: l.columns,
              right: r.columns,
              onlyLeft: lay.onlyLeft,
              onlyRight: lay.onlyRight,
            },
            inputs: { left: l.source, right: r.source },
          };
        } finally {
          await rm(env.scratch, { recursive: true, force: true });
        }
      },

      /** engine spark, step 3: the job's outputs as the result every engine returns (and the differences dataset). */
      async reconcileSparkCollect(c: {
        task: TaskActivityInput['task'];
        run: TaskActivityInput['run'];
        prepared: SparkPrepared;
        job: Record<string, unknown>;
      }): Promise<Record<string, unknown>> {
        const { task, run, prepared } = c;
        const { left, right, options } = parseInputs(task);
        const lake = sparkLake(task.id);
        const store = forTenant(lake, run.tenant).store;
        const ctx = Context.current();
        const work = path.join(deps.workRoot ?? path.join(os.tmpdir(), 'strata-reconcile'), `spark-${randomUUID()}`);
        const diffId = options.differences ? differencesId(options.differences) : undefined;
        try {
          const lines = diffId ? diffLines(path.join(work, 'diff')) : undefined;
          let n = 0;
          const result = await readSparkOutputs(
            store,
            prepared.folder,
            prepared,
            options,
            lines &&
              (async (d) => {
                if (++n % 10_000 === 0) ctx.heartbeat({ differences: n });
                await lines.write(d);
              }),
            path.join(work, 'parts'),
          );
          await lines?.close();
          const published =
            diffId &&
            (await publishDifferences(
              lake,
              { tenant: run.tenant, runId: run.workflowId, pipelineId: run.pipelineId, taskId: task.id },
              diffId,
              path.join(work, 'diff'),
              attemptTag(),
              readVersions([prepared.inputs.left, prepared.inputs.right]),
            ));
          const out = await record(
            { task, run, left, right },
            {
              ...summarize({
                method: 'spark',
                reason: `engine spark asked for: the comparison ran as generated Spark SQL in ${c.job.engine === 'emr' ? 'the EMR step' : 'the Spark job'}${typeof c.job.job === 'string' ? ` ${c.job.job}` : ''} and is exact`,
                ...result,
              }),
              inputs: prepared.inputs,
              job: c.job,
              ...(published
                ? {
                    differencesDataset: {
                      dataset: `${published.layer}.${published.name}`,
                      version: published.version,
                      rows: published.rowCount,
                    },
                  }
                : {}),
            },
          );
          // The job's plan and outputs (the tenant's rows among them) are not kept once read.
          const kept = await store.list(`${prepared.folder}/`);
          if (kept.length) await store.delete(kept.map((o) => o.key));
          return out;
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      },
    }),

    reconcileTask: taskActivity(async ({ task, run }, signal, heartbeat) => {
      const id = createHash('sha256').update(`${run.workflowId}/${task.id}`).digest('hex').slice(0, 16);
      const workDir = path.join(deps.workRoot ?? path.join(os.tmpdir(), 'strata-reconcile'), id);
      try {
        return await compare({ task, run }, signal, heartbeat, workDir);
      } catch (e) {
        // Nothing can resume a comparison that failed for good or was cancelled: leave none
        // of the tenant's data (fetched inputs, partitions, lists) on the worker's disk.
        if (e instanceof NonRetryableError || signal.aborted)
          await Promise.all(
            [workDir, `${workDir}-in`, `${workDir}-diff`].map((d) => rm(d, { recursive: true, force: true })),
          );
        throw e;
      }
    }),
  };

  /** engine spark reads through the lake catalog and the tenant's store on S3. */
  function sparkLake(taskId: string): LakeDeps {
    if (!deps.lake)
      throw new NonRetryableError(
        `task ${taskId}: engine spark reads the inputs from the lake, but this worker has no lake: set STRATA_LAKE_ROOT (on S3) and DATABASE_URL on the worker`,
        'ConfigError',
      );
    return deps.lake;
  }

  async function compare(
    { task, run }: { task: Record<string, unknown> & { id: string }; run: TaskActivityInput['run'] },
    signal: AbortSignal,
    heartbeat: (d: unknown) => void,
    workDir: string,
  ) {
    const { left, right, options } = parseInputs(task);
    if (options.engine === 'spark')
      throw new NonRetryableError(
        'engine spark runs as a Spark job (the reconcileJob workflow), not in this activity',
        'ConfigError',
      );
    const info = Context.current().info;
    const details: unknown = info.heartbeatDetails;
    const prior = isReconcileHeartbeat(details) ? details : undefined;
    let checkpoint = prior?.checkpoint;
    const resumedFrom = checkpoint
      ? { compared: checkpoint.compared.length, leftDone: checkpoint.leftDone, rightDone: checkpoint.rightDone }
      : undefined;
    const allowed =
      deps.tenantLocations && Object.hasOwn(deps.tenantLocations, run.tenant) ? deps.tenantLocations[run.tenant] : [];
    const inputEnv = {
      tenant: run.tenant,
      workflowId: run.pipelineId === 'reconcile' ? undefined : run.workflowId,
      lake: deps.lake,
      allowed,
      s3: deps.s3,
      connections: deps.connections,
      dir: `${workDir}-in`,
      signal,
    };
    const diffDir = `${workDir}-diff`;
    const diffId = options.differences ? differencesId(options.differences) : undefined;
    if (diffId && options.method === 'bloom')
      throw new NonRetryableError(
        'differences: method bloom does not keep the rows that differ; use method exact to write the lists',
        'BadInput',
      );
    if (diffId && !deps.lake)
      throw new NonRetryableError(
        'differences: writing a dataset needs the lake catalog, which this worker has not got (set DATABASE_URL on the worker)',
        'ConfigError',
      );
    // A fresh start (no checkpoint) must not keep lists of an earlier attempt's partitions.
    if (diffId && !checkpoint) await rm(diffDir, { recursive: true, force: true });
    // A resumed comparison reads what it read before: the same dataset versions, and the
    // extracted tables it kept (a table may have changed since).
    const pin = (i: ReconcileInput, side: 'left' | 'right'): ReconcileInput =>
      checkpoint && prior?.pinned?.[side] && ('dataset' in i || 'task' in i)
        ? { dataset: prior.pinned[side], namespace: prior.pinned.namespace?.[side] }
        : i;
    const env = { ...inputEnv, resume: !!checkpoint };
    const lakeRoot = tenantFolder(deps.lakeRoot, run.tenant);
    // Paths and file:// locations on either side are checked before anything is fetched or read:
    // one outside the tenant's folder is refused as such, whatever the other side is (missing, say).
    for (const x of [left, right]) if ('uri' in x && !/^s3:\/\//i.test(x.uri)) resolveUri(x.uri, lakeRoot, allowed);
    const [l, r] = [
      await materialise(pin(left, 'left'), 'left', env),
      await materialise(pin(right, 'right'), 'right', env),
    ];
    const at = (x: typeof l) => (x.source.dataset ? `${x.source.dataset}@${x.source.version}` : undefined);
    const pinned = {
      left: at(l),
      right: at(r),
      namespace: { left: l.source.namespace, right: r.source.namespace },
    };
    const readable = [...allowed, ...l.grant, ...r.grant];
    const result = await reconcile(l.ref, r.ref, options, {
      lakeRoot,
      allowed: readable,
      workDir,
      checkpoint,
      signal,
      afterPartition: deps.faults?.afterPartition,
      diffs: diffId ? (p) => diffWriter(diffDir, p) : undefined,
      onCheckpoint: (c) => {
        checkpoint = c;
        heartbeat({ checkpoint, resumedFrom, pinned } satisfies ReconcileHeartbeat);
      },
      onProgress: (progress) => heartbeat({ checkpoint, progress, resumedFrom, pinned } satisfies ReconcileHeartbeat),
    });
    await rm(inputEnv.dir, { recursive: true, force: true });
    const published =
      diffId &&
      deps.lake &&
      (await publishDifferences(
        deps.lake,
        { tenant: run.tenant, runId: run.workflowId, pipelineId: run.pipelineId, taskId: task.id },
        diffId,
        diffDir,
        attemptTag(),
        readVersions([l.source, r.source]),
      ));
    const out = await record(
      { task, run, left, right },
      {
        ...summarize(result),
        inputs: { left: l.source, right: r.source },
        ...(published
          ? {
              differencesDataset: {
                dataset: `${published.layer}.${published.name}`,
                version: published.version,
                rows: published.rowCount,
              },
            }
          : {}),
      },
    );
    return { ...out, resumedFrom };
  }
}
