/**
 * The Temporal-client side of runs: start, inspect, cancel and repair pipelineRun
 * workflows. The CLI uses it today; the HTTP API wraps the same functions.
 */
import { pipelineRun } from '../workflows/pipeline.js';
import { decodePayload } from './data-converter.js';
import {
  Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdReusePolicy,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { createHash, randomBytes } from 'node:crypto';
import { RequestError } from '../schemas/errors.js';
import { SA_PIPELINE, SA_TENANT, SA_TRIGGER, workflowIdFor } from '../schemas/workflow-ids.js';
import { resolveParams, type PipelineSpec } from '../schemas/pipeline.js';
import {
  RUN_ANSWER_LIMITS,
  type PipelineRunInput,
  type PipelineRunOptions,
  type RunState,
  type SpecRef,
  type TaskState,
} from '../schemas/run.js';
import type { Db } from '../store/db.js';
import { contentHash } from '../store/pipelines.js';
import { getRunById, getRunTasks, recordQueued, type RunRow } from '../store/runs.js';
import { loadSpec, snapshotSpec, specTaskIds } from '../store/specs.js';
import { claimTriggers, enqueueTrigger, getTrigger, markStarted, type TriggerRow } from '../store/triggers.js';

/**
 * The run options every start gets from the process's environment: short tasks run as local
 * activities with `STRATA_LOCAL_SHORT_TASKS=1`. Off by default: while a workflow has local
 * activities outstanding its workflow task stays open (heartbeated), so the completions of its
 * ordinary activities wait for it: the 10,000-task scale test (no-ops mixed with SQL tasks) took
 * 70 s with it off and did not finish in 400 s with it on.
 */
export function defaultRunOptions(
  env: Record<string, string | undefined> = process.env,
): PipelineRunOptions | undefined {
  return env.STRATA_LOCAL_SHORT_TASKS === '1' ? { localShortTasks: true } : undefined;
}

/**
 * A workflow's start input may be at most this big (Temporal refuses a start over its 2 MB
 * payload limit, and warns from 512 KB): a run's spec travels by reference when the
 * service has a metastore, so only a spec started without one (or a huge `only` list or
 * params) can come near it. Checked before the start: a 413 that says what to change.
 */
export const MAX_START_INPUT_BYTES = 512 * 1024;

export interface StartRunRequest {
  spec: PipelineSpec;
  /** The spec's content hash when the caller has it (a registered version's), to skip hashing it again. */
  contentHash?: string;
  tenant: string;
  trigger: string;
  params?: Record<string, string>;
  only?: string[];
  withUpstream?: boolean;
  logicalDate?: string;
  runKey?: string;
  prior?: PipelineRunInput['prior'];
  options?: PipelineRunOptions;
  specVersion?: string;
  pipelineVersion?: number;
  /** Extra attributes for the run (e.g. the API's Idempotency-Key). */
  memo?: Record<string, unknown>;
  /** With a caller-chosen runKey: a second start returns the first run instead of failing. */
  idempotent?: boolean;
}

export interface RunHandleInfo {
  /** True when an idempotent start found the run it had already made. */
  existing?: boolean;
  runId: string;
  workflowId: string;
  temporalRunId: string;
  uiUrl: string;
}

export interface RunsServiceConfig {
  taskQueue: string;
  namespace: string;
  uiUrl: string;
  /** The metastore holding the trigger outbox (API): enables enqueue() and queued states. */
  outbox?: Db;
  /**
   * The metastore the workers write (defaults to `outbox`): with it, specs travel by
   * reference (registered versions, else a snapshot) and run state is read from it.
   */
  store?: Db;
  /** Called after each enqueue (the API wakes its dispatcher). */
  onEnqueued?: () => void;
}

/** A checked, serialisable workflow start (what the trigger outbox stores). */
export interface PreparedStart {
  workflowId: string;
  input: PipelineRunInput;
  idempotent: boolean;
  memo: Record<string, unknown>;
  summary: string;
}

export function specHash(spec: PipelineSpec): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16);
}

function newRunKey(trigger: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${trigger}-${stamp}-${randomBytes(3).toString('hex')}`;
}

export class RunsService {
  constructor(
    readonly client: Client,
    readonly config: RunsServiceConfig,
  ) {}

  uiLink(workflowId: string): string {
    return `${this.config.uiUrl}/namespaces/${this.config.namespace}/workflows/${encodeURIComponent(workflowId)}`;
  }

  /** Checks a start request and turns it into a serialisable workflow start (throws 400). */
  prepare(req: StartRunRequest): PreparedStart {
    const { params, problems } = resolveParams(req.spec, req.params ?? {});
    const ids = new Set(req.spec.tasks.map((t) => t.id));
    for (const t of req.only ?? [])
      if (!ids.has(t))
        problems.push({ path: 'only', message: `unknown task "${t}": use one of ${[...ids].join(', ')}` });
    // ds, logical_date and tenant may stand raw in SQL: only a four-digit-year date and a plain tenant name get through.
    const ld = req.logicalDate === undefined ? undefined : Date.parse(req.logicalDate);
    if (ld !== undefined && (Number.isNaN(ld) || ld < Date.UTC(1000, 0, 1) || ld >= Date.UTC(10000, 0, 1)))
      problems.push({
        path: 'logicalDate',
        message:
          'write an ISO date or timestamp between the years 1000 and 9999, e.g. 2026-11-01 or 2026-11-01T00:00:00Z',
      });
    if (!/^[a-z][a-z0-9-]{0,62}$/.test(req.tenant) || req.tenant.includes('--'))
      problems.push({ path: 'tenant', message: 'a tenant is lower-case letters, digits and single "-" (at most 63)' });
    if (problems.length)
      throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);

    const now = new Date();
    const runKey = req.runKey ?? newRunKey(req.trigger, now);
    const workflowId = workflowIdFor(req.tenant, req.spec.id, runKey);
    const specVersion = req.specVersion ?? specHash(req.spec);
    const input: PipelineRunInput = {
      spec: req.spec,
      tenant: req.tenant,
      trigger: req.trigger,
      params,
      only: req.only,
      withUpstream: req.withUpstream,
      logicalDate: req.logicalDate ? new Date(req.logicalDate).toISOString() : undefined,
      prior: req.prior,
      options: req.options ?? defaultRunOptions(),
      specVersion,
      pipelineVersion: req.pipelineVersion,
    };
    return {
      workflowId,
      input,
      idempotent: !!req.idempotent,
      memo: {
        pipeline: req.spec.id,
        specVersion,
        pipelineVersion: req.pipelineVersion,
        tasks: req.spec.tasks.length,
        ...req.memo,
      },
      summary: `${req.spec.id} (${req.trigger}${req.only?.length ? `, only ${req.only.join(',')}` : ''})`,
    };
  }

  /** The metastore, when this service has one. */
  get db(): Db | undefined {
    return this.config.store ?? this.config.outbox;
  }

  /**
   * prepare(), then the spec by reference when there is a metastore (a registered version as
   * it is, else a content-addressed snapshot), and the size check of the whole start input.
   */
  async prepareStart(req: StartRunRequest): Promise<PreparedStart> {
    const p = this.prepare(req);
    const db = this.db;
    if (db) {
      const hash = req.contentHash ?? contentHash(req.spec);
      const ref: SpecRef =
        req.pipelineVersion !== undefined
          ? {
              tenant: req.tenant,
              pipelineId: req.spec.id,
              hash,
              version: req.pipelineVersion,
              tasks: req.spec.tasks.length,
            }
          : await snapshotSpec(db, req.tenant, req.spec);
      const { spec: _inline, ...rest } = p.input;
      p.input = { ...rest, specRef: ref };
      // A repair names the run it repairs; its successes are read from the metastore.
      if (p.input.prior) {
        p.input.repairOf = p.input.prior.runId;
        delete p.input.prior;
      }
    }
    const bytes = Buffer.byteLength(JSON.stringify(p.input)) + Buffer.byteLength(JSON.stringify(p.memo));
    if (bytes > MAX_START_INPUT_BYTES) {
      const part = (n: number) => `${Math.ceil(n / 1024)} KiB`;
      const parts = [
        p.input.spec ? `the spec inline ${part(Buffer.byteLength(JSON.stringify(p.input.spec)))}` : '',
        `params ${part(Buffer.byteLength(JSON.stringify(p.input.params ?? {})))}`,
        p.input.only?.length ? `"only" ${part(Buffer.byteLength(JSON.stringify(p.input.only)))}` : '',
      ].filter(Boolean);
      const fix = p.input.spec
        ? 'register the pipeline and trigger it through the API, or give this command a metastore (DATABASE_URL), so the spec travels by reference'
        : 'pass large values by reference (a path in the lake) and choose fewer tasks';
      throw new RequestError(
        `the run's start input is ${part(bytes)} (${parts.join(', ')}); a run starts with at most ${part(MAX_START_INPUT_BYTES)}: ${fix}`,
        413,
      );
    }
    return p;
  }

  /**
   * Starts a prepared run. `dispatch`: the start comes from the trigger outbox, where the id
   * is the trigger's identity: finding the workflow already there means it was started before.
   */
  async startPrepared(p: PreparedStart, dispatch = false): Promise<RunHandleInfo> {
    const { workflowId, input } = p;
    try {
      const handle = await this.client.workflow.start(pipelineRun, {
        taskQueue: this.config.taskQueue,
        workflowId,
        args: [input],
        workflowIdReusePolicy: p.idempotent || dispatch ? WorkflowIdReusePolicy.REJECT_DUPLICATE : undefined,
        typedSearchAttributes: [
          { key: SA_PIPELINE, value: input.specRef?.pipelineId ?? input.spec!.id },
          { key: SA_TENANT, value: input.tenant },
          { key: SA_TRIGGER, value: String(input.trigger) },
        ],
        memo: p.memo,
        staticSummary: p.summary,
      });
      return {
        runId: workflowId,
        workflowId,
        temporalRunId: handle.firstExecutionRunId,
        uiUrl: this.uiLink(workflowId),
      };
    } catch (e) {
      if (e instanceof WorkflowExecutionAlreadyStartedError) {
        if (p.idempotent || dispatch) {
          const d = await this.client.workflow.getHandle(workflowId).describe();
          return {
            runId: workflowId,
            workflowId,
            temporalRunId: d.runId,
            uiUrl: this.uiLink(workflowId),
            existing: true,
          };
        }
        throw new RequestError(`run ${workflowId} already exists: use another run key`, 409);
      }
      throw e;
    }
  }

  async start(req: StartRunRequest): Promise<RunHandleInfo> {
    return this.startPrepared(await this.prepareStart(req));
  }

  /**
   * Accepts a run into the trigger outbox (one insert) instead of starting it here; the
   * dispatcher starts it under the same id. `existing` when an idempotent trigger was
   * accepted before. Needs `outbox` in the config.
   */
  async enqueue(req: StartRunRequest): Promise<RunHandleInfo & { queued: true }> {
    const db = this.config.outbox;
    if (!db) throw new Error('RunsService.enqueue needs the outbox database');
    const p = await this.prepareStart(req);
    const acceptedAt = new Date().toISOString();
    // One transaction: the trigger and its `queued` row in the runs index, or neither.
    const fresh = await db.tx(async (t) => {
      const ok = await enqueueTrigger(t, {
        workflowId: p.workflowId,
        tenant: req.tenant,
        pipelineId: req.spec.id,
        taskQueue: this.config.taskQueue,
        request: p,
      });
      if (ok)
        await recordQueued(t, {
          runId: p.workflowId,
          tenant: req.tenant,
          pipelineId: req.spec.id,
          specVersion: p.input.specVersion,
          pipelineVersion: p.input.pipelineVersion,
          trigger: String(req.trigger),
          logicalDate: p.input.logicalDate ?? acceptedAt,
          acceptedAt,
          tasks: {},
        });
      return ok;
    });
    if (!fresh && !req.idempotent)
      throw new RequestError(`run ${p.workflowId} already exists: use another run key`, 409);
    this.config.onEnqueued?.();
    const t = fresh ? undefined : await getTrigger(db, p.workflowId);
    return {
      runId: p.workflowId,
      workflowId: p.workflowId,
      temporalRunId: t?.temporal_run_id ?? '',
      uiUrl: this.uiLink(p.workflowId),
      existing: !fresh,
      queued: true,
    };
  }

  /** Starts a claimed trigger's workflow and records it as started (the dispatcher's unit of work too). */
  async startTrigger(row: TriggerRow<PreparedStart>): Promise<RunHandleInfo> {
    const h = await this.startPrepared(row.request, true);
    await markStarted(this.config.outbox!, row.workflow_id, h.temporalRunId);
    return h;
  }

  /**
   * Starts a run waiting in the trigger outbox now, or waits while a dispatcher starts it.
   * False if there is no such trigger.
   */
  private async startQueued(runId: string): Promise<boolean> {
    const db = this.config.outbox;
    const trigger = db && (await getTrigger(db, runId));
    if (!db || !trigger) return false;
    if (trigger.failed_at)
      throw new RequestError(
        `run ${runId} failed to start (${trigger.last_error ?? 'refused'}): there is nothing to cancel`,
        409,
      );
    for (let i = 0; i < 100; i++) {
      const [row] = await claimTriggers<PreparedStart>(db, this.config.taskQueue, 1, 30_000, runId);
      if (row) {
        await this.startTrigger(row);
        return true;
      }
      if ((await getTrigger(db, runId))?.started_at) return true;
      await new Promise((r) => setTimeout(r, 100)); // a dispatcher holds it right now
    }
    throw new RequestError(
      `run ${runId} is still queued: its start keeps failing (${(await getTrigger(db, runId))?.last_error ?? 'unknown'}); try again`,
      503,
    );
  }

  /** A run accepted into the outbox but not started yet (queued, or dead-lettered: failed_to_start), else undefined. */
  private async queuedState(runId: string): Promise<RunState | undefined> {
    const db = this.config.outbox;
    if (!db) return undefined;
    const t = await getTrigger<PreparedStart>(db, runId);
    if (!t || t.started_at) return undefined;
    const input = t.request.input;
    const ids = input.spec
      ? input.spec.tasks.map((x) => x.id)
      : input.specRef
        ? await specTaskIds(db, input.specRef)
        : [];
    const failed = !!t.failed_at;
    return {
      runId,
      workflowId: runId,
      pipelineId: input.specRef?.pipelineId ?? input.spec?.id ?? t.pipeline_id,
      tenant: t.tenant,
      trigger: input.trigger,
      logicalDate: input.logicalDate ?? new Date(t.created_at).toISOString(),
      status: failed ? 'failed_to_start' : 'queued',
      startedAt: new Date(t.created_at).toISOString(),
      ...(failed ? { endedAt: new Date(t.failed_at!).toISOString() } : {}),
      tasks: Object.fromEntries(ids.map((id) => [id, { status: 'pending', attempts: 0 }])),
      taskCount: ids.length,
      counts: { pending: ids.length },
      continuations: 0,
      ...(t.last_error ? { error: t.last_error, queuedError: t.last_error } : {}),
    };
  }

  /**
   * A run's state. With a metastore: its row and task rows (the workflow records them as
   * deltas), overlaid while it runs with what the workflow has not recorded yet (a bounded
   * live query). Without one: the workflow's answer, page by page when it is large.
   */
  async state(runId: string): Promise<RunState> {
    const db = this.db;
    if (db) {
      const row = await getRunById(db, runId);
      if (row && (row.status === 'queued' || row.status === 'failed_to_start')) {
        const q = await this.queuedState(runId);
        if (q) return q;
        if (row.status === 'failed_to_start') return (await this.fromStore(db, row, true))!; // its trigger was pruned
      } else if (row) {
        const st = await this.fromStore(db, row);
        if (st && row.status !== 'running') return st;
        if (st) return this.overlayLive(st);
      }
    }
    return this.fromWorkflow(runId);
  }

  /** A run as the metastore has it; undefined when it has no task state for it (a worker without the metastore). */
  private async fromStore(db: Db, row: RunRow, headerOnly = false): Promise<RunState | undefined> {
    let tasks = await getRunTasks(db, row.run_id);
    if (!Object.keys(tasks).length) {
      const legacy =
        (await db.query<{ tasks: Record<string, TaskState> }>('SELECT tasks FROM runs WHERE run_id = $1', [row.run_id]))
          .rows[0]?.tasks ?? {};
      if (!Object.keys(legacy).length && !headerOnly) return undefined;
      tasks = legacy; // a run recorded before task rows kept its tasks in the run row
    }
    const counts: RunState['counts'] = {};
    for (const t of Object.values(tasks)) counts[t.status] = (counts[t.status] ?? 0) + 1;
    return {
      runId: row.run_id,
      workflowId: row.run_id,
      pipelineId: row.pipeline_id,
      tenant: row.tenant,
      trigger: row.trigger,
      logicalDate: new Date(row.logical_date).toISOString(),
      status: row.status as RunState['status'],
      startedAt: new Date(row.started_at).toISOString(),
      endedAt: row.ended_at ? new Date(row.ended_at).toISOString() : undefined,
      tasks,
      counts,
      taskCount: row.task_count ?? Object.keys(tasks).length,
      continuations: row.continuations ?? 0,
      ...(row.error ? { error: row.error } : {}),
    };
  }

  /** Adds what a running workflow has not recorded yet; a workflow that cannot answer leaves the stored state. */
  private async overlayLive(st: RunState): Promise<RunState> {
    try {
      const live = await this.client.workflow
        .getHandle(st.runId)
        .query<{ status: RunState['status']; counts: RunState['counts']; tasks: Record<string, TaskState> }>('live');
      // Tasks and counts from the workflow; the run's status stays the metastore's, which the
      // workflow writes last, so a run reads finished here and in the runs list at once.
      Object.assign(st.tasks, live.tasks);
      if (live.counts) st.counts = live.counts;
    } catch (e) {
      if (
        (e as Error).name === 'QueryNotRegisteredError' ||
        /query.*not registered|unknown query|did not register/i.test((e as Error).message)
      ) {
        return this.fromWorkflow(st.runId); // a run started before live state (it answers 'state' in full)
      }
      /* no worker answering right now: the stored state is what there is */
    }
    return st;
  }

  /** The workflow's own answer; a bounded answer is completed page by page through the `tasks` query. */
  private async fromWorkflow(runId: string): Promise<RunState> {
    try {
      const handle = this.client.workflow.getHandle(runId);
      const st = await handle.query<RunState>('state');
      if (st.tasksPartial) {
        const tasks: Record<string, TaskState> = {};
        let after: string | undefined;
        for (;;) {
          const page = await handle.query<
            { tasks: [string, TaskState][]; next?: string },
            [{ after?: string; limit?: number }]
          >('tasks', { after, limit: RUN_ANSWER_LIMITS.page });
          for (const [id, t] of page.tasks) tasks[id] = t;
          if (!page.next) break;
          after = page.next;
        }
        st.tasks = tasks;
      }
      return st;
    } catch (e) {
      if (e instanceof WorkflowNotFoundError || (e as Error).name === 'WorkflowNotFoundError') {
        const queued = await this.queuedState(runId);
        if (queued) return queued;
        throw new RequestError(`no run ${runId}: check the id (strata runs list shows them)`, 404);
      }
      throw e;
    }
  }

  /** The start input of a run's latest execution (its first history event only). */
  async input(runId: string): Promise<PipelineRunInput> {
    try {
      const res = await this.client.workflowService.getWorkflowExecutionHistory({
        namespace: this.config.namespace,
        execution: { workflowId: runId },
        maximumPageSize: 1,
      });
      const first = res.history?.events?.[0]?.workflowExecutionStartedEventAttributes;
      const payloads = first?.input?.payloads ?? [];
      return await decodePayload<PipelineRunInput>(this.client.options.loadedDataConverter, payloads[0]);
    } catch (e) {
      if (
        e instanceof WorkflowNotFoundError ||
        (e as Error).name === 'WorkflowNotFoundError' ||
        (e as { code?: number }).code === 5
      )
        throw new RequestError(`no run ${runId}`, 404);
      throw e;
    }
  }

  /** A run's spec: inline in its input, or loaded by reference from the metastore. */
  async spec(runId: string, input?: PipelineRunInput): Promise<PipelineSpec> {
    input ??= await this.input(runId);
    if (input.spec) return input.spec;
    const db = this.db;
    const spec = db && input.specRef ? await loadSpec(db, input.specRef) : undefined;
    if (!spec)
      throw new RequestError(
        `run ${runId}: its spec travels by reference and ${db ? 'is no longer in the metastore' : 'this service has no metastore to read it from'}`,
        db ? 410 : 503,
      );
    return spec;
  }

  /**
   * The tenant stored with a run: its workflow's StrataTenant, or while it waits in the
   * trigger outbox the trigger row's tenant; undefined if there is no such run.
   */
  async tenantOf(runId: string): Promise<string | undefined> {
    try {
      return (await this.client.workflow.getHandle(runId).describe()).typedSearchAttributes.get(SA_TENANT);
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError || (e as Error).name === 'WorkflowNotFoundError')) throw e;
      return this.config.outbox ? (await getTrigger(this.config.outbox, runId))?.tenant : undefined;
    }
  }

  async cancel(runId: string): Promise<void> {
    const handle = this.client.workflow.getHandle(runId);
    let desc;
    try {
      desc = await handle.describe();
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError || (e as Error).name === 'WorkflowNotFoundError')) throw e;
      // Still in the trigger outbox: start it now (so it exists and ends CANCELLED, visibly), then cancel.
      if (!(await this.startQueued(runId))) throw new RequestError(`no run ${runId}`, 404);
      desc = await handle.describe();
    }
    if (desc.status.name !== 'RUNNING')
      throw new RequestError(`run ${runId} has already ended (${desc.status.name.toLowerCase()})`, 409);
    await handle.cancel();
  }

  /** Starts a new run that re-runs only what did not succeed in `runId`. */
  async repair(runId: string, opts: { runKey?: string; options?: PipelineRunOptions } = {}): Promise<RunHandleInfo> {
    const state = await this.state(runId);
    if (state.status === 'running' || state.status === 'queued')
      throw new RequestError(`run ${runId} is still running: wait for it to end or cancel it first`, 409);
    if (state.status === 'success') throw new RequestError(`run ${runId} succeeded: there is nothing to repair`, 409);
    if (state.status === 'failed_to_start')
      throw new RequestError(
        `run ${runId} never started (${state.error ?? 'refused'}): trigger a new run instead`,
        409,
      );
    const input = await this.input(runId);
    const spec = await this.spec(runId, input);
    // With a metastore the new run reads the earlier successes there (prepareStart turns
    // prior into repairOf); without one it carries them, for a spec small enough to go inline.
    const prior = {
      runId,
      tasks: this.db ? {} : Object.fromEntries(Object.entries(state.tasks).filter(([, t]) => t.status === 'success')),
    };
    return this.start({
      spec,
      contentHash: input.specRef?.hash,
      tenant: input.tenant,
      trigger: 'repair',
      params: input.params,
      only: input.only,
      withUpstream: input.withUpstream,
      logicalDate: state.logicalDate,
      prior,
      runKey: opts.runKey,
      pipelineVersion: input.specRef ? input.specRef.version : input.pipelineVersion,
      options: opts.options ?? input.options,
    });
  }

  /** Waits for the run to end and returns its final state (failed runs too). */
  async wait(runId: string): Promise<RunState> {
    try {
      const st = await this.client.workflow.getHandle<typeof pipelineRun>(runId).result();
      if (!this.db && !st.tasksPartial) return st;
    } catch {
      /* failed or cancelled: its state says how */
    }
    return this.state(runId);
  }
}
