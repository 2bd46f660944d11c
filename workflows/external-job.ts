/**
 * externalJob: one job on an outside engine (Spark on Kubernetes, an EMR step, an
 * Airbyte sync), as a child of pipelineRun. Submit (idempotent by name), poll on
 * durable timers with backoff, fetch logs, and stop the job on every exit but success
 * (the run cancelled, the task's timeout, polls that gave up or failed for good).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import { toMs } from '../schemas/duration.js';
import {
  ENGINE_ACTIVITY_PREFIX,
  PollFields,
  externalEngineOf,
  type ExternalJobInput,
  type JobRef,
  type JobResult,
  type JobStatus,
} from '../schemas/external.js';
import { touchSignal, clusterWorkflowId, type ClusterState } from './cluster-messages.js';
import type { createAirbyteActivities } from '../activities/airbyte/activities.js';
import type { ClusterActivities } from '../activities/clusters/activities.js';
import type { createEmrActivities } from '../activities/emr/activities.js';
import type { createSparkActivities } from '../activities/spark-k8s/activities.js';
import type { createWapActivities } from '../activities/iceberg/activities.js';
import { jobFinishedSignal, type JobFinished } from './job-messages.js';
import { describeFailure } from './failures.js';

/** The job activities of every engine, typed by the factories that make them (type-only imports: no activity code here). */
type JobActivities = ReturnType<typeof createSparkActivities> &
  ReturnType<typeof createEmrActivities> &
  ReturnType<typeof createAirbyteActivities> &
  Pick<ClusterActivities, 'ensureClusterReady'>;

/** What an externalJob carries across continue-as-new: the job it watches (never submitted twice) and what it saw. */
interface JobCarry {
  ref: JobRef;
  cluster?: ClusterState;
  states: string[];
  peakExecutors: number;
  waitMs: number;
  /** When the first execution started: the task's timeout counts from there. */
  startedAt: number;
}

export type ExternalJobRunInput = ExternalJobInput & {
  carried?: JobCarry;
  /** The run to tell how the job ended (jobFinished), so a run that continued as new meanwhile learns it. */
  reportTo?: { workflowId: string; taskId: string };
  /** Continue as new past this many events (default 8,000): a multi-day job's polls never outgrow one history. */
  continueAsNewAfterEvents?: number;
};

const DEFAULT_CONTINUE_AS_NEW_AFTER = 8_000;

export async function externalJob(input: ExternalJobRunInput): Promise<JobResult> {
  return reportingTo(input.reportTo, () => watchJob(input));
}

/**
 * Runs a task's child workflow body and, when the run asked (`reportTo`: the job was handed
 * over), tells the run how it ended (jobFinished), since only the execution that started a
 * child sees its result.
 */
export async function reportingTo(
  to: ExternalJobRunInput['reportTo'],
  body: () => Promise<JobResult>,
): Promise<JobResult> {
  if (!to) return body();
  // Tell the run, whichever of its executions is current; a run that has closed no longer asks.
  const report = (m: JobFinished) =>
    CancellationScope.nonCancellable(() => getExternalWorkflowHandle(to.workflowId).signal(jobFinishedSignal, m)).catch(
      () => undefined,
    );
  try {
    const result = await body();
    await report({ taskId: to.taskId, ok: true, result });
    return result;
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    if (isCancellation(err)) await report({ taskId: to.taskId, ok: false, cancelled: true, message: 'cancelled' });
    else await report({ taskId: to.taskId, ok: false, ...describeFailure(err) });
    throw err;
  }
}

async function watchJob(input: ExternalJobRunInput): Promise<JobResult> {
  const engine = externalEngineOf(input.task);
  const prefix = ENGINE_ACTIVITY_PREFIX[engine];
  const poll = PollFields.parse(input.task.poll ?? {});
  const initialMs = toMs(poll.initial);
  const maxMs = toMs(poll.max);
  const acts = proxyActivities<JobActivities>({
    startToCloseTimeout: '2m',
    heartbeatTimeout: input.heartbeatTimeoutMs ?? 30_000,
    retry: {
      initialInterval: Math.min(1000, initialMs),
      backoffCoefficient: 2,
      maximumInterval: Math.max(maxMs, 1000),
      maximumAttempts: 10,
    },
  });
  const carried = input.carried;
  const started = carried?.startedAt ?? workflowInfo().startTime.getTime();
  const deadline = input.timeoutMs ? started + input.timeoutMs : Infinity;

  let cluster: ClusterState | undefined = carried?.cluster;
  if (!carried && typeof input.task.cluster === 'string') {
    cluster = await acts.ensureClusterReady({
      tenant: input.run.tenant,
      name: input.task.cluster,
      engine,
      pollMs: initialMs,
      requestedBy: workflowInfo().workflowId,
    });
  }
  const clusterHandle = cluster
    ? getExternalWorkflowHandle(clusterWorkflowId(input.run.tenant, cluster.name))
    : undefined;

  // The submit finishes even if the run is cancelled meanwhile, so the job it made is known and
  // stopped below rather than left running. Cancellation surfaces at the next poll.
  const ref: JobRef =
    carried?.ref ?? (await CancellationScope.nonCancellable(() => acts[`${prefix}Submit`]({ ...input, cluster })));
  const history: string[] = carried?.states ?? [];
  let status: JobStatus | undefined;
  let peakExecutors = carried?.peakExecutors ?? 0;
  try {
    let wait = carried?.waitMs ?? initialMs;
    for (;;) {
      status = await acts[`${prefix}Poll`](ref);
      if (history[history.length - 1] !== status.state) {
        history.push(status.state);
        setCurrentDetails(`**${ref.name}** on ${engine}: ${status.state}`);
      }
      if (typeof status.facts?.executors === 'number') peakExecutors = Math.max(peakExecutors, status.facts.executors);
      if (status.terminal) break;
      if (clusterHandle) await clusterHandle.signal(touchSignal, { by: workflowInfo().workflowId });
      if (Date.now() >= deadline) {
        throw ApplicationFailure.create({
          type: 'Timeout',
          nonRetryable: true,
          message: `${ref.name} did not finish within the task timeout (${input.timeoutMs} ms); it was stopped`,
        });
      }
      const info = workflowInfo();
      if (
        info.continueAsNewSuggested ||
        info.historyLength >= (input.continueAsNewAfterEvents ?? DEFAULT_CONTINUE_AS_NEW_AFTER)
      ) {
        // A long job (a streaming query, a multi-day step) keeps watching it in a fresh history.
        await condition(allHandlersFinished);
        const next: JobCarry = { ref, cluster, states: history, peakExecutors, waitMs: wait, startedAt: started };
        return await continueAsNew<typeof externalJob>({ ...input, carried: next });
      }
      await sleep(Math.min(wait, Math.max(1, deadline - Date.now())));
      wait = Math.min(maxMs, Math.round(wait * poll.backoff));
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    if (isCancellation(err) || (err instanceof ApplicationFailure && err.type === 'Timeout')) {
      await CancellationScope.nonCancellable(() => acts[`${prefix}Cancel`](ref));
    } else if (patched('stop-job-on-any-failure-v1')) {
      // Polls that gave up or hit an error no retry fixes: the job would run on unwatched.
      // Stop it (best effort: the original failure is what the task reports).
      await CancellationScope.nonCancellable(() => acts[`${prefix}Cancel`](ref)).catch(() => undefined);
    }
    throw err;
  }

  const logs = await acts[`${prefix}Logs`](ref);
  const output = {
    engine,
    job: ref.name,
    jobId: ref.id,
    adopted: ref.adopted,
    states: history,
    ...status.facts,
    ...logs.facts,
    ...(engine === 'spark-k8s' ? { executors: peakExecutors } : {}),
    logTail: logs.logTail,
  };
  if (!status.succeeded) {
    throw ApplicationFailure.create({
      type: 'ExternalJobFailed',
      nonRetryable: true,
      message: `${engine} job ${ref.name} ended ${status.state}: ${status.message ?? 'no message from the engine'}`,
      details: [{ attempt: 1, output }],
    });
  }
  // Write-audit-publish: what the job staged on its declared outputs is checked, then published or rejected.
  // Only tasks with outputs (a field older runs never had) take this step. An Airbyte sync's
  // outputs are its streams' tables, staged and audited as they are registered (below).
  const outputs = input.task.outputs;
  if (engine !== 'airbyte' && Array.isArray(outputs) && outputs.length && patched('external-job-wap-v1')) {
    const { auditJobOutputs } = proxyActivities<ReturnType<typeof createWapActivities>>({
      startToCloseTimeout: '30m',
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 5 },
    });
    try {
      const audited = await auditJobOutputs({ run: input.run, task: input.task });
      return { output: { ...output, outputs: audited.outputs }, attempt: 1 };
    } catch (err) {
      throw withJobOutput(err, 'AuditFailed', output);
    }
  }
  // A sync into Iceberg: its streams' tables are registered as datasets (activities/airbyte/iceberg.ts).
  if (engine === 'airbyte' && patched('external-job-airbyte-iceberg-v1')) {
    const { airbyteRegisterStreams } = proxyActivities<ReturnType<typeof createAirbyteActivities>>({
      startToCloseTimeout: '30m',
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 5 },
    });
    try {
      const r = await airbyteRegisterStreams({ task: input.task, run: input.run });
      return {
        output: {
          ...output,
          ...(r.outputs.length ? { outputs: r.outputs } : {}),
          ...(r.skipped.length ? { skipped: r.skipped } : {}),
          ...(r.reason ? { notCatalogued: r.reason } : {}),
        },
        attempt: 1,
      };
    } catch (err) {
      throw withJobOutput(err, 'RegisterFailed', output);
    }
  }
  return { output, attempt: 1 };
}

/** A failed step after the job (audit, registration) fails the task with its own type, keeping the job's output. */
function withJobOutput(err: unknown, fallbackType: string, output: Record<string, unknown>): unknown {
  const cause = err instanceof ActivityFailure ? err.cause : undefined;
  if (cause instanceof ApplicationFailure)
    return ApplicationFailure.create({
      type: cause.type ?? fallbackType,
      nonRetryable: true,
      message: cause.message,
      details: [{ attempt: 1, output }],
    });
  return err;
}
