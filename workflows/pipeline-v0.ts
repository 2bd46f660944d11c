/**
 * pipelineRun as it ran before scale-v1 (spec inline, whole run state in the workflow, the
 * trigger rules of LEGACY_TRIGGER_TABLE). Kept unchanged so that runs recorded before
 * replay exactly (test/histories): workflows/pipeline.ts sends them here. Do not change
 * its control flow; new behaviour belongs in pipeline.ts.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import type { WorkerActivities } from '../activities/index.js';
import { externalJob } from './external-job.js';
import { describeFailure } from './failures.js';
import { Duration, toMs } from '../schemas/duration.js';
import { TASK_KINDS, sqlDialectAt, type TaskActivityName } from '../schemas/kinds.js';
import { paramDecls } from '../schemas/params.js';
import { effectiveTask, type TaskSpec } from '../schemas/pipeline.js';
import {
  isCarriedV1,
  type PipelineRunInput,
  type RunState,
  type TaskActivityInput,
  type TaskEnvelope,
  type TaskState,
  type TaskStatus,
} from '../schemas/run.js';
import { renderDeep, renderTask, runVariables } from '../schemas/template.js';
import { packState, unpackState } from './carry.js';
import { LEGACY_TRIGGER_TABLE, downstreamIndex, isFinal, plan, selectTasks, type PlanNode } from './dag.js';
import { stateQuery } from './run-queries.js';

const SCHEDULED_START = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);

const { recordRun } = proxyActivities<Pick<WorkerActivities, 'recordRun'>>({
  startToCloseTimeout: '30s',
  retry: { maximumAttempts: 5, initialInterval: '500ms' },
  summary: 'record run in the metastore',
});

/** Best effort: the index must not fail a run; the next write repairs a lost one. */
async function indexRun(state: RunState, input: PipelineRunInput, error?: string) {
  if (!patched('runs-index-v1')) return;
  try {
    await CancellationScope.nonCancellable(() =>
      recordRun({ state, specVersion: input.specVersion, pipelineVersion: input.pipelineVersion, error }),
    );
  } catch {
    /* logged by the SDK as an activity failure */
  }
}

const DEFAULT_HEARTBEAT_MS = 30_000;
const DEFAULT_CONTINUE_AS_NEW_AFTER = 8_000;

export async function pipelineRunV0(input: PipelineRunInput): Promise<RunState> {
  const info = workflowInfo();
  const spec = input.spec;
  if (!spec)
    throw ApplicationFailure.create({
      type: 'SpecMissing',
      nonRetryable: true,
      message: 'this run was started without its spec inline, which pipelineRunV0 needs: start it as pipelineRun',
    });
  const nowIso = () => new Date().toISOString();
  const carried = input.carried;
  const state: RunState = (carried && !isCarriedV1(carried) && unpackState(carried)) || {
    runId: info.workflowId,
    workflowId: info.workflowId,
    pipelineId: spec.id,
    tenant: input.tenant,
    trigger: input.trigger,
    logicalDate: input.logicalDate ?? scheduledTime() ?? info.startTime.toISOString(),
    status: 'running',
    startedAt: nowIso(),
    tasks: Object.fromEntries(spec.tasks.map((t) => [t.id, { status: 'pending', attempts: 0 } satisfies TaskState])),
    continuations: 0,
  };
  setHandler(stateQuery, () => state);

  const taskById = new Map(spec.tasks.map((t) => [t.id, t]));
  const nodes: PlanNode[] = spec.tasks.map((t) => ({
    id: t.id,
    needs: t.needs,
    trigger: effectiveTask(spec, t).trigger,
  }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const down = downstreamIndex(nodes);

  if (!input.carried) {
    applySelection(input, state, nodes, nowIso());
    await indexRun(state, input);
  }

  const vars = runVariables({
    logicalDate: state.logicalDate,
    runId: state.runId,
    pipelineId: spec.id,
    tenant: state.tenant,
    trigger: String(state.trigger),
    params: input.params ?? {},
  });
  // Typed params: SQL fields take params only through the literal/ident filters. Runs
  // recorded before keep rendering as they did (their specs had no filters to apply).
  const typedParams = patched('typed-params-v1');
  const decls = typedParams ? paramDecls(spec.params ?? {}) : {};
  const heartbeatMs = input.options?.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_MS;
  const canAfter = input.options?.continueAsNewAfterEvents ?? DEFAULT_CONTINUE_AS_NEW_AFTER;

  const queue: string[] = [];
  const queued = new Set<string>();
  const inflight = new Map<string, Promise<void>>();
  let finished: string[] = [];
  const statusOf = (id: string): TaskStatus => (queued.has(id) ? 'running' : state.tasks[id].status);

  const finish = (id: string, patch: Partial<TaskState>) => {
    Object.assign(state.tasks[id], patch, { endedAt: nowIso() });
    finished.push(id);
  };

  const launch = (id: string) => {
    const task = taskById.get(id);
    if (!task) throw new Error(`task ${id} is not in the spec`);
    const ts = state.tasks[id];
    ts.status = 'running';
    ts.startedAt = nowIso();
    ts.attempts = 0;
    const p = runOne(task)
      .then(
        (r) => finish(id, { status: 'success', attempts: r.attempt, output: r.output, error: undefined }),
        (err) => {
          const f = describeFailure(err);
          finish(id, {
            status: isCancellation(err) ? 'cancelled' : 'failed',
            attempts: f.attempt,
            error: f.message,
            errorType: f.type,
            output: f.output,
          });
        },
      )
      .finally(() => inflight.delete(id));
    inflight.set(id, p);
  };

  const runOne = async (task: TaskSpec): Promise<TaskEnvelope> => {
    const kind = TASK_KINDS[task.kind];
    const eff = effectiveTask(spec, task);
    const fields = { ...task, needs: undefined, retry: undefined };
    const taskVars = { ...vars, task_id: task.id };
    let rendered: Record<string, unknown>;
    if (typedParams) {
      try {
        rendered = renderTask(fields, taskVars, decls, (path) => sqlDialectAt(task, path));
      } catch (e) {
        throw ApplicationFailure.create({
          type: 'TemplateError',
          nonRetryable: true,
          message: `${task.id}: ${e instanceof Error ? e.message : String(e)}`,
          details: [{ attempt: 1 }],
        });
      }
    } else rendered = renderDeep(fields, taskVars);
    const runner = kind.route?.(rendered) ?? kind.run;
    const run = {
      runId: state.runId,
      workflowId: state.workflowId,
      pipelineId: state.pipelineId,
      tenant: state.tenant,
      trigger: state.trigger,
      logicalDate: state.logicalDate,
    };
    if (runner.type === 'timer') {
      await sleep(durationField(task.id, rendered, 'duration'), { summary: `${task.id}: wait` });
      return { output: {}, attempt: 1 };
    }
    if (runner.type === 'child') {
      // One child per external job keeps its polls out of this history and cancels with the run.
      return executeChild(externalJob, {
        workflowId: `${state.workflowId}/task/${task.id}`,
        args: [{ task: taskOf(rendered), run, timeoutMs: toMs(eff.timeout), heartbeatTimeoutMs: heartbeatMs }],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
        staticSummary: `${task.id} (${task.kind}${typeof task.engine === 'string' ? ` on ${task.engine}` : ''})`,
      });
    }
    const acts = proxyActivities<Pick<WorkerActivities, TaskActivityName>>({
      startToCloseTimeout: toMs(eff.timeout),
      heartbeatTimeout: runner.heartbeat ? heartbeatMs : undefined,
      retry: {
        maximumAttempts: eff.retry.attempts,
        initialInterval: toMs(eff.retry.initialInterval),
        backoffCoefficient: eff.retry.backoff,
        maximumInterval: toMs(eff.retry.maxInterval),
      },
      summary: `${task.id} (${task.kind}${typeof task.engine === 'string' ? ` on ${task.engine}` : ''})`,
    });
    const activityInput: TaskActivityInput = { task: taskOf(rendered), run };
    if (runner.type === 'poll') {
      // A sensor: one short check per poll, durable timers in between (no busy activity).
      const interval = durationField(task.id, rendered, 'pollInterval');
      const deadline = Date.now() + durationField(task.id, rendered, 'waitTimeout');
      for (let polls = 1; ; polls++) {
        const r = await acts[runner.activity](activityInput);
        if (r.output.done) return { output: { ...r.output, polls }, attempt: 1 };
        const left = deadline - Date.now();
        if (left <= 0)
          throw ApplicationFailure.create({
            type: 'SensorTimeout',
            nonRetryable: true,
            message: `${task.id}: gave up after ${polls} checks: ${typeof r.output.reason === 'string' ? r.output.reason : 'condition not met'}`,
            details: [{ attempt: 1 }],
          });
        await sleep(Math.min(interval, left), { summary: `${task.id}: next check` });
      }
    }
    return acts[runner.activity](activityInput);
  };

  let candidates: Iterable<string> = nodes.map((n) => n.id);
  let draining = false;
  let sinceDetails = 0;
  try {
    for (;;) {
      const p = plan(byId, down, statusOf, candidates, LEGACY_TRIGGER_TABLE);
      for (const s of p.settle) Object.assign(state.tasks[s.id], { status: s.status, endedAt: nowIso() });
      for (const id of p.start) {
        queue.push(id);
        queued.add(id);
      }
      draining ||= shouldContinueAsNew(canAfter);
      while (!draining && inflight.size < spec.maxParallel) {
        const id = queue.shift();
        if (id === undefined) break;
        queued.delete(id);
        launch(id);
      }
      if (inflight.size === 0) {
        if (queue.length === 0) break;
        // History is getting long: carry the DAG state into a fresh execution.
        state.continuations++;
        await condition(allHandlersFinished);
        return await continueAsNew<typeof pipelineRunV0>({ ...input, carried: packState(state), prior: undefined });
      }
      if (sinceDetails++ % 50 === 0) setCurrentDetails(progressMarkdown(state));
      await condition(() => finished.length > 0);
      candidates = finishedDownstream();
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await CancellationScope.nonCancellable(async () => {
      await Promise.all(inflight.values());
    });
    for (const ts of Object.values(state.tasks))
      if (!isFinal(ts.status)) Object.assign(ts, { status: 'cancelled', endedAt: ts.startedAt ? nowIso() : undefined });
    state.status = 'cancelled';
    state.endedAt = nowIso();
    setCurrentDetails(progressMarkdown(state));
    await indexRun(state, input);
    throw err;
  }

  // Anything still pending could never be decided (cannot happen for a valid DAG).
  for (const [id, ts] of Object.entries(state.tasks))
    if (!isFinal(ts.status)) finish(id, { status: 'upstream_failed', error: 'never became ready' });

  const bad = Object.entries(state.tasks).filter(([, t]) => t.status === 'failed' || t.status === 'upstream_failed');
  state.status = bad.length ? 'failed' : 'success';
  state.endedAt = nowIso();
  setCurrentDetails(progressMarkdown(state));
  if (bad.length) {
    const failed = bad.filter(([, t]) => t.status === 'failed');
    const message = `pipeline ${spec.id} failed: ${failed.map(([id, t]) => `${id}: ${t.error ?? 'failed'}`).join('; ') || 'upstream failures'}`;
    await indexRun(state, input, message);
    throw ApplicationFailure.create({ type: 'PipelineFailed', nonRetryable: true, message, details: [state] });
  }
  await indexRun(state, input);
  return state;

  function finishedDownstream(): string[] {
    const out: string[] = [];
    for (const id of finished) out.push(...(down.get(id) ?? []));
    finished = [];
    return out;
  }
}

/** A scheduled run's logical date is the time the schedule fired for (backfills too). */
export function scheduledTime(): string | undefined {
  const t = workflowInfo().typedSearchAttributes.get(SCHEDULED_START);
  return t ? new Date(t).toISOString() : undefined;
}

function shouldContinueAsNew(after: number): boolean {
  const i = workflowInfo();
  return i.continueAsNewSuggested || i.historyLength >= after;
}

/** Marks tasks outside `only` as excluded and takes over prior successes (repair). */
function applySelection(input: PipelineRunInput, state: RunState, nodes: PlanNode[], now: string) {
  if (input.only?.length) {
    const chosen = selectTasks(nodes, input.only, input.withUpstream ?? false);
    for (const n of nodes)
      if (!chosen.has(n.id)) Object.assign(state.tasks[n.id], { status: 'excluded', endedAt: now });
  }
  if (input.prior) {
    for (const [id, prev] of Object.entries(input.prior.tasks)) {
      const ts = state.tasks[id];
      if (!ts || prev.status !== 'success' || ts.status !== 'pending') continue;
      Object.assign(ts, {
        status: 'success',
        attempts: 0,
        output: prev.output,
        reusedFrom: prev.reusedFrom ?? input.prior.runId,
        startedAt: prev.startedAt,
        endedAt: prev.endedAt,
      });
    }
  }
}

function progressMarkdown(state: RunState): string {
  const counts: Record<string, number> = {};
  for (const t of Object.values(state.tasks)) counts[t.status] = (counts[t.status] ?? 0) + 1;
  const line = Object.entries(counts)
    .map(([s, n]) => `${s}: ${n}`)
    .join(' · ');
  return `**${state.pipelineId}** — ${state.status}\n\n${line}`;
}

/** A rendered task keeps its spec's id and kind (names, never templates). */
function taskOf(rendered: Record<string, unknown>, task?: TaskSpec): TaskActivityInput['task'] {
  return { ...rendered, id: String(task?.id ?? rendered.id), kind: String(task?.kind ?? rendered.kind) };
}

/** A duration field of a rendered task, in ms; a value that is not one fails the task, not the workflow. */
function durationField(taskId: string, rendered: Record<string, unknown>, field: string): number {
  const d = Duration.safeParse(rendered[field]);
  if (!d.success)
    throw ApplicationFailure.create({
      type: 'TemplateError',
      nonRetryable: true,
      message: `${taskId}: ${field} is not a duration`,
      details: [{ attempt: 1 }],
    });
  return toMs(d.data);
}
