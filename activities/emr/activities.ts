/** EMR steps as Temporal activities: add (idempotent by step name), describe, cancel. */
import type { StepConfig } from '@aws-sdk/client-emr';
import { jobName, type ExternalJobInput, type JobRef, type JobStatus } from '../../schemas/external.js';
import { jobActivities } from '../core/job.js';
import { NonRetryableError } from '../core/task.js';
import { EmrError, STEP_TERMINAL, type EmrJobsClient } from './client.js';

export interface EmrDeps {
  emr?: EmrJobsClient;
}

function classify(e: unknown): never {
  if (e instanceof EmrError && !e.retryable) throw new NonRetryableError(e.message, e.type);
  throw e;
}

/** The command-runner.jar arguments for a task: spark-sql/hive/presto for sql, spark-submit for pyspark. */
export function stepArgs(task: Record<string, any>): string[] {
  const extra: string[] = task.args ?? [];
  if (task.kind === 'pyspark') {
    const conf = Object.entries((task.sparkConf ?? {}) as Record<string, string>).flatMap(([k, v]) => ['--conf', `${k}=${v}`]);
    return ['spark-submit', '--deploy-mode', 'cluster', ...conf, String(task.file), ...extra];
  }
  if (task.kind === 'hive') return task.script ? ['hive', '-f', String(task.script), ...extra] : ['hive', '-e', String(task.query), ...extra];
  const dialect = task.dialect ?? 'spark';
  if (dialect === 'hive') return ['hive', '-e', String(task.sql), ...extra];
  if (dialect === 'presto') return ['presto-cli', '--execute', String(task.sql), ...extra];
  return ['spark-sql', '-e', String(task.sql), ...extra];
}

export function createEmrActivities(deps: EmrDeps) {
  const client = () => {
    if (!deps.emr) throw new NonRetryableError('this worker has no EMR client: configure AWS region and credentials to use engine emr', 'ConfigError');
    return deps.emr;
  };
  return jobActivities({
    async emrSubmit(input: ExternalJobInput & { cluster?: { providerId?: string } }): Promise<JobRef> {
      const clusterId = (input.cluster?.providerId ?? input.task.clusterId) as string | undefined;
      if (!clusterId) throw new NonRetryableError(`task ${input.task.id} has no EMR cluster: set "clusterId" or "cluster"`, 'ConfigError');
      const name = jobName(input.run.workflowId, input.task.id, 200);
      const step: StepConfig = { Name: name, ActionOnFailure: 'CONTINUE', HadoopJarStep: { Jar: 'command-runner.jar', Args: stepArgs(input.task) } };
      try {
        const { stepId, adopted } = await client().addStepOnce(clusterId, step);
        return { engine: 'emr', name, scope: clusterId, id: stepId, adopted };
      } catch (e) {
        return classify(e);
      }
    },

    async emrPoll(ref: JobRef): Promise<JobStatus> {
      try {
        const step = await client().describeStep(ref.scope, ref.id!);
        const s = step.Status ?? {};
        const state = s.State ?? 'PENDING';
        const fd = s.FailureDetails;
        const message = fd ? [fd.Reason, fd.Message].filter(Boolean).join(': ') + (fd.LogFile ? ` (log: ${fd.LogFile})` : '') : s.StateChangeReason?.Message;
        return {
          state,
          terminal: STEP_TERMINAL.includes(state),
          succeeded: state === 'COMPLETED',
          message: message || undefined,
          facts: { stepId: ref.id, clusterId: ref.scope, ...(fd?.LogFile ? { logFile: fd.LogFile } : {}) },
        };
      } catch (e) {
        return classify(e);
      }
    },

    async emrLogs(ref: JobRef): Promise<{ facts?: Record<string, unknown> }> {
      // Step logs live under the cluster's S3 LogUri; this worker does not read S3 yet.
      try {
        const c = await client().describeCluster(ref.scope);
        return { facts: c.LogUri ? { stepLogs: `${c.LogUri.replace(/\/?$/, '/')}${ref.scope}/steps/${ref.id}/` } : {} };
      } catch {
        return {};
      }
    },

    async emrCancel(ref: JobRef): Promise<{ result: string }> {
      try {
        const r = await client().cancelStep(ref.scope, ref.id!);
        return { result: `${r?.Status ?? 'unknown'}${r?.Reason ? `: ${r.Reason}` : ''}` };
      } catch (e) {
        return classify(e);
      }
    },
  });
}
