/** Start, inspect and cancel standalone reconciliations over a Temporal client. */
import { reconciliationRun } from '../workflows/reconciliation.js';
import { decodePayload } from './data-converter.js';
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { CLUSTER_ID_NEEDS_SPARK, inputLabel, parseReconcileInput, ReconcileOptions } from '../schemas/reconcile.js';
import type { ReconcileHeartbeat } from '../activities/reconcile/client.js';
import type { ReconciliationInput } from '../workflows/reconciliation.js';
import { RequestError } from '../schemas/errors.js';
import { SA_PIPELINE, SA_TENANT, SA_TRIGGER } from '../schemas/workflow-ids.js';

export interface ReconciliationStatus {
  id: string;
  status: string;
  progress?: ReconcileHeartbeat['progress'];
  attempt?: number;
  result?: unknown;
  error?: string;
}

export class ReconciliationsService {
  constructor(
    readonly client: Client,
    readonly taskQueue: string,
  ) {}

  async start(
    tenant: string,
    body: { left: unknown; right: unknown; options?: unknown; heartbeatTimeoutMs?: number },
  ): Promise<{ id: string }> {
    const problems: string[] = [];
    const ref = (v: unknown, side: string) => {
      const r = parseReconcileInput(v);
      if (!r.success)
        problems.push(
          ...r.error.issues.map((i) => `${side}${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`),
        );
      else if ('task' in r.data)
        problems.push(
          `${side}: {task} reads another task's output and exists only in a pipeline; name a dataset, a file or a connection`,
        );
      return r.success ? r.data : undefined;
    };
    const left = ref(body.left, 'left');
    const right = ref(body.right, 'right');
    const opts = ReconcileOptions.partial()
      .strict()
      .safeParse(body.options ?? {});
    if (!opts.success) problems.push(...opts.error.issues.map((i) => `options.${i.path.join('.')}: ${i.message}`));
    else if (opts.data.clusterId && opts.data.engine !== 'spark')
      problems.push(`options.clusterId: ${CLUSTER_ID_NEEDS_SPARK}`);
    if (problems.length) throw new RequestError(problems.join('; '), 400);
    const id = `reconcile/${tenant}/${new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
    const input: ReconciliationInput = {
      tenant,
      left: left!,
      right: right!,
      options: opts.data,
      heartbeatTimeoutMs: body.heartbeatTimeoutMs,
    };
    await this.client.workflow.start(reconciliationRun, {
      taskQueue: this.taskQueue,
      workflowId: id,
      args: [input],
      typedSearchAttributes: [
        { key: SA_PIPELINE, value: 'reconcile' },
        { key: SA_TENANT, value: tenant },
        { key: SA_TRIGGER, value: 'manual' },
      ],
      staticSummary: `reconcile ${inputLabel(left!)} ⇄ ${inputLabel(right!)}`,
    });
    return { id };
  }

  /** `owner` (the API's ownership check) sees the workflow's StrataTenant before anything is read. */
  async get(id: string, owner?: (tenant: string | undefined) => void): Promise<ReconciliationStatus> {
    const h = this.client.workflow.getHandle(id);
    let d;
    try {
      d = await h.describe();
    } catch (e) {
      if (e instanceof WorkflowNotFoundError || (e as Error).name === 'WorkflowNotFoundError')
        throw new RequestError(`no reconciliation ${id}`, 404);
      throw e;
    }
    owner?.(d.typedSearchAttributes.get(SA_TENANT));
    const status = d.status.name.toLowerCase();
    if (status === 'running') {
      const pending = d.raw.pendingActivities?.[0];
      const payload = pending?.heartbeatDetails?.payloads?.[0];
      const hb = payload
        ? await decodePayload<ReconcileHeartbeat>(this.client.options.loadedDataConverter, payload)
        : undefined;
      return { id, status, progress: hb?.progress, attempt: pending?.attempt ?? undefined };
    }
    if (status === 'completed') return { id, status, result: await h.result() };
    const err = await h.result().then(
      () => 'ended',
      (e: Error & { cause?: Error & { cause?: Error } }) => e.cause?.cause?.message ?? e.cause?.message ?? e.message,
    );
    return { id, status, error: String(err) };
  }

  async cancel(id: string, owner?: (tenant: string | undefined) => void): Promise<void> {
    const s = await this.get(id, owner);
    if (s.status !== 'running') throw new RequestError(`reconciliation ${id} has already ended (${s.status})`, 409);
    await this.client.workflow.getHandle(id).cancel();
  }
}
