/**
 * The orphan sweeper's activity: finds the jobs and clusters Strata made (Kubernetes objects
 * labelled managed-by=strata with their owner workflow in an annotation; EMR clusters tagged
 * `strata:workflow`; every job in the ledger of submitted external jobs) whose owning workflow
 * has closed, stops them, logs each and records it in the metastore (the API's /metrics reads
 * it). A workflow only closes without stopping what it owns when it was terminated (no code
 * runs) or its cleanup failed for good: this catches those.
 */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { errorMessage } from '../../schemas/errors.js';
import { recordOf } from '../../schemas/guards.js';
import type { ExternalEngine, JobRef, JobStatus } from '../../schemas/external.js';
import { tenantOfWorkflowId } from '../../schemas/workflow-ids.js';
import type { Db } from '../../store/db.js';
import {
  externalJobOpen,
  listOpenExternalJobs,
  markExternalJobEnded,
  type ExternalJobRow,
} from '../../store/external-jobs.js';
import type { EmrJobsClient } from '../emr/client.js';
import { SPARK_APP_VERSION, SPARK_CONNECT_VERSION, type SparkK8sClient } from '../spark-k8s/client.js';
import { MANAGED_BY, OWNER_ANNOTATION } from '../spark-k8s/manifest.js';

export type SweptKind =
  'spark-application' | 'spark-connect' | 'emr-cluster' | 'external-job' | 'emr-step' | 'airbyte-job';

/** What a ledger row's job is reported as. */
const LEDGER_KIND = {
  'spark-k8s': 'spark-application',
  emr: 'emr-step',
  airbyte: 'airbyte-job',
} as const satisfies Record<ExternalEngine, SweptKind>;

export interface SweptResource {
  kind: SweptKind;
  name: string;
  tenant?: string;
  owner: string;
  ownerStatus: string;
  result: string;
}

export interface SweepReport {
  /** Resources Strata made that the sweep looked at (running ones only). */
  checked: number;
  /** Objects labelled as Strata's with no owner recorded (made before owners were): left alone. */
  unowned: number;
  stopped: SweptResource[];
  /** Resources it could not stop (their message); the next sweep tries again. */
  errors: string[];
  /** Runs told that a job they had handed over was terminated (it can no longer report): task ids. */
  released: string[];
  /** Ledger rows of jobs that had ended on their own before their owner closed: closed, nothing stopped. */
  ended: number;
}

/** An engine's own poll and cancel (its activities, so the ledger is kept the same way). */
export interface JobControl {
  poll(ref: JobRef): Promise<JobStatus>;
  cancel(ref: JobRef): Promise<{ result: string }>;
}

export interface SweeperDeps {
  spark?: SparkK8sClient;
  emr?: EmrJobsClient;
  db?: Db;
  /** Per engine, how the ledger's jobs are polled and stopped (activities/index.ts passes the engines' activities). */
  jobs?: Partial<Record<ExternalEngine, JobControl>>;
}

/** A SparkApplication in one of these states has ended: nothing left to stop. */
const FINISHED_APP_STATES = new Set(['COMPLETED', 'FAILED', 'SUBMISSION_FAILED']);

interface Candidate {
  kind: SweptKind;
  name: string;
  tenant?: string;
  owner: string;
  /** Stops it and says how; undefined when it had ended already (nothing stopped). */
  stop: () => Promise<string | undefined>;
  /** Read again once its owner is known to be closed: an owner that closed normally ended it itself. */
  stillOpen?: () => Promise<boolean>;
}

/** A job the engine no longer knows: deleted, or past its retention. Nothing left to stop. */
const GONE = new Set(['JobNotFound', 'Airbyte404']);

export function createSweeperActivities(deps: SweeperDeps) {
  return {
    async sweepOrphans(): Promise<SweepReport> {
      const ctx = Context.current();
      const report: SweepReport = { checked: 0, unowned: 0, stopped: [], errors: [], released: [], ended: 0 };
      const candidates: Candidate[] = [];
      const k8s = deps.spark;
      if (k8s) {
        for (const [plural, version, kind] of [
          ['sparkapplications', SPARK_APP_VERSION, 'spark-application'],
          ['sparkconnects', SPARK_CONNECT_VERSION, 'spark-connect'],
        ] as const) {
          for (const o of await k8s.listAll(plural, version, MANAGED_BY)) {
            const appState: unknown = recordOf(recordOf(o.status).applicationState).state;
            const state = typeof appState === 'string' ? appState : undefined;
            if (kind === 'spark-application' && state && FINISHED_APP_STATES.has(state)) continue;
            const owner = o.metadata.annotations?.[OWNER_ANNOTATION];
            if (!owner) {
              report.unowned++;
              continue;
            }
            const ns = o.metadata.namespace;
            const name = o.metadata.name;
            if (!ns) {
              report.errors.push(`${kind} ${name}: listed without a namespace, so it cannot be stopped`);
              continue;
            }
            candidates.push({
              kind,
              name: `${ns}/${name}`,
              tenant: o.metadata.labels?.['strata.dev/tenant'],
              owner,
              stop: () => k8s.delete(plural, version, ns, name),
            });
          }
        }
      }
      const emr = deps.emr;
      if (emr) {
        for (const c of await emr.listActiveClusters('strata/')) {
          const owner = c.tags['strata:workflow'];
          if (!owner) {
            report.unowned++;
            continue;
          }
          candidates.push({
            kind: 'emr-cluster',
            name: c.id,
            tenant: c.tags['strata:tenant'],
            owner,
            stop: async () => (await emr.terminate(c.id), 'terminating'),
          });
        }
      }
      // An externalJob outlives its run's executions (handed over across continue-as-new), so a
      // run that was terminated leaves it watching its job: cancelling it stops the job in its cleanup.
      for await (const wf of ctx.client.workflow.list({
        // This deployment's jobs: those on the sweeper's own task queue.
        query: `WorkflowType = 'externalJob' AND ExecutionStatus = 'Running' AND TaskQueue = '${ctx.info.taskQueue}'`,
      })) {
        const cut = wf.workflowId.lastIndexOf('/task/');
        if (cut <= 0) continue;
        candidates.push({
          kind: 'external-job',
          name: wf.workflowId,
          tenant: tenantOfWorkflowId(wf.workflowId),
          owner: wf.workflowId.slice(0, cut),
          stop: async () => (await ctx.client.workflow.getHandle(wf.workflowId).cancel(), 'cancel requested'),
        });
      }
      report.checked = candidates.length;

      // Describe reads the workflow itself (not the eventually consistent list): a running owner is never missed.
      const owners = new Map<string, string>();
      const ownerStatus = async (id: string) => {
        let s = owners.get(id);
        if (s) return s;
        try {
          s = (await ctx.client.workflow.getHandle(id).describe()).status.name;
        } catch (e) {
          if (!(e instanceof WorkflowNotFoundError)) throw e;
          s = 'NOT_FOUND';
        }
        owners.set(id, s);
        return s;
      };
      /** Stops a candidate whose owner has closed: the result, or undefined when nothing was stopped. */
      const settle = async (c: Candidate): Promise<string | undefined> => {
        ctx.heartbeat(c.name);
        try {
          const status = await ownerStatus(c.owner);
          if (status === 'RUNNING') return undefined;
          if (c.stillOpen && !(await c.stillOpen())) return undefined;
          const result = await c.stop();
          if (result === undefined) return undefined;
          const swept = { kind: c.kind, name: c.name, tenant: c.tenant, owner: c.owner, ownerStatus: status, result };
          report.stopped.push(swept);
          ctx.log.warn('sweeper: stopped a resource whose owning workflow is closed', { ...swept });
          return result;
        } catch (e) {
          const msg = `${c.kind} ${c.name}: ${e instanceof Error ? e.message : String(e)}`;
          report.errors.push(msg);
          ctx.log.error('sweeper: could not stop a resource', { kind: c.kind, name: c.name, error: msg });
          return undefined;
        }
      };
      // What the label/tag walk looked at, and what it stopped, by `${kind}:${name}`.
      const seen = new Set(candidates.map((c) => `${c.kind}:${c.name}`));
      const stopped = new Map<string, string>();
      for (const c of candidates) {
        const result = await settle(c);
        if (result !== undefined) stopped.set(`${c.kind}:${c.name}`, result);
      }
      if (deps.db) await sweepLedger(deps.db, deps.jobs ?? {}, { report, seen, stopped, settle, log: ctx.log });
      // An externalJob terminated through Temporal never reports its end; a run that took it over
      // across continue-as-new would wait for ever. Tell the run (it ignores what it no longer waits for).
      const since = new Date(Date.now() - 24 * 3600_000).toISOString();
      for await (const wf of ctx.client.workflow.list({
        query:
          `WorkflowType = 'externalJob' AND ExecutionStatus = 'Terminated' AND ` +
          `TaskQueue = '${ctx.info.taskQueue}' AND CloseTime > '${since}'`,
      })) {
        const cut = wf.workflowId.lastIndexOf('/task/');
        if (cut <= 0) continue;
        const run = wf.workflowId.slice(0, cut);
        try {
          if ((await ownerStatus(run)) !== 'RUNNING') continue;
          const message = `its workflow ${wf.workflowId} was terminated: the job's outcome is unknown`;
          await ctx.client.workflow
            .getHandle(run)
            .signal('jobFinished', { taskId: wf.workflowId.slice(cut + 6), ok: false, type: 'JobTerminated', message });
          report.released.push(wf.workflowId);
          ctx.log.warn('sweeper: told a run that its external job was terminated', { run, job: wf.workflowId });
        } catch (e) {
          // The run closed between the look and the signal: it no longer waits for the job.
          if (e instanceof WorkflowNotFoundError) continue;
          report.errors.push(`${wf.workflowId}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
        }
      }
      if (deps.db) await record(deps.db, report);
      ctx.log.info('sweeper: sweep done', {
        checked: report.checked,
        stopped: report.stopped.length,
        unowned: report.unowned,
        errors: report.errors.length,
      });
      return report;
    },
  };
}

/**
 * The ledger's open jobs of this deployment (its task queue) whose owner has closed: stopped
 * through their engine's own cancel. What the label/tag walk already looked at (a
 * SparkApplication carries the same owner in its annotation) is left to it, so nothing is
 * stopped or reported twice: the row is closed when the walk stopped the job, or the EMR
 * cluster the step ran on.
 */
async function sweepLedger(
  db: Db,
  jobs: Partial<Record<ExternalEngine, JobControl>>,
  o: {
    report: SweepReport;
    seen: Set<string>;
    stopped: Map<string, string>;
    settle: (c: Candidate) => Promise<string | undefined>;
    log: Context['log'];
  },
) {
  const by = 'sweepOrphans';
  const walk = async (row: ExternalJobRow) => {
    const kind = LEDGER_KIND[row.engine];
    const name = `${row.scope}/${row.ref.id ?? row.name}`;
    const key = `${kind}:${name}`;
    const cluster = row.engine === 'emr' ? o.stopped.get(`emr-cluster:${row.scope}`) : undefined;
    const covered = o.stopped.get(key);
    if (covered !== undefined || cluster !== undefined) {
      await markExternalJobEnded(
        db,
        row.ref,
        covered !== undefined ? `swept: ${covered}` : `swept: its cluster ${row.scope} is ${cluster}`,
        by,
      );
      return;
    }
    if (o.seen.has(key)) return; // the walk found its owner running, or will try again next sweep
    o.report.checked++;
    await o.settle({
      kind,
      name,
      tenant: row.tenant,
      owner: row.owner,
      stillOpen: () => externalJobOpen(db, row.id),
      stop: async () => {
        const engine = jobs[row.engine];
        if (!engine) throw new Error(`this worker has no ${row.engine} client to stop it with`);
        let status: JobStatus | undefined;
        try {
          status = await engine.poll(row.ref);
        } catch (e) {
          if (!(e instanceof ApplicationFailure && GONE.has(e.type ?? ''))) throw e;
        }
        if (!status || status.terminal) {
          // It ended before anyone watching it saw: close the row (a terminal poll already has).
          await markExternalJobEnded(db, row.ref, status?.state ?? 'gone', by);
          o.report.ended++;
          o.log.info('sweeper: closed the ledger row of a job that had ended', {
            kind,
            name,
            owner: row.owner,
            state: status?.state ?? 'gone',
          });
          return undefined;
        }
        // The engine's cancel marks the row ended (ended_by sweepOrphans).
        return (await engine.cancel(row.ref)).result;
      },
    });
  };
  for (let after: string | undefined; ;) {
    const rows = await listOpenExternalJobs(db, Context.current().info.taskQueue, { afterId: after, limit: 500 });
    if (!rows.length) break;
    after = rows[rows.length - 1].id;
    for (const row of rows)
      await walk(row).catch((e: unknown) =>
        o.report.errors.push(`ledger row ${row.id} (${row.engine} ${row.name}): ${errorMessage(e)}`),
      );
  }
}

async function record(db: Db, r: SweepReport) {
  await db.tx(async (t) => {
    const { rows } = await t.query<{ id: string }>(
      'INSERT INTO sweeps (checked, stopped, errors) VALUES ($1, $2, $3) RETURNING id',
      [r.checked, r.stopped.length, r.errors.length],
    );
    for (const s of r.stopped)
      await t.query(
        `INSERT INTO swept_resources (sweep_id, kind, name, tenant, owner, owner_status, result)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [rows[0].id, s.kind, s.name, s.tenant ?? null, s.owner, s.ownerStatus, s.result],
      );
  });
}
