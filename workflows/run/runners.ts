/**
 * How one task runs, by its kind's runner type: a timer, an external job's child workflow,
 * a sensor's heartbeating poll activity, or a task activity (local when short and allowed).
 * Each gets the task by reference (the worker loads and renders it) or rendered inline, and
 * answers the task's envelope; the pipeline workflow records what comes back.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  executeChild,
  patched,
  proxyActivities,
  proxyLocalActivities,
  sleep,
  startChild,
} from '@temporalio/workflow';
import type { WorkerActivities } from '../../activities/index.js';
import { toMs } from '../../schemas/duration.js';
import { WaitTask, type TaskActivityName, type TaskWorkflowName } from '../../schemas/kinds.js';
import type { PipelineSpec } from '../../schemas/pipeline.js';
import type { PipelineRunInput, RunContext, TaskActivityInput, TaskEnvelope, TaskRefInput } from '../../schemas/run.js';
import { renderSpecTask, type TaskProfile } from '../../schemas/skeleton.js';
import { externalJob, type ExternalJobRunInput } from '../external-job.js';
import { reconcileJob } from '../reconcile-job.js';

/** The task activities, typed by the worker's own registry. */
type TaskActivities = Pick<WorkerActivities, TaskActivityName>;

/** The child workflows that run tasks, by the name a kind's runner gives. */
const TASK_WORKFLOWS = { externalJob, reconcileJob } satisfies Record<TaskWorkflowName, unknown>;

/** One task about to run: what every runner needs. */
export interface TaskCall {
  id: string;
  profile: TaskProfile;
  run: RunContext;
  input: PipelineRunInput;
  /** The task by reference (the spec stays in the metastore), when the run has one. */
  byRef?: TaskRefInput;
  /** The task rendered: by the metastore activity, or here from the inline spec. */
  rendered(): Promise<TaskActivityInput['task']>;
  heartbeatMs: number;
}

const renderTask = proxyActivities<Pick<WorkerActivities, 'renderTask'>>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '500ms', maximumInterval: '30s' },
  summary: 'metastore',
}).renderTask;

/** A task call for one task of a run. */
export function taskCall(
  id: string,
  profile: TaskProfile,
  c: {
    input: PipelineRunInput;
    run: RunContext;
    params: Record<string, string>;
    position: number;
    heartbeatMs: number;
  },
): TaskCall {
  const { input, run, params } = c;
  const byRef: TaskRefInput | undefined = input.specRef ? { ref: input.specRef, taskId: id, run, params } : undefined;
  return {
    id,
    profile,
    run,
    input,
    byRef,
    heartbeatMs: c.heartbeatMs,
    async rendered() {
      if (byRef) return renderTask(byRef);
      const spec: PipelineSpec | undefined = input.spec;
      const task = spec?.tasks[c.position];
      try {
        if (!spec || !task) throw new Error('the run has neither its spec inline nor a reference to it');
        return renderSpecTask(spec, task, run, params);
      } catch (e) {
        throw ApplicationFailure.create({
          type: 'TemplateError',
          nonRetryable: true,
          message: `${id}: ${e instanceof Error ? e.message : String(e)}`,
          details: [{ attempt: 1 }],
        });
      }
    },
  };
}

function summary(t: TaskCall): string {
  return `${t.id} (${t.profile.label})`;
}

function retryOf(p: TaskProfile) {
  return {
    maximumAttempts: p.retry.attempts,
    initialInterval: p.retry.initialIntervalMs,
    backoffCoefficient: p.retry.backoff,
    maximumInterval: p.retry.maxIntervalMs,
  };
}

/** `wait`: a durable timer. */
export async function runTimer(t: TaskCall): Promise<TaskEnvelope> {
  const task = WaitTask.safeParse(await t.rendered());
  if (!task.success)
    throw ApplicationFailure.create({
      type: 'TemplateError',
      nonRetryable: true,
      message: `${t.id}: ${task.error.issues[0]?.message ?? 'not a wait task'}`,
      details: [{ attempt: 1 }],
    });
  const { duration } = task.data;
  await sleep(toMs(duration), { summary: `${t.id}: wait` });
  return { output: {}, attempt: 1 };
}

/**
 * An external job: one child per job keeps its polls out of the run's history and cancels
 * with the run. With handover the child outlives this execution (ABANDON: continue-as-new
 * closes it) and reports its end to the run by signal; cancelling the run still cancels it
 * explicitly. `started` learns the child's workflow id once it runs.
 */
export async function runChild(
  t: TaskCall,
  workflow: TaskWorkflowName,
  o: { workflowId: string; handover: boolean; runWorkflowId: string; started: (workflowId: string) => void },
): Promise<TaskEnvelope> {
  const jobCanAfter = t.input.options?.jobContinueAsNewAfterEvents;
  const arg: ExternalJobRunInput = {
    task: await t.rendered(),
    run: t.run,
    timeoutMs: t.profile.timeoutMs,
    heartbeatTimeoutMs: t.heartbeatMs,
    ...(jobCanAfter ? { continueAsNewAfterEvents: jobCanAfter } : {}),
    ...(o.handover ? { reportTo: { workflowId: o.runWorkflowId, taskId: t.id } } : {}),
  };
  const options = {
    workflowId: o.workflowId,
    parentClosePolicy: o.handover ? ParentClosePolicy.ABANDON : ParentClosePolicy.REQUEST_CANCEL,
    cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
    staticSummary: summary(t),
  };
  const fn = TASK_WORKFLOWS[workflow];
  if (!o.handover) return executeChild(fn, { ...options, args: [arg] });
  const child = await startChild(fn, { ...options, args: [arg] });
  o.started(o.workflowId);
  return child.result();
}

/**
 * A sensor: its whole poll loop runs in one heartbeating activity (no history per check).
 * It is read-only, so continue-as-new stops it at once (through `scope`) and starts it
 * again with its first start and checks carried; `running` learns the scope that stops it.
 */
export async function runSensor(
  t: TaskCall,
  activity: TaskActivityName,
  sensor: { since: number; polls: number },
  running: (scope: CancellationScope) => void,
): Promise<TaskEnvelope> {
  const act = proxyActivities<TaskActivities>({
    startToCloseTimeout: '366d',
    heartbeatTimeout: t.heartbeatMs,
    retry: retryOf(t.profile),
    cancellationType: ActivityCancellationType.TRY_CANCEL,
    summary: summary(t),
  })[activity];
  const arg = t.byRef ? { ...t.byRef, sensor } : { task: await t.rendered(), run: t.run, sensor };
  const scope = new CancellationScope();
  running(scope);
  return scope.run(() => act(arg));
}

/**
 * A task activity. A run reports cancelled only after its activities stopped, so it waits
 * for their cancellation. Short kinds free of I/O run as local activities when the run
 * allows it (no round trip through the activity task queue).
 */
export async function runActivity(
  t: TaskCall,
  runner: { activity: TaskActivityName; heartbeat?: boolean; local?: boolean },
): Promise<TaskEnvelope> {
  if (runner.local && t.input.options?.localShortTasks && patched('local-short-tasks-v1')) {
    const local = proxyLocalActivities<TaskActivities>({
      startToCloseTimeout: t.profile.timeoutMs,
      retry: retryOf(t.profile),
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      summary: summary(t),
    })[runner.activity];
    return local(t.byRef ?? { task: await t.rendered(), run: t.run });
  }
  const act = proxyActivities<TaskActivities>({
    startToCloseTimeout: t.profile.timeoutMs,
    heartbeatTimeout: runner.heartbeat ? t.heartbeatMs : undefined,
    retry: retryOf(t.profile),
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    summary: summary(t),
  })[runner.activity];
  return act(t.byRef ?? { task: await t.rendered(), run: t.run });
}
