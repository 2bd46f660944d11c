/**
 * reconciliationRun: one standalone comparison of two datasets. The comparison is one
 * heartbeating activity that checkpoints; a crashed worker's retry resumes from the
 * checkpoint. Progress is the activity's heartbeat (shown in the Web UI and the API).
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { ReconcileInput, ReconcileOptions } from '../schemas/reconcile.js';
import type { WorkerActivities } from '../activities/index.js';
import type { TaskOutput } from '../schemas/run.js';
import { compareAsJob } from './reconcile-job.js';

export interface ReconciliationInput {
  tenant: string;
  left: ReconcileInput | string;
  right: ReconcileInput | string;
  options?: Partial<ReconcileOptions>;
  heartbeatTimeoutMs?: number;
}

export async function reconciliationRun(input: ReconciliationInput): Promise<TaskOutput> {
  const info = workflowInfo();
  const run = {
    runId: info.workflowId,
    workflowId: info.workflowId,
    pipelineId: 'reconcile',
    tenant: input.tenant,
    trigger: 'manual',
    logicalDate: info.startTime.toISOString(),
  };
  // engine spark (refused by the schema before, so no earlier history takes this branch): the
  // comparison as a Spark job, in this workflow's own history.
  if (input.options?.engine === 'spark') {
    const r = await compareAsJob({
      task: { id: 'reconcile', kind: 'reconcile', left: input.left, right: input.right, ...input.options },
      run,
      heartbeatTimeoutMs: input.heartbeatTimeoutMs,
    });
    return { ...r.output, attempts: r.attempt };
  }
  const { reconcileTask } = proxyActivities<Pick<WorkerActivities, 'reconcileTask'>>({
    startToCloseTimeout: '24h',
    heartbeatTimeout: input.heartbeatTimeoutMs ?? 30_000,
    retry: { maximumAttempts: 20, initialInterval: '1s', maximumInterval: '1m' },
    summary: 'compare datasets',
  });
  const r = await reconcileTask({
    task: { id: 'reconcile', kind: 'reconcile', left: input.left, right: input.right, ...input.options },
    run,
  });
  return { ...r.output, attempts: r.attempt };
}
