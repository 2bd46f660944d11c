/**
 * pipelineRun: interprets one pipeline spec as a DAG. The planner (dag.ts) decides what
 * is ready; this file dispatches tasks and records what they did. The parts live in run/:
 * the skeleton (what the tasks are), the task book (their state, deltas to the metastore and
 * bounded answers) and the runners (how each kind of task runs). Deterministic: no I/O,
 * time comes from the workflow clock.
 *
 * At any size (scale-v1): the spec comes by reference (SpecRef) as skeleton pages of
 * bounded size, and each task activity loads and renders its own task; per-task state
 * goes to the metastore as batched deltas; what the workflow answers (queries, result,
 * failure details) and carries across continue-as-new is bounded (RUN_ANSWER_LIMITS, one
 * character per task). Runs recorded before scale-v1 replay through pipeline-v0.ts.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { WorkerActivities } from '../activities/index.js';
import { jobFinishedSignal, type JobFinished } from './job-messages.js';
import { cancelNotifies, isRunEndStatus, NOTIFY_LIMITS, type NotifyInput, type RunOutcome } from '../schemas/notify.js';
import {
  isCarriedV1,
  type CarriedV1,
  type PipelineRunInput,
  type RunContext,
  type RunRecord,
  type RunState,
  type TaskEnvelope,
  type TaskStatus,
} from '../schemas/run.js';
import { downstreamIndex, isFinal, plan, selectTasks } from './dag.js';
import { notifyRun } from './notify.js';
import { describeFailure } from './failures.js';
import { pipelineRunV0, scheduledTime } from './pipeline-v0.js';
import { TaskBook, type RunHeader } from './run/book.js';
import { runActivity, runChild, runSensor, runTimer, taskCall } from './run/runners.js';
import { emptySkeleton, loadSkeleton, type Skeleton } from './run/skeleton.js';
import { liveQuery, stateQuery, tasksQuery } from './run-queries.js';

export { stateQuery, tasksQuery, liveQuery };

const DEFAULT_HEARTBEAT_MS = 30_000;
const DEFAULT_CONTINUE_AS_NEW_AFTER = 8_000;

// The metastore is part of the run's durability: its writes retry until it answers.
const meta = proxyActivities<Pick<WorkerActivities, 'recordRun' | 'recordTasks' | 'loadSpecPage'>>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '500ms', maximumInterval: '30s' },
  summary: 'metastore',
});

export async function pipelineRun(input: PipelineRunInput): Promise<RunState> {
  // Runs recorded before scale-v1 (and their continuations) keep their own code path.
  if (input.carried && !isCarriedV1(input.carried)) return pipelineRunV0(input);
  if (!input.specRef && !input.carried && !patched('scale-v1')) return pipelineRunV0(input);
  return pipelineRunV1(input);
}

async function pipelineRunV1(input: PipelineRunInput): Promise<RunState> {
  const info = workflowInfo();
  const carried = isCarriedV1(input.carried) ? input.carried : undefined;
  // External jobs outlive an execution: continue-as-new hands running ones over instead of waiting for them.
  const handover = patched('handover-jobs-v1');
  const nowIso = () => new Date().toISOString();
  const header: RunHeader = carried?.header ?? {
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

  const book = new TaskBook(header, carried?.failures ?? [], (deltas) =>
    meta.recordTasks({ runId: header.runId, deltas }),
  );
  let sk: Skeleton = emptySkeleton(header.pipelineId, 1);
  setHandler(stateQuery, () => book.state());
  setHandler(tasksQuery, ({ after, limit } = {}) => book.page(after, limit));
  setHandler(liveQuery, () => book.live());

  const answerHeader = () => ({ ...header, counts: book.countsObject(), taskCount: book.ids.length });
  const seedRecord = (extra: Partial<RunRecord> = {}): RunRecord => ({
    state: { ...answerHeader(), tasks: {} },
    specVersion: input.specVersion,
    pipelineVersion: input.pipelineVersion,
    ...extra,
  });
  const record = (extra: Partial<RunRecord> = {}) =>
    CancellationScope.nonCancellable(() => meta.recordRun(seedRecord(extra)));

  try {
    // A run loads only its own tenant's specs, whatever a start made around the API names.
    if (input.specRef && input.specRef.tenant !== input.tenant)
      throw ApplicationFailure.create({
        type: 'SpecNotFound',
        nonRetryable: true,
        message: `pipeline ${input.specRef.pipelineId} is not one of tenant ${input.tenant}'s`,
      });
    sk = await loadSkeleton(input, (a) => meta.loadSpecPage(a), carried ? undefined : input.repairOf);
  } catch (err) {
    if (isCancellation(err)) {
      // Cancelled before its tasks were known (a queued run cancelled as it starts): the
      // metastore still says running, so it learns of the cancel before the run closes.
      if (patched('cancel-before-load-v1')) {
        Object.assign(header, { status: 'cancelled', endedAt: nowIso() });
        await record();
      }
      throw err;
    }
    const f = describeFailure(err);
    Object.assign(header, { status: 'failed', endedAt: nowIso() });
    const message = `pipeline ${header.pipelineId} cannot start: ${f.message}`;
    await record({ error: message });
    throw ApplicationFailure.create({ type: 'PipelineFailed', nonRetryable: true, message, details: [book.state()] });
  }
  book.load(sk.ids, carried?.statuses);
  const byId = new Map(sk.nodes.map((n) => [n.id, n]));
  const down = downstreamIndex(sk.nodes);
  if (!header.pipelineId) header.pipelineId = run.pipelineId = sk.pipelineId;

  // ---- a fresh run: selection, reuse (repair), its row and task rows in the metastore
  if (!carried) {
    if (input.only?.length) {
      const chosen = selectTasks(sk.nodes, input.only, input.withUpstream ?? false);
      const now = nowIso();
      for (const id of sk.ids) if (!chosen.has(id)) book.set(id, 'excluded', { endedAt: now });
    }
    for (const [id, prev] of Object.entries(input.prior?.tasks ?? {}))
      if (book.has(id) && prev.status === 'success' && book.statusOf(id) === 'pending')
        book.set(id, 'success', {
          attempts: 0,
          output: prev.output,
          reusedFrom: prev.reusedFrom ?? input.prior?.runId,
          startedAt: prev.startedAt,
          endedAt: prev.endedAt,
        });
    for (const id of sk.reused)
      if (book.has(id) && book.statusOf(id) === 'pending')
        book.set(id, 'success', { attempts: 0, reusedFrom: input.repairOf });
    await record({ seed: input.specRef ? { ref: input.specRef } : { ids: sk.ids } });
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
  /** When each running sensor started (its deadline derives from it) and its checks before this execution. */
  const parkInfo = new Map<string, { since: number; polls: number }>();
  /** External jobs running as started children (this execution's, and those handed over to it): task id → workflow id. */
  const childIds = new Map<string, string>(Object.entries(carried?.jobs ?? {}));
  /** How those jobs ended, as they reported it (jobFinished). */
  const jobResults = new Map<string, JobFinished>(Object.entries(carried?.jobResults ?? {}));
  setHandler(jobFinishedSignal, (m) => {
    // inflight too: a fast job's report can come in the same activation as its start.
    if (childIds.has(m.taskId) || inflight.has(m.taskId)) jobResults.set(m.taskId, m);
  });
  let finished: string[] = [];
  const statusOf = (id: string): TaskStatus => (queued.has(id) ? 'running' : book.statusOf(id));

  /** One task, by its kind's runner. */
  const runOne = (id: string): Promise<TaskEnvelope> => {
    const profile = sk.profiles[sk.profileOf[book.position(id)]];
    const t = taskCall(id, profile, { input, run, params, position: book.position(id), heartbeatMs });
    const runner = profile.runner;
    switch (runner.type) {
      case 'timer':
        return runTimer(t);
      case 'child':
        return runChild(t, runner.workflow, {
          workflowId: `${header.workflowId}/task/${id}`,
          handover,
          runWorkflowId: header.workflowId,
          started: (workflowId) => childIds.set(id, workflowId),
        });
      case 'poll': {
        const prev = sensorsCarried[id];
        delete sensorsCarried[id];
        const sensor = { since: prev ? prev.since : Date.now(), polls: prev?.polls ?? 0 };
        return runSensor(t, runner.activity, sensor, (scope) => {
          sensorScopes.set(id, scope);
          parkInfo.set(id, sensor);
        });
      }
      case 'activity':
        return runActivity(t, runner);
    }
  };

  const launch = (id: string, handedOverJob?: string) => {
    const profile = sk.profiles[sk.profileOf[book.position(id)]];
    if (!handedOverJob) book.set(id, 'running', { startedAt: nowIso(), attempts: 0, endedAt: undefined });
    const p = (handedOverJob ? awaitJob(id, handedOverJob) : runOne(id))
      .then(
        (r) => {
          parked.delete(id);
          const warned = warnedChecks(r);
          if (sk.notify && warned?.length && outcome.warned.length < NOTIFY_LIMITS.listed)
            outcome.warned.push({ task: id, checks: warned.slice(0, NOTIFY_LIMITS.listed) });
          book.set(id, 'success', {
            attempts: r.attempt,
            output: r.output,
            error: undefined,
            errorType: undefined,
            endedAt: nowIso(),
          });
        },
        (err) => {
          if (parked.has(id) && isCancellation(err)) {
            book.set(id, 'pending', { startedAt: undefined });
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
          book.set(id, isCancellation(err) ? 'cancelled' : 'failed', {
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
  const awaitJob = async (id: string, workflowId: string): Promise<TaskEnvelope> => {
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
    const m = jobResults.get(id);
    if (!m) throw new Error(`job ${id} reported no result`);
    if (m.ok && m.result) return m.result;
    if (m.cancelled) throw new CancelledFailure(m.message ?? 'cancelled');
    throw ApplicationFailure.create({
      type: m.type,
      nonRetryable: true,
      message: m.message ?? 'the external job failed',
      details: [{ attempt: m.attempt ?? 1, ...(m.output ? { output: m.output } : {}) }],
    });
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
      for (const s of p.settle) book.set(s.id, s.status, { endedAt: now });
      for (const id of p.start) {
        queue.push(id);
        queued.add(id);
      }
      if (!draining && shouldContinueAsNew(canAfter)) {
        draining = true;
        // Sensors do not hold up continue-as-new: stop them, and start them again after it.
        for (const [id, scope] of sensorScopes) {
          const info = parkInfo.get(id);
          if (!info) throw new Error(`sensor ${id} runs without its start recorded`);
          parked.set(id, info);
          scope.cancel();
        }
      }
      while (!draining && inflight.size < sk.maxParallel) {
        const id = queue.shift();
        if (id === undefined) break;
        queued.delete(id);
        launch(id);
      }
      book.maybeFlush();
      if (inflight.size === 0 || canHandOver()) {
        if (inflight.size === 0 && queue.length === 0 && parked.size === 0) break;
        // History is getting long: carry the DAG state into a fresh execution.
        await book.flushAll();
        await record({ state: { ...answerHeader(), continuations: header.continuations + 1, tasks: {} } });
        await condition(allHandlersFinished);
        // A job that ended meanwhile is recorded here first (its delta and its downstream tasks).
        if (handover && (book.pending || finished.length)) {
          candidates = finishedDownstream();
          continue;
        }
        header.continuations++;
        const jobs = [...inflight.keys()];
        const reported = jobs.filter((id) => jobResults.has(id));
        const next: CarriedV1 = {
          v: 1,
          header,
          statuses: book.carried(),
          failures: book.failures,
          ...(parked.size ? { sensors: Object.fromEntries(parked) } : {}),
          ...(sk.notify ? { notify: outcome } : {}),
          ...(jobs.length ? { jobs: Object.fromEntries(entriesOf(jobs, childIds)) } : {}),
          ...(reported.length ? { jobResults: Object.fromEntries(entriesOf(reported, jobResults)) } : {}),
        };
        return await continueAsNew<typeof pipelineRun>({ ...input, carried: next, prior: undefined });
      }
      if (sinceDetails++ % 50 === 0) setCurrentDetails(book.progress());
      await condition(() => finished.length > 0 || canHandOver());
      candidates = finishedDownstream();
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await CancellationScope.nonCancellable(async () => {
      // Wait until every task activity has stopped (WAIT_CANCELLATION_COMPLETED), then record.
      await Promise.all(inflight.values());
      const now = nowIso();
      book.cancelOpen(now, isFinal);
      header.status = 'cancelled';
      header.endedAt = now;
      setCurrentDetails(book.progress());
      await book.flushAll();
      await meta.recordRun(seedRecord({ closeOpenTasks: 'cancelled' }));
      // Rules about a cancelled run hear of it (and of warnings and exhausted retries it had), as of any end.
      if (sk.notify && cancelNotifies(sk.notify.rules) && patched('notify-cancelled-v1')) await notifyEnd();
    });
    throw err;
  }

  // Anything still pending could never be decided (cannot happen for a valid DAG).
  for (let i = 0; i < sk.ids.length; i++)
    if (!isFinal(book.statusAt(i)))
      book.set(sk.ids[i], 'upstream_failed', { error: 'never became ready', endedAt: nowIso() });

  const bad = book.count('failed') + book.count('upstream_failed') + book.count('cancelled');
  header.status = bad ? 'failed' : 'success';
  header.endedAt = nowIso();
  setCurrentDetails(book.progress());
  await CancellationScope.nonCancellable(() => book.flushAll());
  async function notifyEnd(error?: string) {
    // Only rules about the run's end need the end notifier (an SLA-only spec has its own).
    if (!sk.notify?.rules.some((r) => r.on.some((e) => e !== 'sla_missed')) || !patched('notify-v1')) return;
    await startNotifier({
      phase: 'end',
      outcome: {
        // The run's end as recorded: success, failed, or (from the cancellation cleanup) cancelled.
        status: isRunEndStatus(header.status) ? header.status : 'failed',
        ...outcome,
        ...(error ? { error: error.slice(0, 2000) } : {}),
        failures: book.failures.slice(0, NOTIFY_LIMITS.listed).map((f) => ({ id: f.id, error: f.error })),
      },
    });
  }
  if (bad) {
    const nFailed = book.count('failed');
    const named = book.failures.map((f) => `${f.id}: ${f.error}`).join('; ');
    const more = nFailed > book.failures.length ? ` (and ${nFailed - book.failures.length} more failed tasks)` : '';
    const message = `pipeline ${header.pipelineId} failed: ${named || 'upstream failures'}${more}`;
    await record({ error: message });
    await CancellationScope.nonCancellable(() => notifyEnd(message));
    const summary = book.state({ tasks: 100, bytes: 64 * 1024 });
    throw ApplicationFailure.create({ type: 'PipelineFailed', nonRetryable: true, message, details: [summary] });
  }
  await record();
  await CancellationScope.nonCancellable(() => notifyEnd());
  return book.state();

  /**
   * Starts the run's notifier as an abandoned child: it outlives the run and its failures
   * never reach the run. The id is never reused, so a replay or retry starts it once.
   */
  async function startNotifier(p: Omit<NotifyInput, 'run' | 'rules'>): Promise<void> {
    if (!sk.notify) return;
    try {
      await startChild(notifyRun, {
        workflowId: `${header.workflowId}/notify/${p.phase}`,
        args: [
          {
            run,
            rules: sk.notify.rules,
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

/** A task's quality checks that warned (a quality_warning for notify rules). */
function warnedChecks(r: TaskEnvelope): string[] | undefined {
  const checks = r.output?.checks;
  if (!checks || typeof checks !== 'object' || !('warned' in checks) || !Array.isArray(checks.warned)) return undefined;
  return checks.warned.filter((w): w is string => typeof w === 'string');
}

/** The entries of `map` for these keys, in their order; a key it lacks has none (as an undefined field, dropped when sent). */
function entriesOf<V>(keys: string[], map: Map<string, V>): [string, V][] {
  return keys.flatMap((k) => {
    const v = map.get(k);
    return v === undefined ? [] : [[k, v]];
  });
}

function shouldContinueAsNew(after: number): boolean {
  const i = workflowInfo();
  return i.continueAsNewSuggested || i.historyLength >= after;
}
