/**
 * The reconcile task: heartbeats progress and its checkpoint, and on a retry (say, after
 * a worker crash) resumes from the last checkpoint instead of starting over.
 */
import { Context } from '@temporalio/activity';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { DatasetRef, ReconcileOptions, type ReconcileResult } from '../../schemas/reconcile.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { taskActivity } from '../core/task.js';
import type { Db } from '../../store/db.js';
import { reconcile, type ReconcileHeartbeat } from './client.js';
import { tenantFolder } from '../s3/tenant.js';

export interface ReconcileDeps {
  /** The local lake folder; each tenant's inputs resolve in its own `{lakeRoot}/{tenant}`. */
  lakeRoot: string;
  /** Per-tenant allowed locations outside the lake (STRATA_TENANT_LOCATIONS). */
  tenantLocations?: Record<string, string[]>;
  /** Where results are kept (optional: without it they live in the workflow result only). */
  db?: Db;
  /** Where partition files live while a comparison runs (default: the OS temp folder). */
  workRoot?: string;
  /** Test seams: `afterPartition` is awaited after each compared partition (see the crash tests). */
  faults?: { afterPartition?: (partitionsDone: number) => void | Promise<void> };
}

const OPTION_KEYS = Object.keys(ReconcileOptions.shape);

function parseInputs(task: Record<string, unknown>) {
  const ref = (v: unknown, side: string) => {
    const r = DatasetRef.safeParse(typeof v === 'string' ? { uri: v } : v);
    if (!r.success)
      throw new NonRetryableError(
        `${side}: ${r.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
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
  return { left: ref(task.left, 'left'), right: ref(task.right, 'right'), options: opts.data };
}

export function summarize(r: ReconcileResult) {
  const differences = r.counts.changed + r.counts.onlyLeft + r.counts.onlyRight;
  return { ...r, differences, rowCount: r.counts.left };
}

export function createReconcileActivities(deps: ReconcileDeps) {
  return {
    reconcileTask: taskActivity(async ({ task, run }, signal, heartbeat) => {
      const { left, right, options } = parseInputs(task);
      const info = Context.current().info;
      const prior = info.heartbeatDetails as ReconcileHeartbeat | undefined;
      const id = createHash('sha256').update(`${run.workflowId}/${task.id}`).digest('hex').slice(0, 16);
      const workDir = path.join(deps.workRoot ?? path.join(os.tmpdir(), 'strata-reconcile'), id);
      let checkpoint = prior?.checkpoint;
      const resumedFrom = checkpoint
        ? { compared: checkpoint.compared.length, leftDone: checkpoint.leftDone, rightDone: checkpoint.rightDone }
        : undefined;
      const result = await reconcile(left, right, options, {
        lakeRoot: tenantFolder(deps.lakeRoot, run.tenant),
        allowed:
          deps.tenantLocations && Object.hasOwn(deps.tenantLocations, run.tenant)
            ? deps.tenantLocations[run.tenant]
            : [],
        workDir,
        checkpoint,
        signal,
        afterPartition: deps.faults?.afterPartition,
        onCheckpoint: (c) => {
          checkpoint = c;
          heartbeat({ checkpoint, resumedFrom } satisfies ReconcileHeartbeat);
        },
        onProgress: (progress) => heartbeat({ checkpoint, progress, resumedFrom } satisfies ReconcileHeartbeat),
      });
      const out = summarize(result);
      if (deps.db) {
        const id = run.pipelineId === 'reconcile' ? run.workflowId : `${run.workflowId}/${task.id}`;
        await deps.db.query(
          `INSERT INTO reconciliations (id, tenant, left_uri, right_uri, method, differences, result) VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (id) DO UPDATE SET method = EXCLUDED.method, differences = EXCLUDED.differences, result = EXCLUDED.result, finished_at = now()`,
          [id, run.tenant, left.uri, right.uri, out.method, out.differences, JSON.stringify(out)],
        );
      }
      if (task.failOnDifference && out.differences > 0)
        throw new NonRetryableError(
          `datasets differ: ${out.counts.changed} changed, ${out.counts.onlyLeft} only left, ${out.counts.onlyRight} only right`,
          'DatasetsDiffer',
        );
      return { ...out, resumedFrom };
    }),
  };
}
