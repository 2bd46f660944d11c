/** The HTTP API: Fastify, bearer keys with tenants and roles, OpenAPI docs at /docs. */
import { channelsFromEnv, type Channels } from '../activities/notify/channels.js';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Client } from '@temporalio/client';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  BackfillBody,
  ClusterBody,
  ClusterResizeBody,
  KeyBody,
  QueryBody,
  ReconciliationBody,
  ScheduleBody,
  SchedulePatch,
  TransformBody,
  TriggerRunBody,
} from '../schemas/api.js';
import type { Config } from '../schemas/config.js';
import type { Db } from '../store/db.js';
import { cachedKeyLookup } from '../store/keys.js';
import { authenticator } from './auth.js';
import { TriggerDispatcher, type DispatcherOptions } from './dispatcher.js';
import { clusterRoutes } from './clusters.js';
import { codecRoutes } from './codec.js';
import { sparkPolicyFromEnv } from '../schemas/spark-policy.js';
import { ClustersService } from '../client/clusters.js';
import { parseTenantTiers } from '../schemas/external.js';
import {
  ConnectionBody,
  ConnectionPatch,
  DestinationBody,
  DestinationPatch,
  parseAirbyteWorkspaces,
  SourceBody,
  SourcePatch,
} from '../schemas/ingestion.js';
import type { AirbyteClient } from '../activities/airbyte/client.js';
import { ingestionRoutes } from './ingestion.js';
import type { ApiContext } from './context.js';
import { checkRequestValues, installBodyParsers, installErrorHandler, stderrLog, type ApiLog } from './errors.js';
import { BODY_LIMITS, LIMITS } from '../schemas/limits.js';
import { keyRoutes } from './keys.js';
import { libraryRoutes } from './libraries.js';
import { icebergRoutes } from './iceberg.js';
import type { S3Config } from '../activities/s3/client.js';
import { docBodySchema, withErrorResponses } from './openapi.js';
import { datasetRoutes } from './datasets.js';
import type { LakeDeps } from '../activities/lake/engine.js';
import type { SparkK8sClient } from '../activities/spark-k8s/client.js';
import { pipelineRoutes } from './pipelines.js';
import { QueriesService } from './queries-service.js';
import { queryRoutes } from './queries.js';
import type { Connections } from '../activities/sql/connections.js';
import { ReconciliationsService } from '../client/reconciliations.js';
import { reconciliationRoutes } from './reconciliations.js';
import { runRoutes } from './runs.js';
import { RunsService } from '../client/runs.js';
import { scheduleRoutes } from './schedules.js';
import { findSession, sessionRoutes } from './sessions.js';
import { RequestError } from '../schemas/errors.js';
import { SchedulesService } from '../client/schedules.js';
import { createMetrics, systemRoutes } from './system.js';

/** Bodies documented in OpenAPI (validated with zod in the handlers, for clearer errors). */
const DOC_BODIES = new Map<string, z.ZodType>(
  Object.entries({
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
    'POST /api/v1/queries': QueryBody,
    'PATCH /api/v1/ingestion/connections/:id': ConnectionPatch,
  }),
);

/**
 * Routes anyone may call without a key (matched routes, not URL prefixes: the router has
 * already decoded and matched the path when the auth hook runs). Every other route needs a key.
 */
const PUBLIC_ROUTES = new Set(['/health', '/ready', '/metrics']);
/**
 * Routes that decide the caller themselves: the docs (none needed), and the codec
 * (api/codec.ts: a Bearer key or its own session cookie, CORS preflight without either).
 */
const isPublicRoute = (url: string) =>
  PUBLIC_ROUTES.has(url) ||
  url === '/login' ||
  url === '/logout' ||
  url === '/docs' ||
  url.startsWith('/docs/') ||
  url.startsWith('/codec/');

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No API key needed (set for PUBLIC_ROUTES and the docs; everything else authenticates). */
    public?: boolean;
  }
}

export interface ApiDeps {
  db: Db;
  client: Client;
  config: Config;
  uiUrl?: string;
  lake?: LakeDeps;
  /** The lake's S3 settings (endpoint, region), told to Iceberg clients by /iceberg/v1/config. */
  s3?: S3Config;
  /** Kubernetes access for live Spark driver logs (GET …/tasks/{task}/logs). */
  spark?: SparkK8sClient;
  /** Trigger dispatcher settings; `false` leaves accepted triggers queued (tests of the outbox). */
  dispatcher?: DispatcherOptions | false;
  /** Airbyte for /api/v1/ingestion (workers/api.ts builds it from AIRBYTE_URL and its credentials). */
  airbyte?: AirbyteClient;
  /** Where failed requests (500s) are logged, with their request id; default one JSON line on stderr. */
  log?: ApiLog;
  /** Postgres/MySQL connections the query API may use (workers/api.ts: connectionsFromEnv, as the worker). */
  connections?: Connections;
  /** Schedule watchers' check interval and delivery retries (tests pass milliseconds). */
  scheduleWatch?: ConstructorParameters<typeof SchedulesService>[3];
  /** Notification channels; default STRATA_NOTIFY_* of the environment (as the worker reads them). */
  notifyChannels?: Channels;
  /** Query API settings (tests make chunks small). */
  queries?: Partial<Pick<ConstructorParameters<typeof QueriesService>[0], 'chunkBytes' | 'resultBytes' | 'keepMs'>>;
}

export async function buildApi(deps: ApiDeps): Promise<{ app: FastifyInstance; ctx: ApiContext }> {
  const { config } = deps;
  const app = Fastify({
    logger: false,
    bodyLimit: LIMITS.bodyBytes,
    routerOptions: { maxParamLength: 500 },
    // Our own request ids (never the caller's): every answer carries it in x-request-id.
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    // Errors before routing (a malformed URL): a 400 with the request id like any other.
    frameworkErrors: (err, req, res) => {
      const reply = res as unknown as FastifyReply;
      void reply
        .header('x-request-id', req.id)
        .status(400)
        .send({
          error:
            err.code === 'FST_ERR_BAD_URL'
              ? 'the URL is not valid: check its percent-encoding (%XX must encode UTF-8)'
              : `bad request: ${err.message}`,
          requestId: req.id,
        });
    },
  });
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
    schedules: new SchedulesService(deps.client, deps.db, config.STRATA_TASK_QUEUE, deps.scheduleWatch),
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
    notifyChannels: deps.notifyChannels ?? channelsFromEnv(),
    queries: new QueriesService({ db: deps.db, lake: deps.lake, connections: deps.connections ?? {}, ...deps.queries }),
  };

  // YAML (or any text) bodies arrive as strings; JSON as objects (checked: see installBodyParsers).
  installBodyParsers(app);
  app.setValidatorCompiler(() => (data: unknown) => ({ value: data }));
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const body = DOC_BODIES.get(`${methods.join(',')} ${route.url}`);
    if (body && route.schema) route.schema = { ...route.schema, body: docBodySchema(body) };
    if (isPublicRoute(route.url)) route.config = { ...route.config, public: true };
    for (const m of methods) {
      const limit = BODY_LIMITS.get(`${m} ${route.url}`);
      if (limit !== undefined) route.bodyLimit = limit;
    }
  });
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Strata API',
        version: '1',
        description: 'Pipelines as durable Temporal workflows. Authenticate with `Authorization: Bearer <key>`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    // Each operation's error answers (documentation only: responses are not serialized by schema).
    transformObject: (d) => withErrorResponses('openapiObject' in d ? d.openapiObject : d.swaggerObject, PUBLIC_ROUTES),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  installErrorHandler(app, deps.log ?? stderrLog);
  const auth = authenticator(
    deps.db,
    config.STRATA_BOOTSTRAP_ADMIN_KEY
      ? { key: config.STRATA_BOOTSTRAP_ADMIN_KEY, tenant: config.STRATA_BOOTSTRAP_TENANT }
      : undefined,
    ctx.keyLookup,
    (sid) => findSession(deps.db, sid),
  );
  app.addHook('onRequest', async (req, reply) => {
    (req as { startedAt?: bigint }).startedAt = process.hrtime.bigint();
    reply.header('x-request-id', req.id);
    // Decided on the matched route: an unknown path is a plain 404 (no auth to probe), a
    // public route needs nothing, and every other route (HEAD variants too) needs a key.
    if (req.is404 || req.routeOptions.config?.public) return;
    try {
      await auth(req, reply);
    } catch (e) {
      // A person's browser opening a page (not the JSON API) is sent to sign in, then back.
      if (
        e instanceof RequestError &&
        e.status === 401 &&
        req.method === 'GET' &&
        !req.url.startsWith('/api/') &&
        /\btext\/html\b/.test(String(req.headers.accept ?? ''))
      )
        return reply
          .status(303)
          .header('location', `/login?next=${encodeURIComponent(req.url)}`)
          .header('cache-control', 'no-store')
          .send();
      throw e;
    }
  });
  app.addHook('preHandler', async (req) => checkRequestValues(req));
  app.addHook('onResponse', async (req, reply) => {
    const t = (req as { startedAt?: bigint }).startedAt;
    if (t)
      ctx.metrics.apiLatency.observe(
        { method: req.method, route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) },
        Number(process.hrtime.bigint() - t) / 1e9,
      );
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
  queryRoutes(app, ctx);
  libraryRoutes(app, ctx);
  icebergRoutes(app, ctx, deps.s3);
  codecRoutes(app, ctx, auth, deps.uiUrl ?? config.TEMPORAL_UI_URL);
  sessionRoutes(app, deps.db, auth);
  if (dispatcher) {
    const d = dispatcher;
    app.addHook('onReady', async () => void d.start());
    app.addHook('onClose', async () => d.stop());
  }
  app.addHook('onClose', async () => ctx.queries.close());
  await app.ready();
  return { app, ctx };
}
