/**
 * pipelineRun: interprets one pipeline spec as a DAG. The planner (dag.ts) decides what
 * is ready; this file dispatches tasks, records their state and answers queries.
 * Deterministic: no I/O, time comes from the workflow clock.
 *
 * At any size (scale-v1): the spec comes by reference (SpecRef) as skeleton pages of
 * bounded size, and each task activity loads and renders its own task; per-task state
 * goes to the metastore as batched deltas; what the workflow answers (queries, result,
 * failure details) and carries across continue-as-new is bounded (RUN_ANSWER_LIMITS, one
 * character per task). Runs recorded before scale-v1 replay through pipeline-v0.ts.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import { jobFinishedSignal, type JobFinished } from './job-messages.js';
import { toMs } from '../schemas/duration.js';
import {
  cancelNotifies,
  NOTIFY_LIMITS,
  type NotifyInput,
  type NotifyRuleRef,
  type RunOutcome,
} from '../schemas/notify.js';
import type { PipelineSpec } from '../schemas/pipeline.js';
import {
  RUN_ANSWER_LIMITS,
  type CarriedV1,
  type PipelineRunInput,
  type RunContext,
  type RunState,
  type SpecRef,
  type TaskActivityInput,
  type TaskDelta,
  type TaskRefInput,
  type TaskState,
  type TaskStatus,
} from '../schemas/run.js';
import { renderSpecTask, skeletonPage, triggerAt, type SkeletonPage, type TaskProfile } from '../schemas/skeleton.js';
import type { RunRecord } from '../schemas/run.js';
import { downstreamIndex, isFinal, plan, selectTasks, type PlanNode } from './dag.js';
import { describeFailure, pipelineRunV0, scheduledTime, type TaskResultEnvelope } from './pipeline-v0.js';
import { liveQuery, stateQuery, tasksQuery } from './run-queries.js';

export { stateQuery, tasksQuery, liveQuery };
export type { TaskResultEnvelope };

const DEFAULT_HEARTBEAT_MS = 30_000;
const DEFAULT_CONTINUE_AS_NEW_AFTER = 8_000;
/** Deltas go to the metastore in batches of at most this many tasks or bytes, or after this long. */
const FLUSH = { tasks: 500, bytes: 256 * 1024, everyMs: 2000 };

/** One character per status in what a run carries across continue-as-new. */
const STATUSES: TaskStatus[] = [
  'pending',
  'running',
  'success',
  'failed',
  'skipped',
  'upstream_failed',
  'cancelled',
  'excluded',
];
const CODES = 'prsfkucx';

interface Meta {
  recordRun(r: RunRecord): Promise<void>;
  recordTasks(r: { runId: string; deltas: TaskDelta[] }): Promise<void>;
  loadSpecPage(a: { ref: SpecRef; from: number; repairOf?: string }): Promise<SkeletonPage & { reused?: string[] }>;
  renderTask(i: TaskRefInput): Promise<TaskActivityInput['task']>;
}

// The metastore is part of the run's durability: its writes retry until it answers.
const meta = proxyActivities<Meta>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '500ms', maximumInterval: '30s' },
  summary: 'metastore',
});

export async function pipelineRun(input: PipelineRunInput): Promise<RunState> {
  // Runs recorded before scale-v1 (and their continuations) keep their own code path.
  if (input.carried && !('v' in input.carried)) return pipelineRunV0(input);
  if (!input.specRef && !input.carried && !patched('scale-v1')) return pipelineRunV0(input);
  return pipelineRunV1(input);
}

interface Skeleton {
  pipelineId: string;
  maxParallel: number;
  ids: string[];
  nodes: PlanNode[];
  profileOf: number[];
  profiles: TaskProfile[];
  reused: Set<string>;
  /** The spec's notify rules and SLA (specs without rules: absent). */
  notify?: { rules: NotifyRuleRef[]; slaMs?: number };
}

/** The spec's skeleton: from the inline spec, or page by page from the metastore. */
async function loadSkeleton(input: PipelineRunInput, repairOf?: string): Promise<Skeleton> {
  const sk: Skeleton = {
    pipelineId: '',
    maxParallel: 16,
    ids: [],
    nodes: [],
    profileOf: [],
    profiles: [],
    reused: new Set(),
  };
  const profileIndex = new Map<string, number>();
  const add = (page: SkeletonPage & { reused?: string[] }) => {
    sk.pipelineId = page.pipelineId;
    sk.maxParallel = page.maxParallel;
    if (page.notify) sk.notify = page.notify;
    const local = page.profiles.map((p) => {
      const key = JSON.stringify(p);
      let i = profileIndex.get(key);
      if (i === undefined) {
        i = sk.profiles.length;
        sk.profiles.push(p);
        profileIndex.set(key, i);
      }
      return i;
    });
    for (const [id, needs, trigger, profile] of page.nodes) {
      sk.ids.push(id);
      sk.nodes.push({ id, needs, trigger: triggerAt(trigger) });
      sk.profileOf.push(local[profile]);
    }
    for (const id of page.reused ?? []) sk.reused.add(id);
  };
  if (input.spec) {
    add(skeletonPage(input.spec, 0, Infinity));
    return sk;
  }
  for (let from: number | undefined = 0; from !== undefined;) {
    const page: SkeletonPage & { reused?: string[] } = await meta.loadSpecPage({ ref: input.specRef!, from, repairOf });
    add(page);
    from = page.next;
  }
  return sk;
}

async function pipelineRunV1(input: PipelineRunInput): Promise<RunState> {
  const info = workflowInfo();
  const carried = input.carried as CarriedV1 | undefined;
  // External jobs outlive an execution: continue-as-new hands running ones over instead of waiting for them.
  const handover = patched('handover-jobs-v1');
  const nowIso = () => new Date().toISOString();
  const header: CarriedV1['header'] = carried?.header ?? {
    runId: info.workflowId,
    workflowId: info.workflowId,
    pipelineId: input.spec?.id ?? input.specRef?.pipelineId ?? '',
    tenant: input.tenant,
    trigger: input.trigger,
    logicalDate: input.logicalDate ?? scheduledTime() ?? info.startTime.toISOString(),
    status: 'running',
    startedAt: nowIso(),
    continuations: 0,
  };
  const failures = carried?.failures ?? [];
  /** What notify rules need to know of the run (bounded; carried across continue-as-new). */
  const outcome: Pick<RunOutcome, 'exhausted' | 'warned'> = carried?.notify ?? { exhausted: [], warned: [] };
  const run: RunContext = {
    runId: header.runId,
    workflowId: header.workflowId,
    pipelineId: header.pipelineId,
    tenant: header.tenant,
    trigger: header.trigger,
    logicalDate: header.logicalDate,
  };
  const params = input.params ?? {};

  // Per-task state: a status code per task (all tasks), full details for the tasks this
  // execution touched, and the deltas the metastore has not acknowledged yet.
  let status: number[] = [];
  const counts = new Array<number>(STATUSES.length).fill(0);
  const details = new Map<string, TaskState>();
  const deltas = new Map<string, TaskDelta>();
  let flushing: TaskDelta[] = [];
  let sk: Skeleton = {
    pipelineId: header.pipelineId,
    maxParallel: 1,
    ids: [],
    nodes: [],
    profileOf: [],
    profiles: [],
    reused: new Set(),
  };
  let index = new Map<string, number>();

  const answer = (): RunState => boundedState(header, sk.ids, status, details, counts, failures);
  setHandler(stateQuery, answer);
  setHandler(tasksQuery, ({ after, limit } = {}) => {
    const n = Math.max(1, Math.min(limit ?? RUN_ANSWER_LIMITS.page, RUN_ANSWER_LIMITS.page));
    const from = after === undefined ? 0 : (index.get(after) ?? -1) + 1;
    const page = sk.ids
      .slice(from, from + n)
      .map(
        (id, k) => [id, details.get(id) ?? { status: STATUSES[status[from + k]], attempts: 0 }] as [string, TaskState],
      );
    return { tasks: page, ...(from + n < sk.ids.length ? { next: sk.ids[from + n - 1] } : {}) };
  });
  setHandler(liveQuery, () => {
    const tasks: Record<string, TaskState> = {};
    for (const d of [...flushing, ...deltas.values()]) tasks[d.id] = stripId(d);
    for (const [id, t] of details) if (t.status === 'running') tasks[id] = t;
    return { status: header.status, counts: countsObject(counts), tasks };
  });

  const seedRecord = (extra: Partial<RunRecord> = {}): RunRecord => ({
    state: { ...answerHeader(), tasks: {} },
    specVersion: input.specVersion,
    pipelineVersion: input.pipelineVersion,
    ...extra,
  });
  const answerHeader = () => ({ ...header, counts: countsObject(counts), taskCount: sk.ids.length });

  try {
    // A run loads only its own tenant's specs, whatever a start made around the API names.
    if (input.specRef && input.specRef.tenant !== input.tenant)
      throw ApplicationFailure.create({
        type: 'SpecNotFound',
        nonRetryable: true,
        message: `pipeline ${input.specRef.pipelineId} is not one of tenant ${input.tenant}'s`,
      });
    sk = await loadSkeleton(input, carried ? undefined : input.repairOf);
  } catch (err) {
    if (isCancellation(err)) {
      // Cancelled before its tasks were known (a queued run cancelled as it starts): the
      // metastore still says running, so it learns of the cancel before the run closes.
      if (patched('cancel-before-load-v1')) {
        Object.assign(header, { status: 'cancelled', endedAt: nowIso() });
        await CancellationScope.nonCancellable(() => meta.recordRun(seedRecord()));
      }
      throw err;
    }
    const f = describeFailure(err);
    Object.assign(header, { status: 'failed', endedAt: nowIso() });
    const message = `pipeline ${header.pipelineId} cannot start: ${f.message}`;
    await CancellationScope.nonCancellable(() => meta.recordRun(seedRecord({ error: message })));
    throw ApplicationFailure.create({ type: 'PipelineFailed', nonRetryable: true, message, details: [answer()] });
  }
  index = new Map(sk.ids.map((id, i) => [id, i]));
  status = sk.ids.map((_, i) => (carried ? Math.max(0, CODES.indexOf(carried.statuses[i] ?? 'p')) : 0));
  for (const s of status) counts[s]++;
  const byId = new Map(sk.nodes.map((n) => [n.id, n]));
  const down = downstreamIndex(sk.nodes);
  if (!header.pipelineId) header.pipelineId = run.pipelineId = sk.pipelineId;

  const setStatus = (id: string, s: TaskStatus, patch: Partial<TaskState> = {}) => {
    const i = index.get(id)!;
    counts[status[i]]--;
    status[i] = STATUSES.indexOf(s);
    counts[status[i]]++;
    const t: TaskState = { ...(details.get(id) ?? { attempts: 0 }), ...patch, status: s };
    if (t.error && t.error.length > RUN_ANSWER_LIMITS.errorChars)
      t.error = `${t.error.slice(0, RUN_ANSWER_LIMITS.errorChars)}…`;
    details.set(id, t);
    deltas.set(id, { id, ...t });
    if ((s === 'failed' || s === 'cancelled') && failures.length < RUN_ANSWER_LIMITS.failures && t.error)
      failures.push({ id, error: t.error.slice(0, 500), ...(t.errorType ? { type: t.errorType } : {}) });
  };

  // ---- deltas to the metastore: one write in flight, batches bounded in tasks and bytes
  let inFlightFlush: Promise<void> | undefined;
  let lastFlush = Date.now();
  const takeBatch = (): TaskDelta[] => {
    const batch: TaskDelta[] = [];
    let bytes = 0;
    for (const [id, d] of deltas) {
      const size = JSON.stringify(d).length;
      if (batch.length && (batch.length >= FLUSH.tasks || bytes + size > FLUSH.bytes)) break;
      batch.push(d);
      bytes += size;
      deltas.delete(id);
    }
    return batch;
  };
  const flushOnce = () => {
    const batch = takeBatch();
    if (!batch.length) return;
    flushing = batch;
    lastFlush = Date.now();
    inFlightFlush = CancellationScope.nonCancellable(() =>
      meta.recordTasks({ runId: header.runId, deltas: batch }),
    ).then(
      () => {
        flushing = [];
        inFlightFlush = undefined;
      },
      () => {
        // Put back what no newer delta replaced; the next flush sends it again.
        for (const d of batch) if (!deltas.has(d.id)) deltas.set(d.id, d);
        flushing = [];
        inFlightFlush = undefined;
      },
    );
  };
  const maybeFlush = () => {
    if (inFlightFlush || !deltas.size) return;
    if (deltas.size < FLUSH.tasks && Date.now() - lastFlush < FLUSH.everyMs) return;
    flushOnce();
  };
  const flushAll = async () => {
    for (;;) {
      if (inFlightFlush) await inFlightFlush;
      if (!deltas.size) return;
      flushOnce();
    }
  };

  // ---- a fresh run: selection, reuse (repair), its row and task rows in the metastore
  if (!carried) {
    if (input.only?.length) {
      const chosen = selectTasks(sk.nodes, input.only, input.withUpstream ?? false);
      const now = nowIso();
      for (const id of sk.ids) if (!chosen.has(id)) setStatus(id, 'excluded', { endedAt: now });
    }
    for (const [id, prev] of Object.entries(input.prior?.tasks ?? {}))
      if (index.has(id) && prev.status === 'success' && STATUSES[status[index.get(id)!]] === 'pending')
        setStatus(id, 'success', {
          attempts: 0,
          output: prev.output,
          reusedFrom: prev.reusedFrom ?? input.prior!.runId,
          startedAt: prev.startedAt,
          endedAt: prev.endedAt,
        });
    for (const id of sk.reused)
      if (STATUSES[status[index.get(id)!]] === 'pending')
        setStatus(id, 'success', { attempts: 0, reusedFrom: input.repairOf });
    await CancellationScope.nonCancellable(() =>
      meta.recordRun(seedRecord({ seed: input.specRef ? { ref: input.specRef } : { ids: sk.ids } })),
    );
    // An SLA: a notifier that waits until the deadline and then looks at the run (never blocks it).
    if (
      sk.notify?.slaMs !== undefined &&
      sk.notify.rules.some((r) => r.on.includes('sla_missed')) &&
      patched('notify-v1')
    )
      await startNotifier({ phase: 'sla', startedAt: header.startedAt, slaMs: sk.notify.slaMs });
  }

  const heartbeatMs = input.options?.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_MS;
  const canAfter = input.options?.continueAsNewAfterEvents ?? DEFAULT_CONTINUE_AS_NEW_AFTER;
  const sensorsCarried = { ...(carried?.sensors ?? {}) };

  const queue: string[] = [];
  const queued = new Set<string>();
  const inflight = new Map<string, Promise<void>>();
  /** Sensors stopped to continue as new: pending again, their deadline and checks carried over. */
  const parked = new Map<string, { since: number; polls: number }>();
  const sensorScopes = new Map<string, CancellationScope>();
  /** External jobs running as started children (this execution's, and those handed over to it): task id → workflow id. */
  const childIds = new Map<string, string>(Object.entries(carried?.jobs ?? {}));
  /** How those jobs ended, as they reported it (jobFinished). */
  const jobResults = new Map<string, JobFinished>(Object.entries(carried?.jobResults ?? {}));
  setHandler(jobFinishedSignal, (m) => {
    // inflight too: a fast job's report can come in the same activation as its start.
    if (childIds.has(m.taskId) || inflight.has(m.taskId)) jobResults.set(m.taskId, m);
  });
  /** When each running sensor started (its deadline derives from it) and its checks before this execution. */
  const parkInfo = new Map<string, { since: number; polls: number }>();
  let finished: string[] = [];
  const statusOf = (id: string): TaskStatus => (queued.has(id) ? 'running' : STATUSES[status[index.get(id)!]]);

  const launch = (id: string, handedOverJob?: string) => {
    const i = index.get(id)!;
    const profile = sk.profiles[sk.profileOf[i]];
    if (!handedOverJob) setStatus(id, 'running', { startedAt: nowIso(), attempts: 0, endedAt: undefined });
    const p = (handedOverJob ? awaitJob(id, handedOverJob) : runOne(id, profile))
      .then(
        (r) => {
          parked.delete(id);
          const warned = (r.output?.checks as { warned?: string[] } | undefined)?.warned;
          if (sk.notify && warned?.length && outcome.warned.length < NOTIFY_LIMITS.listed)
            outcome.warned.push({ task: id, checks: warned.slice(0, NOTIFY_LIMITS.listed) });
          setStatus(id, 'success', {
            attempts: r.attempt,
            output: r.output,
            error: undefined,
            errorType: undefined,
            endedAt: nowIso(),
          });
        },
        (err) => {
          if (parked.has(id) && isCancellation(err)) {
            setStatus(id, 'pending', { startedAt: undefined });
            return;
          }
          const f = describeFailure(err);
          // Retries exhausted: it failed on its last allowed attempt (not cut short as non-retryable).
          if (
            sk.notify &&
            !isCancellation(err) &&
            f.attempt >= profile.retry.attempts &&
            outcome.exhausted.length < NOTIFY_LIMITS.listed
          )
            outcome.exhausted.push({ task: id, attempts: f.attempt });
          setStatus(id, isCancellation(err) ? 'cancelled' : 'failed', {
            attempts: f.attempt,
            error: f.message,
            errorType: f.type,
            output: f.output,
            endedAt: nowIso(),
          });
        },
      )
      .finally(() => {
        inflight.delete(id);
        sensorScopes.delete(id);
        childIds.delete(id);
        jobResults.delete(id);
        finished.push(id);
      });
    inflight.set(id, p);
  };

  /** A job an earlier execution started: its end comes as its jobFinished signal; a cancel is passed on to it. */
  const awaitJob = async (id: string, workflowId: string): Promise<TaskResultEnvelope> => {
    try {
      await condition(() => jobResults.has(id));
    } catch (err) {
      if (!isCancellation(err)) throw err;
      await CancellationScope.nonCancellable(async () => {
        const asked = await getExternalWorkflowHandle(workflowId)
          .cancel()
          .then(
            () => true,
            () => false, // it has closed already
          );
        // It stops the job in its own cleanup, then reports; the run ends cancelled after that.
        if (asked) await condition(() => jobResults.has(id), '10m');
      });
      throw err;
    }
    const m = jobResults.get(id)!;
    if (m.ok) return m.result as TaskResultEnvelope;
    if (m.cancelled) throw new CancelledFailure(m.message ?? 'cancelled');
    throw ApplicationFailure.create({
      type: m.type,
      nonRetryable: true,
      message: m.message ?? 'the external job failed',
      details: [{ attempt: m.attempt ?? 1, ...(m.output ? { output: m.output } : {}) }],
    });
  };

  const runOne = async (id: string, p: TaskProfile): Promise<TaskResultEnvelope> => {
    const summary = `${id} (${p.label})`;
    const byRef: TaskRefInput | undefined = input.specRef ? { ref: input.specRef, taskId: id, run, params } : undefined;
    const rendered = async (): Promise<TaskActivityInput['task']> => {
      if (byRef) return meta.renderTask(byRef);
      const spec = input.spec as PipelineSpec;
      const task = spec.tasks[index.get(id)!];
      try {
        return renderSpecTask(spec, task, run, params) as TaskActivityInput['task'];
      } catch (e) {
        throw ApplicationFailure.create({
          type: 'TemplateError',
          nonRetryable: true,
          message: `${id}: ${(e as Error).message}`,
          details: [{ attempt: 1 }],
        });
      }
    };
    const runner = p.runner;
    if (runner.type === 'timer') {
      const t = await rendered();
      await sleep(toMs(t.duration as string | number), { summary: `${id}: wait` });
      return { output: {}, attempt: 1 };
    }
    if (runner.type === 'child') {
      const t = await rendered();
      const workflowId = `${header.workflowId}/task/${id}`;
      // One child per external job keeps its polls out of this history and cancels with the run.
      // With handover the child outlives this execution (ABANDON: continue-as-new closes it) and
      // reports its end to the run; cancelling the run still cancels it explicitly.
      const options = {
        workflowId,
        args: [
          {
            task: t,
            run,
            timeoutMs: p.timeoutMs,
            heartbeatTimeoutMs: heartbeatMs,
            ...(input.options?.jobContinueAsNewAfterEvents
              ? { continueAsNewAfterEvents: input.options.jobContinueAsNewAfterEvents }
              : {}),
            ...(handover ? { reportTo: { workflowId: header.workflowId, taskId: id } } : {}),
          },
        ],
        parentClosePolicy: handover ? ParentClosePolicy.ABANDON : ParentClosePolicy.REQUEST_CANCEL,
        cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
        staticSummary: summary,
      };
      if (!handover) return executeChild(runner.workflow, options) as Promise<TaskResultEnvelope>;
      const child = await startChild(runner.workflow, options);
      childIds.set(id, workflowId);
      return (await child.result()) as TaskResultEnvelope;
    }
    const retry = {
      maximumAttempts: p.retry.attempts,
      initialInterval: p.retry.initialIntervalMs,
      backoffCoefficient: p.retry.backoff,
      maximumInterval: p.retry.maxIntervalMs,
    };
    if (runner.type === 'poll') {
      // A sensor: its whole poll loop runs in one heartbeating activity (no history per
      // check). It is read-only, so continue-as-new stops it at once and starts it again.
      const prev = sensorsCarried[id];
      delete sensorsCarried[id];
      const since = prev ? prev.since : Date.now();
      const polls = prev?.polls ?? 0;
      const opts: ActivityOptions = {
        startToCloseTimeout: '366d',
        heartbeatTimeout: heartbeatMs,
        retry,
        cancellationType: ActivityCancellationType.TRY_CANCEL,
        summary,
      };
      const act = proxyActivities<Record<string, (i: unknown) => Promise<TaskResultEnvelope>>>(opts)[runner.activity];
      const arg = byRef
        ? { ...byRef, sensor: { since, polls } }
        : { task: await rendered(), run, sensor: { since, polls } };
      const scope = new CancellationScope();
      sensorScopes.set(id, scope);
      parkInfo.set(id, { since, polls });
      return scope.run(() => act(arg));
    }
    if (runner.local && input.options?.localShortTasks && patched('local-short-tasks-v1')) {
      // Short and free of I/O: in this worker, no round trip through the activity task queue.
      const local = proxyLocalActivities<Record<string, (i: unknown) => Promise<TaskResultEnvelope>>>({
        startToCloseTimeout: p.timeoutMs,
        retry,
        cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary,
      })[runner.activity];
      return local(byRef ?? { task: await rendered(), run });
    }
    // A run reports cancelled only after its activities stopped: wait for their cancellation.
    const opts: ActivityOptions = {
      startToCloseTimeout: p.timeoutMs,
      heartbeatTimeout: runner.heartbeat ? heartbeatMs : undefined,
      retry,
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      summary,
    };
    const act = proxyActivities<Record<string, (i: unknown) => Promise<TaskResultEnvelope>>>(opts)[runner.activity];
    return act(byRef ?? { task: await rendered(), run });
  };

  for (const [id, workflowId] of Object.entries(carried?.jobs ?? {})) launch(id, workflowId);
  /** Draining, and all that still runs is started external jobs: hand them over rather than wait. */
  const canHandOver = () =>
    handover && draining && inflight.size > 0 && [...inflight.keys()].every((id) => childIds.has(id));

  let candidates: Iterable<string> = sk.ids;
  let draining = false;
  let sinceDetails = 0;
  try {
    for (;;) {
      const p = plan(byId, down, statusOf, candidates);
      const now = nowIso();
      for (const s of p.settle) setStatus(s.id, s.status, { endedAt: now });
      for (const id of p.start) {
        queue.push(id);
        queued.add(id);
      }
      if (!draining && shouldContinueAsNew(canAfter)) {
        draining = true;
        // Sensors do not hold up continue-as-new: stop them, and start them again after it.
        for (const [id, scope] of sensorScopes) {
          const s = parkInfo.get(id)!;
          parked.set(id, s);
          scope.cancel();
        }
      }
      while (!draining && inflight.size < sk.maxParallel && queue.length) {
        const id = queue.shift()!;
        queued.delete(id);
        launch(id);
      }
      maybeFlush();
      if (inflight.size === 0 || canHandOver()) {
        if (inflight.size === 0 && queue.length === 0 && parked.size === 0) break;
        // History is getting long: carry the DAG state into a fresh execution.
        await flushAll();
        await CancellationScope.nonCancellable(() =>
          meta.recordRun(
            seedRecord({ state: { ...answerHeader(), continuations: header.continuations + 1, tasks: {} } }),
          ),
        );
        await condition(allHandlersFinished);
        // A job that ended meanwhile is recorded here first (its delta and its downstream tasks).
        if (handover && (deltas.size || finished.length)) {
          candidates = finishedDownstream();
          continue;
        }
        header.continuations++;
        const jobs = [...inflight.keys()];
        const reported = jobs.filter((id) => jobResults.has(id));
        const next: CarriedV1 = {
          v: 1,
          header,
          statuses: status.map((s) => CODES[s]).join(''),
          failures,
          ...(parked.size ? { sensors: Object.fromEntries(parked) } : {}),
          ...(sk.notify ? { notify: outcome } : {}),
          ...(jobs.length ? { jobs: Object.fromEntries(jobs.map((id) => [id, childIds.get(id)!])) } : {}),
          ...(reported.length
            ? { jobResults: Object.fromEntries(reported.map((id) => [id, jobResults.get(id)!])) }
            : {}),
        };
        return await continueAsNew<typeof pipelineRun>({ ...input, carried: next, prior: undefined });
      }
      if (sinceDetails++ % 50 === 0) setCurrentDetails(progressMarkdown(header, counts));
      await condition(() => finished.length > 0 || canHandOver());
      candidates = finishedDownstream();
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await CancellationScope.nonCancellable(async () => {
      // Wait until every task activity has stopped (WAIT_CANCELLATION_COMPLETED), then record.
      await Promise.all(inflight.values());
      const now = nowIso();
      for (let i = 0; i < sk.ids.length; i++) {
        const s = STATUSES[status[i]];
        if (isFinal(s)) continue;
        // Tasks this execution touched get a delta; the rest are closed in one statement below.
        if (details.has(sk.ids[i]))
          setStatus(sk.ids[i], 'cancelled', { endedAt: details.get(sk.ids[i])?.startedAt ? now : undefined });
        else {
          counts[status[i]]--;
          status[i] = STATUSES.indexOf('cancelled');
          counts[status[i]]++;
        }
      }
      header.status = 'cancelled';
      header.endedAt = now;
      setCurrentDetails(progressMarkdown(header, counts));
      await flushAll();
      await meta.recordRun(seedRecord({ closeOpenTasks: 'cancelled' }));
      // Rules about a cancelled run hear of it (and of warnings and exhausted retries it had), as of any end.
      if (sk.notify && cancelNotifies(sk.notify.rules) && patched('notify-cancelled-v1')) await notifyEnd();
    });
    throw err;
  }

  // Anything still pending could never be decided (cannot happen for a valid DAG).
  for (let i = 0; i < sk.ids.length; i++)
    if (!isFinal(STATUSES[status[i]]))
      setStatus(sk.ids[i], 'upstream_failed', { error: 'never became ready', endedAt: nowIso() });

  const bad =
    counts[STATUSES.indexOf('failed')] +
    counts[STATUSES.indexOf('upstream_failed')] +
    counts[STATUSES.indexOf('cancelled')];
  header.status = bad ? 'failed' : 'success';
  header.endedAt = nowIso();
  setCurrentDetails(progressMarkdown(header, counts));
  await CancellationScope.nonCancellable(flushAll);
  async function notifyEnd(error?: string) {
    // Only rules about the run's end need the end notifier (an SLA-only spec has its own).
    if (!sk.notify?.rules.some((r) => r.on.some((e) => e !== 'sla_missed')) || !patched('notify-v1')) return;
    await startNotifier({
      phase: 'end',
      outcome: {
        status: header.status as RunOutcome['status'],
        ...outcome,
        ...(error ? { error: error.slice(0, 2000) } : {}),
        failures: failures.slice(0, NOTIFY_LIMITS.listed).map((f) => ({ id: f.id, error: f.error })),
      },
    });
  }
  if (bad) {
    const nFailed = counts[STATUSES.indexOf('failed')];
    const named = failures.map((f) => `${f.id}: ${f.error}`).join('; ');
    const more = nFailed > failures.length ? ` (and ${nFailed - failures.length} more failed tasks)` : '';
    const message = `pipeline ${header.pipelineId} failed: ${named || 'upstream failures'}${more}`;
    await CancellationScope.nonCancellable(() => meta.recordRun(seedRecord({ error: message })));
    await CancellationScope.nonCancellable(() => notifyEnd(message));
    const summary = boundedState(header, sk.ids, status, details, counts, failures, { tasks: 100, bytes: 64 * 1024 });
    throw ApplicationFailure.create({ type: 'PipelineFailed', nonRetryable: true, message, details: [summary] });
  }
  await CancellationScope.nonCancellable(() => meta.recordRun(seedRecord()));
  await CancellationScope.nonCancellable(() => notifyEnd());
  return answer();

  /**
   * Starts the run's notifier as an abandoned child: it outlives the run and its failures
   * never reach the run. The id is never reused, so a replay or retry starts it once.
   */
  async function startNotifier(p: Omit<NotifyInput, 'run' | 'rules'>): Promise<void> {
    try {
      await startChild('notifyRun', {
        workflowId: `${header.workflowId}/notify/${p.phase}`,
        args: [
          {
            run,
            rules: sk.notify!.rules,
            ...p,
            ...(input.options?.notifyRetry ? { retry: input.options.notifyRetry } : {}),
          },
        ],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        staticSummary: `notifications (${p.phase})`,
      });
    } catch (e) {
      if (isCancellation(e)) throw e;
      // Already started (a run's execution retried) or refused: notifications never fail the run.
    }
  }

  function finishedDownstream(): string[] {
    const out: string[] = [];
    for (const id of finished) out.push(...(down.get(id) ?? []));
    finished = [];
    return out;
  }
}

function shouldContinueAsNew(after: number): boolean {
  const i = workflowInfo();
  return i.continueAsNewSuggested || i.historyLength >= after;
}

function stripId(d: TaskDelta): TaskState {
  const { id: _id, ...t } = d;
  return t;
}

function countsObject(counts: number[]): Partial<Record<TaskStatus, number>> {
  const out: Partial<Record<TaskStatus, number>> = {};
  counts.forEach((n, i) => {
    if (n) out[STATUSES[i]] = n;
  });
  return out;
}

/**
 * The run as a workflow answers it: header, counts, failures and tasks in spec order up to
 * the limits. `tasksPartial` when tasks are left out or some task's details live only in
 * the metastore (it finished in an earlier execution of a run that continued as new).
 */
function boundedState(
  header: CarriedV1['header'],
  ids: string[],
  status: number[],
  details: Map<string, TaskState>,
  counts: number[],
  failures: CarriedV1['failures'],
  limits: { tasks: number; bytes: number } = RUN_ANSWER_LIMITS,
): RunState {
  const tasks: Record<string, TaskState> = {};
  let partial = false;
  let bytes = 0;
  for (let i = 0; i < ids.length; i++) {
    const s = STATUSES[status[i]];
    const t = details.get(ids[i]) ?? { status: s, attempts: 0 };
    if (!details.has(ids[i]) && s !== 'pending') partial = true;
    const size = JSON.stringify(t).length + ids[i].length + 4;
    if (i >= limits.tasks || bytes + size > limits.bytes) {
      partial = true;
      break;
    }
    bytes += size;
    tasks[ids[i]] = t;
  }
  return {
    ...header,
    tasks,
    counts: countsObject(counts),
    taskCount: ids.length,
    ...(partial ? { tasksPartial: true } : {}),
    ...(failures.length ? { failures } : {}),
  };
}

function progressMarkdown(header: CarriedV1['header'], counts: number[]): string {
  const line = Object.entries(countsObject(counts))
    .map(([s, n]) => `${s}: ${n}`)
    .join(' · ');
  return `**${header.pipelineId}** — ${header.status}\n\n${line}`;
}
