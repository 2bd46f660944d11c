/**
 * reconcileJob: a reconcile task with `engine: spark`, as a child of pipelineRun (or the body
 * of a standalone reconciliationRun). Three steps, each its own row in the Web UI:
 *
 * 1. prepare (activity): both inputs resolved on S3 inside the tenant's reach, their columns
 *    read, the comparison's plan (generated SQL) and its runner written to the tenant's lake;
 * 2. the job: an externalJob child running the runner as a pyspark job — a SparkApplication
 *    (the tenant's namespace, tier policy and quota) or, with `clusterId`, an EMR step on the
 *    tenant's own cluster — polled on durable timers, stopped on cancel;
 * 3. collect (activity): the job's outputs read back into the result every engine returns,
 *    the differences dataset published, the result recorded, the policy applied.
 */
import {
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  executeChild,
  proxyActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { WorkerActivities } from '../activities/index.js';
import type { JobResult } from '../schemas/external.js';
import { externalJob, reportingTo, type ExternalJobRunInput } from './external-job.js';

export async function reconcileJob(input: ExternalJobRunInput): Promise<JobResult> {
  return reportingTo(input.reportTo, () => compareAsJob(input));
}

/** The three steps (the job's child id is this workflow's id and `/job`). */
export async function compareAsJob(input: ExternalJobRunInput): Promise<JobResult> {
  const acts = proxyActivities<Pick<WorkerActivities, 'reconcileSparkPrepare' | 'reconcileSparkCollect'>>({
    startToCloseTimeout: '6h',
    heartbeatTimeout: input.heartbeatTimeoutMs ?? 30_000,
    retry: { initialInterval: '1s', maximumInterval: '1m', maximumAttempts: 10 },
  });
  const prepared = await acts.reconcileSparkPrepare({ task: input.task, run: input.run });
  const job = await executeChild(externalJob, {
    workflowId: `${workflowInfo().workflowId}/job`,
    args: [
      {
        task: prepared.job,
        run: input.run,
        timeoutMs: input.timeoutMs,
        heartbeatTimeoutMs: input.heartbeatTimeoutMs,
        ...(input.continueAsNewAfterEvents ? { continueAsNewAfterEvents: input.continueAsNewAfterEvents } : {}),
      },
    ],
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
    cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
    staticSummary: `${input.task.id}: the comparison as a Spark job`,
  });
  const output = await acts.reconcileSparkCollect({ task: input.task, run: input.run, prepared, job: job.output });
  return { output, attempt: 1 };
}
