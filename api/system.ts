/**
 * /health, /ready and /metrics (Prometheus text). Both answer without a key, so they carry
 * nothing of a tenant: /ready names the dependency that is not ready, never its error;
 * /metrics serves only metrics without tenant or pipeline labels, and the per-pipeline
 * ones only to a scrape with `Authorization: Bearer $STRATA_METRICS_TOKEN`.
 */
import type { FastifyInstance } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { RequestError } from '../schemas/errors.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ApiContext } from './context.js';

export interface Metrics {
  /** Metrics that name no tenant or pipeline: served to anyone. */
  registry: Registry;
  /** Metrics labelled by pipeline: served only with the metrics token. */
  tenantRegistry: Registry;
  runsStarted: Counter<'trigger'>;
  apiLatency: Histogram<'method' | 'route' | 'status'>;
}

export function createMetrics(db: ApiContext['db']): Metrics {
  const registry = new Registry();
  const tenantRegistry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'strata_api_' });
  const runsStarted = new Counter({
    name: 'strata_runs_started_total',
    help: 'Runs started through the API',
    labelNames: ['trigger'],
    registers: [registry],
  });
  const apiLatency = new Histogram({
    name: 'strata_api_request_seconds',
    help: 'API request latency',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  new Gauge({
    name: 'strata_runs',
    help: 'Runs in the runs index by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      this.reset();
      const rows = (
        await db.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM runs GROUP BY status')
      ).rows;
      for (const r of rows) this.set({ status: r.status }, r.n);
    },
  });
  new Gauge({
    name: 'strata_task_duration_seconds_avg',
    help: 'Average task duration over finished runs in the runs index, by pipeline',
    labelNames: ['pipeline'],
    registers: [tenantRegistry],
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
      const r = (
        await db.query<{ n: number; age: number | null }>(
          `SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float AS age FROM run_triggers WHERE started_at IS NULL`,
        )
      ).rows[0];
      this.set({ measure: 'count' }, r.n);
      this.set({ measure: 'oldest_seconds' }, r.age ?? 0);
    },
  });
  new Gauge({
    name: 'strata_sweeper_stopped',
    help: 'Jobs and clusters the orphan sweeper stopped (their owning workflow had closed), by kind, all time',
    labelNames: ['kind'],
    registers: [registry],
    async collect() {
      this.reset();
      const rows = (
        await db.query<{ kind: string; n: number }>(
          'SELECT kind, count(*)::int AS n FROM swept_resources GROUP BY kind',
        )
      ).rows;
      for (const kind of [
        'spark-application',
        'spark-connect',
        'emr-cluster',
        'external-job',
        'emr-step',
        'airbyte-job',
      ])
        this.set({ kind }, 0);
      for (const r of rows) this.set({ kind: r.kind }, r.n);
    },
  });
  new Gauge({
    name: 'strata_sweeper_last_sweep_seconds',
    help: 'When the orphan sweeper last finished a sweep (Unix time; 0: never)',
    registers: [registry],
    async collect() {
      const r = (
        await db.query<{ t: number | null }>('SELECT extract(epoch FROM max(swept_at))::float AS t FROM sweeps')
      ).rows[0];
      this.set(r.t ?? 0);
    },
  });
  return { registry, tenantRegistry, runsStarted, apiLatency };
}

export function systemRoutes(app: FastifyInstance, ctx: ApiContext) {
  app.get('/health', { schema: { tags: ['system'], summary: 'Liveness' } }, async () => ({ ok: true }));
  app.get(
    '/ready',
    { schema: { tags: ['system'], summary: 'Readiness: Temporal and the metastore answer' } },
    async (_req, reply) => {
      const checks: Record<string, string> = {};
      // The reason stays in the process: an error can name hosts, users or databases.
      await ctx.db.query('SELECT 1').then(
        () => (checks.metastore = 'ok'),
        () => (checks.metastore = 'unavailable'),
      );
      await ctx.client.workflowService.getSystemInfo({}).then(
        () => (checks.temporal = 'ok'),
        () => (checks.temporal = 'unavailable'),
      );
      const ok = Object.values(checks).every((v) => v === 'ok');
      return reply.status(ok ? 200 : 503).send({ ok, checks });
    },
  );
  const token = ctx.config.STRATA_METRICS_TOKEN
    ? createHash('sha256').update(`Bearer ${ctx.config.STRATA_METRICS_TOKEN}`).digest()
    : undefined;
  app.get(
    '/metrics',
    { schema: { tags: ['system'], summary: 'Prometheus metrics (per-pipeline ones with the metrics token)' } },
    async (req, reply) => {
      let registry = ctx.metrics.registry;
      if (req.headers.authorization !== undefined) {
        const given = createHash('sha256').update(req.headers.authorization).digest();
        if (!token || !timingSafeEqual(given, token))
          throw new RequestError(
            token
              ? 'wrong metrics token'
              : 'this API has no metrics token (STRATA_METRICS_TOKEN); scrape /metrics without Authorization',
            401,
          );
        registry = Registry.merge([ctx.metrics.registry, ctx.metrics.tenantRegistry]);
      }
      return reply.type(registry.contentType).send(await registry.metrics());
    },
  );
}
