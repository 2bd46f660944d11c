/** /health, /ready and /metrics (Prometheus text). */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ApiContext } from './context.js';

export interface Metrics {
  registry: Registry;
  runsStarted: Counter<'trigger'>;
  apiLatency: Histogram<'method' | 'route' | 'status'>;
}

export function createMetrics(db: ApiContext['db']): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'strata_api_' });
  const runsStarted = new Counter({ name: 'strata_runs_started_total', help: 'Runs started through the API', labelNames: ['trigger'], registers: [registry] });
  const apiLatency = new Histogram({ name: 'strata_api_request_seconds', help: 'API request latency', labelNames: ['method', 'route', 'status'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] });
  new Gauge({
    name: 'strata_runs',
    help: 'Runs in the runs index by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      this.reset();
      const rows = (await db.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM runs GROUP BY status')).rows;
      for (const r of rows) this.set({ status: r.status }, r.n);
    },
  });
  new Gauge({
    name: 'strata_task_duration_seconds_avg',
    help: 'Average task duration over finished runs in the runs index, by pipeline',
    labelNames: ['pipeline'],
    registers: [registry],
    async collect() {
      this.reset();
      const rows = (
        await db.query<{ pipeline_id: string; avg: number }>(
          `SELECT pipeline_id, avg(extract(epoch FROM ((t.value->>'endedAt')::timestamptz - (t.value->>'startedAt')::timestamptz)))::float AS avg
           FROM runs, jsonb_each(runs.tasks) t WHERE runs.status <> 'running' AND t.value ? 'startedAt' AND t.value ? 'endedAt' AND NOT t.value ? 'reusedFrom'
           GROUP BY pipeline_id`,
        )
      ).rows;
      for (const r of rows) if (r.avg !== null) this.set({ pipeline: r.pipeline_id }, r.avg);
    },
  });
  new Gauge({
    name: 'strata_triggers_queued',
    help: 'Accepted triggers not started in Temporal yet (the outbox backlog), and the age of the oldest in seconds',
    labelNames: ['measure'],
    registers: [registry],
    async collect() {
      const r = (await db.query<{ n: number; age: number | null }>(`SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float AS age FROM run_triggers WHERE started_at IS NULL`)).rows[0];
      this.set({ measure: 'count' }, r.n);
      this.set({ measure: 'oldest_seconds' }, r.age ?? 0);
    },
  });
  return { registry, runsStarted, apiLatency };
}

export function systemRoutes(app: FastifyInstance, ctx: ApiContext) {
  app.get('/health', { schema: { tags: ['system'], summary: 'Liveness' } }, async () => ({ ok: true }));
  app.get('/ready', { schema: { tags: ['system'], summary: 'Readiness: Temporal and the metastore answer' } }, async (_req, reply) => {
    const checks: Record<string, string> = {};
    await ctx.db.query('SELECT 1').then(
      () => (checks.metastore = 'ok'),
      (e: Error) => (checks.metastore = e.message),
    );
    await ctx.client.workflowService.getSystemInfo({}).then(
      () => (checks.temporal = 'ok'),
      (e: Error) => (checks.temporal = e.message),
    );
    const ok = Object.values(checks).every((v) => v === 'ok');
    return reply.status(ok ? 200 : 503).send({ ok, checks });
  });
  app.get('/metrics', { schema: { tags: ['system'], summary: 'Prometheus metrics' } }, async (_req, reply) => reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()));
}
