/** /api/v1/runs and /api/v1/pipelines/{id}/runs: trigger, list, inspect, cancel, repair. */
import type { FastifyInstance } from 'fastify';
import { createHash } from 'node:crypto';
import { LogsQuery, RunsCursor, RunsQuery, TransformBody, TriggerRunBody } from '../schemas/api.js';
import { validateSpec } from '../schemas/pipeline.js';
import type { RunState } from '../schemas/run.js';
import { listDeliveries } from '../store/notifications.js';
import { listRuns } from '../store/runs.js';
import { missingId, need, ownId, owns } from './auth.js';
import type { Principal } from '../store/keys.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';
import { renderGraph, runPage } from './graph.js';
import { loadPipeline } from './pipelines.js';
import { taskLog } from '../client/task-logs.js';
import { RequestError } from '../schemas/errors.js';

const strParams = (p?: Record<string, string | number | boolean>) =>
  Object.fromEntries(Object.entries(p ?? {}).map(([k, v]) => [k, String(v)]));

/** A run's state for its tenant (queued, dead-lettered, live or stored: RunsService.state); another tenant's run is a 404. */
export async function runState(ctx: ApiContext, p: Principal, runId: string): Promise<RunState> {
  ownId(p, runId, 'pipeline');
  const st = await ctx.runs.state(runId);
  owns(p, st.tenant, missingId('pipeline', runId));
  return st;
}

/** That the run is the principal's tenant's (another tenant's run is a 404), without reading its state. */
async function ownRun(ctx: ApiContext, p: Principal, runId: string): Promise<void> {
  ownId(p, runId, 'pipeline');
  owns(p, await ctx.runs.tenantOf(runId), missingId('pipeline', runId));
}

/** A task of a run, by a name from the URL (own properties only: `__proto__` is no task). */
export function taskOf(st: RunState, task: string) {
  if (!Object.hasOwn(st.tasks, task))
    throw new RequestError(`run ${st.runId} has no task ${task}: it has ${someIds(Object.keys(st.tasks))}`, 404);
  return st.tasks[task];
}

/** Task ids for a message: all of a small run's, the first few of a large one's. */
export function someIds(ids: string[], n = 20): string {
  return ids.length <= n
    ? ids.join(', ')
    : `${ids.slice(0, n).join(', ')} … (${ids.length.toLocaleString('en')} tasks)`;
}

export function runRoutes(app: FastifyInstance, ctx: ApiContext) {
  app.post<{ Params: { id: string } }>(
    '/api/v1/pipelines/:id/runs',
    {
      schema: {
        tags: ['runs'],
        summary: 'Trigger a run (202). An Idempotency-Key header makes a retried trigger return the same run.',
      },
    },
    async (req, reply) => {
      const p = need(req, 'operator');
      const body = parse(TriggerRunBody, req.body, 'body');
      const pipe = await loadPipeline(ctx, p.tenant, req.params.id, body.version);
      const idem = req.headers['idempotency-key'];
      if (idem !== undefined && (typeof idem !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(idem)))
        throw new RequestError('Idempotency-Key must be 1–200 printable characters', 400);
      // Accepted into the trigger outbox (one insert); the dispatcher starts the workflow under this id.
      const h = await ctx.runs.enqueue({
        spec: pipe.spec,
        tenant: p.tenant,
        trigger: 'api',
        params: strParams(body.params),
        only: body.only,
        withUpstream: body.withUpstream,
        logicalDate: body.logicalDate,
        pipelineVersion: pipe.version,
        runKey: idem ? `api-${createHash('sha256').update(idem).digest('hex').slice(0, 20)}` : undefined,
        idempotent: !!idem,
      });
      if (!h.existing) ctx.metrics.runsStarted.inc({ trigger: 'api' });
      return reply.status(202).send({
        runId: h.runId,
        workflowId: h.workflowId,
        status: 'queued',
        uiUrl: h.uiUrl,
        version: pipe.version,
        existing: h.existing ?? false,
      });
    },
  );

  app.post(
    '/api/v1/transform',
    { schema: { tags: ['runs'], summary: 'Run one SQL statement as a one-task pipeline (202)' } },
    async (req, reply) => {
      const p = need(req, 'operator');
      const b = parse(TransformBody, req.body, 'body');
      const r = validateSpec({
        id: 'transform',
        tasks: [
          {
            id: 'transform',
            kind: 'sql',
            sql: b.sql,
            engine: b.engine,
            ...(b.connection ? { connection: b.connection } : {}),
            ...(b.output ? { output: b.output } : {}),
          },
        ],
      });
      if (!r.ok)
        throw new RequestError(
          r.problems.map((x) => `${x.path.replace('tasks[0].', '')}: ${x.message}`).join('; '),
          400,
          r.problems,
        );
      const h = await ctx.runs.enqueue({ spec: r.spec, tenant: p.tenant, trigger: 'api' });
      ctx.metrics.runsStarted.inc({ trigger: 'transform' });
      return reply.status(202).send({ runId: h.runId, workflowId: h.workflowId, status: 'queued', uiUrl: h.uiUrl });
    },
  );

  app.get(
    '/api/v1/runs',
    { schema: { tags: ['runs'], summary: 'List runs, newest first (paginated with cursor)' } },
    async (req) => {
      const p = need(req, 'viewer');
      const q = parse(RunsQuery, req.query, 'query');
      let cursor: { startedAt: string; runId: string } | undefined;
      if (q.cursor) {
        let decoded: unknown;
        try {
          decoded = JSON.parse(Buffer.from(q.cursor, 'base64url').toString());
        } catch {
          decoded = undefined;
        }
        const c = RunsCursor.safeParse(decoded);
        if (!c.success)
          throw new RequestError(
            'cursor is not one this API gave out: pass the "next" value of the previous page unchanged',
            400,
          );
        cursor = c.data;
      }
      const rows = await listRuns(ctx.db, p.tenant, {
        pipeline: q.pipeline,
        status: q.status,
        since: q.since,
        limit: q.limit,
        cursor,
      });
      const last = rows[rows.length - 1];
      return {
        data: rows.map((r) => ({
          runId: r.run_id,
          pipeline: r.pipeline_id,
          version: r.pipeline_version,
          trigger: r.trigger,
          status: r.status,
          logicalDate: r.logical_date,
          startedAt: r.started_at,
          endedAt: r.ended_at,
          error: r.error ?? undefined,
        })),
        next:
          rows.length === q.limit && last
            ? Buffer.from(
                JSON.stringify({ startedAt: new Date(last.started_at).toISOString(), runId: last.run_id }),
              ).toString('base64url')
            : null,
      };
    },
  );

  // Run ids contain slashes: they travel URL-encoded as one path segment.
  app.get<{ Params: { run: string } }>(
    '/api/v1/runs/:run',
    { schema: { tags: ['runs'], summary: 'A run with per-task state (live while running)' } },
    async (req) => {
      const p = need(req, 'viewer');
      const st = await runState(ctx, p, req.params.run);
      return { ...st, uiUrl: ctx.runs.uiLink(st.runId) };
    },
  );

  app.get<{ Params: { run: string } }>(
    '/api/v1/runs/:run/notifications',
    {
      schema: {
        tags: ['runs'],
        summary:
          'The notifications a run sent: one per (rule, event), with channel, status (pending, delivered, failed), attempts, last error',
      },
    },
    async (req) => {
      const p = need(req, 'viewer');
      const st = await runState(ctx, p, req.params.run);
      return { data: await listDeliveries(ctx.db, p.tenant, st.runId) };
    },
  );

  app.get<{ Params: { run: string; task: string } }>(
    '/api/v1/runs/:run/tasks/:task',
    { schema: { tags: ['runs'], summary: 'One task of a run: attempts, error, outputs' } },
    async (req) => {
      const p = need(req, 'viewer');
      const st = await runState(ctx, p, req.params.run);
      const t = taskOf(st, req.params.task);
      return {
        runId: st.runId,
        task: req.params.task,
        ...t,
        logsUrl: `/api/v1/runs/${encodeURIComponent(st.runId)}/tasks/${encodeURIComponent(req.params.task)}/logs`,
      };
    },
  );

  app.get<{ Params: { run: string; task: string }; Querystring: { follow?: string; tail?: string } }>(
    '/api/v1/runs/:run/tasks/:task/logs',
    {
      schema: {
        tags: ['runs'],
        summary:
          'A task’s log as text: a Spark driver’s log streamed and followed while it runs (?follow=false to stop at what is there, ?tail=N for the last N lines), else the log tail its engine left',
      },
    },
    async (req, reply) => {
      const p = need(req, 'viewer');
      const st = await runState(ctx, p, req.params.run);
      const q = parse(LogsQuery, req.query, 'query');
      const log = await taskLog(ctx, ctx.spark, st, req.params.task, { follow: q.follow, tailLines: q.tail });
      return reply
        .header('content-type', 'text/plain; charset=utf-8')
        .header('x-strata-log-source', log.source)
        .header('x-strata-log-follow', String(log.follow))
        .send(log.body);
    },
  );

  app.post<{ Params: { run: string } }>(
    '/api/v1/runs/:run/cancel',
    { schema: { tags: ['runs'], summary: 'Cancel a running run' } },
    async (req, reply) => {
      const p = need(req, 'operator');
      await ownRun(ctx, p, req.params.run);
      await ctx.runs.cancel(req.params.run);
      return reply.status(202).send({ runId: req.params.run, cancelRequested: true });
    },
  );

  app.post<{ Params: { run: string } }>(
    '/api/v1/runs/:run/repair',
    { schema: { tags: ['runs'], summary: 'Start a run that re-runs only the failed and not-run tasks' } },
    async (req, reply) => {
      const p = need(req, 'operator');
      await ownRun(ctx, p, req.params.run);
      const h = await ctx.runs.repair(req.params.run);
      ctx.metrics.runsStarted.inc({ trigger: 'repair' });
      return reply
        .status(202)
        .send({ runId: h.runId, workflowId: h.workflowId, uiUrl: h.uiUrl, repairOf: req.params.run });
    },
  );

  app.get<{ Params: { run: string }; Querystring: { format?: string } }>(
    '/api/v1/runs/:run/graph',
    { schema: { tags: ['runs'], summary: 'The run’s DAG coloured by task state: svg, mermaid or dot' } },
    async (req, reply) => {
      const p = need(req, 'viewer');
      const format = req.query.format ?? 'svg';
      if (!['svg', 'mermaid', 'dot'].includes(format))
        throw new RequestError('format must be svg, mermaid or dot', 400);
      const st = await runState(ctx, p, req.params.run);
      const g = renderGraph(await ctx.runs.spec(st.runId), st, format as 'svg' | 'mermaid' | 'dot');
      return reply.type(format === 'svg' ? 'image/svg+xml' : 'text/plain; charset=utf-8').send(g);
    },
  );

  app.get<{ Params: { run: string } }>('/runs/:run', { schema: { hide: true } }, async (req, reply) => {
    const p = need(req, 'viewer');
    const st = await runState(ctx, p, req.params.run);
    return reply
      .type('text/html; charset=utf-8')
      .send(runPage(await ctx.runs.spec(st.runId), st, ctx.runs.uiLink(st.runId)));
  });
}
