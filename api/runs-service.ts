/**
 * The Temporal-client side of runs: start, inspect, cancel and repair pipelineRun
 * workflows. The CLI uses it today; the HTTP API wraps the same functions.
 */
import { decodePayload } from '../client/data-converter.js';
import { Client, WorkflowExecutionAlreadyStartedError, WorkflowIdReusePolicy, WorkflowNotFoundError } from '@temporalio/client';
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { createHash, randomBytes } from 'node:crypto';
import { resolveParams, type PipelineSpec, type Problem } from '../schemas/pipeline.js';
import type { PipelineRunInput, PipelineRunOptions, RunState } from '../schemas/run.js';
import type { Db } from '../store/db.js';
import { recordQueued } from '../store/runs.js';
import { claimTriggers, enqueueTrigger, getTrigger, markStarted, type TriggerRow } from '../store/triggers.js';

export const SA_PIPELINE = defineSearchAttributeKey('StrataPipeline', SearchAttributeType.KEYWORD);
export const SA_TENANT = defineSearchAttributeKey('StrataTenant', SearchAttributeType.KEYWORD);
export const SA_TRIGGER = defineSearchAttributeKey('StrataTrigger', SearchAttributeType.KEYWORD);

/** A request the caller must fix; `status` is the HTTP status to answer with. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status = 400,
    readonly problems: Problem[] = [],
  ) {
    super(message);
  }
}

export interface StartRunRequest {
  spec: PipelineSpec;
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

export function workflowIdFor(tenant: string, pipelineId: string, runKey: string): string {
  return `pipeline/${tenant}/${pipelineId}/${runKey}`;
}

function newRunKey(trigger: string, at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
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
    for (const t of req.only ?? []) if (!ids.has(t)) problems.push({ path: 'only', message: `unknown task "${t}": use one of ${[...ids].join(', ')}` });
    // ds, logical_date and tenant may stand raw in SQL: only a four-digit-year date and a plain tenant name get through.
    const ld = req.logicalDate === undefined ? undefined : Date.parse(req.logicalDate);
    if (ld !== undefined && (Number.isNaN(ld) || ld < Date.UTC(1000, 0, 1) || ld >= Date.UTC(10000, 0, 1)))
      problems.push({ path: 'logicalDate', message: 'write an ISO date or timestamp between the years 1000 and 9999, e.g. 2026-11-01 or 2026-11-01T00:00:00Z' });
    if (!/^[a-z][a-z0-9-]{0,62}$/.test(req.tenant) || req.tenant.includes('--')) problems.push({ path: 'tenant', message: 'a tenant is lower-case letters, digits and single "-" (at most 63)' });
    if (problems.length) throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);

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
      options: req.options,
      specVersion,
      pipelineVersion: req.pipelineVersion,
    };
    return {
      workflowId,
      input,
      idempotent: !!req.idempotent,
      memo: { pipeline: req.spec.id, specVersion, pipelineVersion: req.pipelineVersion, tasks: req.spec.tasks.length, ...req.memo },
      summary: `${req.spec.id} (${req.trigger}${req.only?.length ? `, only ${req.only.join(',')}` : ''})`,
    };
  }

  /**
   * Starts a prepared run. `dispatch`: the start comes from the trigger outbox, where the id
   * is the trigger's identity: finding the workflow already there means it was started before.
   */
  async startPrepared(p: PreparedStart, dispatch = false): Promise<RunHandleInfo> {
    const { workflowId, input } = p;
    try {
      const handle = await this.client.workflow.start('pipelineRun', {
        taskQueue: this.config.taskQueue,
        workflowId,
        args: [input],
        workflowIdReusePolicy: p.idempotent || dispatch ? WorkflowIdReusePolicy.REJECT_DUPLICATE : undefined,
        typedSearchAttributes: [
          { key: SA_PIPELINE, value: input.spec.id },
          { key: SA_TENANT, value: input.tenant },
          { key: SA_TRIGGER, value: String(input.trigger) },
        ],
        memo: p.memo,
        staticSummary: p.summary,
      });
      return { runId: workflowId, workflowId, temporalRunId: handle.firstExecutionRunId, uiUrl: this.uiLink(workflowId) };
    } catch (e) {
      if (e instanceof WorkflowExecutionAlreadyStartedError) {
        if (p.idempotent || dispatch) {
          const d = await this.client.workflow.getHandle(workflowId).describe();
          return { runId: workflowId, workflowId, temporalRunId: d.runId, uiUrl: this.uiLink(workflowId), existing: true };
        }
        throw new RequestError(`run ${workflowId} already exists: use another run key`, 409);
      }
      throw e;
    }
  }

  async start(req: StartRunRequest): Promise<RunHandleInfo> {
    return this.startPrepared(this.prepare(req));
  }

  /**
   * Accepts a run into the trigger outbox (one insert) instead of starting it here; the
   * dispatcher starts it under the same id. `existing` when an idempotent trigger was
   * accepted before. Needs `outbox` in the config.
   */
  async enqueue(req: StartRunRequest): Promise<RunHandleInfo & { queued: true }> {
    const db = this.config.outbox;
    if (!db) throw new Error('RunsService.enqueue needs the outbox database');
    const p = this.prepare(req);
    const acceptedAt = new Date().toISOString();
    // One transaction: the trigger and its `queued` row in the runs index, or neither.
    const fresh = await db.tx(async (t) => {
      const ok = await enqueueTrigger(t, { workflowId: p.workflowId, tenant: req.tenant, pipelineId: req.spec.id, taskQueue: this.config.taskQueue, request: p });
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
          tasks: Object.fromEntries(p.input.spec.tasks.map((x) => [x.id, { status: 'pending' as const, attempts: 0 }])),
        });
      return ok;
    });
    if (!fresh && !req.idempotent) throw new RequestError(`run ${p.workflowId} already exists: use another run key`, 409);
    this.config.onEnqueued?.();
    const t = fresh ? undefined : await getTrigger(db, p.workflowId);
    return { runId: p.workflowId, workflowId: p.workflowId, temporalRunId: t?.temporal_run_id ?? '', uiUrl: this.uiLink(p.workflowId), existing: !fresh, queued: true };
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
    if (!db || !(await getTrigger(db, runId))) return false;
    for (let i = 0; i < 100; i++) {
      const [row] = await claimTriggers<PreparedStart>(db, this.config.taskQueue, 1, 30_000, runId);
      if (row) {
        await this.startTrigger(row);
        return true;
      }
      if ((await getTrigger(db, runId))?.started_at) return true;
      await new Promise((r) => setTimeout(r, 100)); // a dispatcher holds it right now
    }
    throw new RequestError(`run ${runId} is still queued: its start keeps failing (${(await getTrigger(db, runId))?.last_error ?? 'unknown'}); try again`, 503);
  }

  /** A run accepted into the outbox but not started yet, as a queued state (else undefined). */
  private async queuedState(runId: string): Promise<RunState | undefined> {
    const db = this.config.outbox;
    if (!db) return undefined;
    const t = await getTrigger<PreparedStart>(db, runId);
    if (!t) return undefined;
    const input = t.request.input;
    return {
      runId,
      workflowId: runId,
      pipelineId: input.spec.id,
      tenant: t.tenant,
      trigger: input.trigger,
      logicalDate: input.logicalDate ?? new Date(t.created_at).toISOString(),
      status: 'queued',
      startedAt: new Date(t.created_at).toISOString(),
      tasks: Object.fromEntries(input.spec.tasks.map((x) => [x.id, { status: 'pending', attempts: 0 }])),
      continuations: 0,
      ...(t.last_error ? { queuedError: t.last_error } : {}),
    } as RunState;
  }

  /** Live state while running; the final state (replayed) after. */
  async state(runId: string): Promise<RunState> {
    try {
      return await this.client.workflow.getHandle(runId).query<RunState>('state');
    } catch (e) {
      if (e instanceof WorkflowNotFoundError || (e as Error).name === 'WorkflowNotFoundError') {
        const queued = await this.queuedState(runId);
        if (queued) return queued;
        throw new RequestError(`no run ${runId}: check the id (strata runs list shows them)`, 404);
      }
      throw e;
    }
  }

  async input(runId: string): Promise<PipelineRunInput> {
    const handle = this.client.workflow.getHandle(runId);
    try {
      const history = await handle.fetchHistory();
      const first = history.events?.[0]?.workflowExecutionStartedEventAttributes;
      const payloads = first?.input?.payloads ?? [];
      return await decodePayload<PipelineRunInput>(this.client.options.loadedDataConverter, payloads[0]);
    } catch (e) {
      if (e instanceof WorkflowNotFoundError || (e as Error).name === 'WorkflowNotFoundError') throw new RequestError(`no run ${runId}`, 404);
      throw e;
    }
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
    if (desc.status.name !== 'RUNNING') throw new RequestError(`run ${runId} has already ended (${desc.status.name.toLowerCase()})`, 409);
    await handle.cancel();
  }

  /** Starts a new run that re-runs only what did not succeed in `runId`. */
  async repair(runId: string, opts: { runKey?: string; options?: PipelineRunOptions } = {}): Promise<RunHandleInfo> {
    const state = await this.state(runId);
    if (state.status === 'running') throw new RequestError(`run ${runId} is still running: wait for it to end or cancel it first`, 409);
    if (state.status === 'success') throw new RequestError(`run ${runId} succeeded: there is nothing to repair`, 409);
    const input = await this.input(runId);
    return this.start({
      spec: input.spec,
      tenant: input.tenant,
      trigger: 'repair',
      params: input.params,
      only: input.only,
      withUpstream: input.withUpstream,
      logicalDate: state.logicalDate,
      prior: { runId, tasks: state.tasks },
      runKey: opts.runKey,
      pipelineVersion: input.pipelineVersion,
      options: opts.options ?? input.options,
    });
  }

  /** Waits for the run to end and returns its final state (failed runs too). */
  async wait(runId: string): Promise<RunState> {
    try {
      return await this.client.workflow.getHandle(runId).result();
    } catch {
      return this.state(runId);
    }
  }
}
