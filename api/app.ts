/** The HTTP API: Fastify, bearer keys with tenants and roles, OpenAPI docs at /docs. */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Client } from '@temporalio/client';
import Fastify, { type FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BackfillBody, ClusterBody, ClusterResizeBody, KeyBody, ReconciliationBody, ScheduleBody, SchedulePatch, TransformBody, TriggerRunBody } from '../schemas/api.js';
import type { Config } from '../schemas/config.js';
import type { Db } from '../store/db.js';
import { cachedKeyLookup } from '../store/keys.js';
import { authenticator } from './auth.js';
import { TriggerDispatcher, type DispatcherOptions } from './dispatcher.js';
import { clusterRoutes } from './clusters.js';
import { sparkPolicyFromEnv } from '../schemas/spark-policy.js';
import { ClustersService } from './clusters-service.js';
import { parseTenantTiers } from '../schemas/external.js';
import { ConnectionBody, ConnectionPatch, DestinationBody, DestinationPatch, parseAirbyteWorkspaces, SourceBody, SourcePatch } from '../schemas/ingestion.js';
import type { AirbyteClient } from '../activities/airbyte/client.js';
import { ingestionRoutes } from './ingestion.js';
import type { ApiContext } from './context.js';
import { installErrorHandler } from './errors.js';
import { keyRoutes } from './keys.js';
import { datasetRoutes } from './datasets.js';
import type { LakeDeps } from '../activities/lake/engine.js';
import type { SparkK8sClient } from '../activities/spark-k8s/client.js';
import { pipelineRoutes } from './pipelines.js';
import { ReconciliationsService } from './reconciliations-service.js';
import { reconciliationRoutes } from './reconciliations.js';
import { runRoutes } from './runs.js';
import { RunsService } from './runs-service.js';
import { scheduleRoutes } from './schedules.js';
import { SchedulesService } from './schedules-service.js';
import { createMetrics, systemRoutes } from './system.js';

/** Bodies documented in OpenAPI (validated with zod in the handlers, for clearer errors). */
const DOC_BODIES: Record<string, z.ZodType> = {
  'POST /api/v1/pipelines/:id/runs': TriggerRunBody,
  'POST /api/v1/transform': TransformBody,
  'POST /api/v1/pipelines/:id/schedules': ScheduleBody,
  'PATCH /api/v1/pipelines/:id/schedules/:sid': SchedulePatch,
  'POST /api/v1/pipelines/:id/schedules/:sid/backfill': BackfillBody,
  'POST /api/v1/keys': KeyBody,
  'POST /api/v1/reconciliations': ReconciliationBody,
  'POST /api/v1/clusters': ClusterBody,
  'POST /api/v1/clusters/:name/resize': ClusterResizeBody,
  'POST /api/v1/ingestion/sources': SourceBody,
  'PATCH /api/v1/ingestion/sources/:id': SourcePatch,
  'POST /api/v1/ingestion/destinations': DestinationBody,
  'PATCH /api/v1/ingestion/destinations/:id': DestinationPatch,
  'POST /api/v1/ingestion/connections': ConnectionBody,
  'PATCH /api/v1/ingestion/connections/:id': ConnectionPatch,
};

export interface ApiDeps {
  db: Db;
  client: Client;
  config: Config;
  uiUrl?: string;
  lake?: LakeDeps;
  /** Kubernetes access for live Spark driver logs (GET …/tasks/{task}/logs). */
  spark?: SparkK8sClient;
  /** Trigger dispatcher settings; `false` leaves accepted triggers queued (tests of the outbox). */
  dispatcher?: DispatcherOptions | false;
  /** Airbyte for /api/v1/ingestion (api/server.ts builds it from AIRBYTE_URL and its credentials). */
  airbyte?: AirbyteClient;
}

export async function buildApi(deps: ApiDeps): Promise<{ app: FastifyInstance; ctx: ApiContext }> {
  const { config } = deps;
  const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024, routerOptions: { maxParamLength: 500 } });
  let dispatcher: TriggerDispatcher | undefined;
  const runs = new RunsService(deps.client, {
    taskQueue: config.STRATA_TASK_QUEUE,
    namespace: config.TEMPORAL_NAMESPACE,
    uiUrl: deps.uiUrl ?? config.TEMPORAL_UI_URL,
    outbox: deps.db,
    onEnqueued: () => dispatcher?.kick(),
  });
  if (deps.dispatcher !== false) dispatcher = new TriggerDispatcher(deps.db, runs, deps.dispatcher ?? {});
  const ctx: ApiContext = {
    db: deps.db,
    client: deps.client,
    runs,
    schedules: new SchedulesService(deps.client, deps.db, config.STRATA_TASK_QUEUE),
    reconciliations: new ReconciliationsService(deps.client, config.STRATA_TASK_QUEUE),
    clusters: new ClustersService(deps.client, {
      taskQueue: config.STRATA_TASK_QUEUE,
      tenantTiers: parseTenantTiers(config.STRATA_TENANT_TIERS),
      sparkImage: config.STRATA_SPARK_IMAGE,
      sparkPolicy: sparkPolicyFromEnv(config),
    }),
    config,
    metrics: createMetrics(deps.db),
    keyLookup: cachedKeyLookup(deps.db),
    lake: deps.lake,
    spark: deps.spark,
    airbyte: deps.airbyte,
    airbyteWorkspaces: parseAirbyteWorkspaces(config.STRATA_AIRBYTE_WORKSPACES),
  };

  // YAML (or any text) bodies arrive as strings; JSON as objects.
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'], { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.setValidatorCompiler(() => (data) => ({ value: data }));
  app.addHook('onRoute', (route) => {
    const body = DOC_BODIES[`${route.method} ${route.url}`];
    if (body && route.schema) route.schema = { ...route.schema, body: z.toJSONSchema(body, { io: 'input', unrepresentable: 'any' }) };
  });
  await app.register(swagger, {
    openapi: {
      info: { title: 'Strata API', version: '1', description: 'Pipelines as durable Temporal workflows. Authenticate with `Authorization: Bearer <key>`.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  installErrorHandler(app);
  const auth = authenticator(deps.db, config.STRATA_BOOTSTRAP_ADMIN_KEY ? { key: config.STRATA_BOOTSTRAP_ADMIN_KEY, tenant: config.STRATA_BOOTSTRAP_TENANT } : undefined, ctx.keyLookup);
  app.addHook('onRequest', async (req, reply) => {
    (req as { startedAt?: bigint }).startedAt = process.hrtime.bigint();
    if (req.url.startsWith('/api/') || req.url.startsWith('/runs/')) await auth(req, reply);
  });
  app.addHook('onResponse', async (req, reply) => {
    const t = (req as { startedAt?: bigint }).startedAt;
    if (t) ctx.metrics.apiLatency.observe({ method: req.method, route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) }, Number(process.hrtime.bigint() - t) / 1e9);
  });

  systemRoutes(app, ctx);
  pipelineRoutes(app, ctx);
  runRoutes(app, ctx);
  scheduleRoutes(app, ctx);
  keyRoutes(app, ctx);
  reconciliationRoutes(app, ctx);
  datasetRoutes(app, ctx);
  clusterRoutes(app, ctx);
  ingestionRoutes(app, ctx);
  if (dispatcher) {
    const d = dispatcher;
    app.addHook('onReady', async () => void d.start());
    app.addHook('onClose', async () => d.stop());
  }
  await app.ready();
  return { app, ctx };
}
