/**
 * Speaks the Airbyte public API v1 over fetch (no SDK: the official one is generated,
 * heavy, and lags the spec's `queued` status). Bearer tokens come from client
 * credentials held by the worker; they never appear in errors or results.
 */
import { z } from 'zod';
import { recordOf } from '../../schemas/guards.js';

export const AIRBYTE_TERMINAL = ['succeeded', 'failed', 'cancelled'];

// Airbyte's answers are checked against the public API's response schemas (the fields Strata
// reads, required as the API requires them); fields beyond these are kept as they came.

/** A job (JobResponse). */
export const AirbyteJob = z.looseObject({
  jobId: z.number(),
  status: z.string(),
  jobType: z.string(),
  startTime: z.string(),
  connectionId: z.string(),
  lastUpdatedAt: z.string().optional(),
  duration: z.string().optional(),
  bytesSynced: z.number().optional(),
  rowsSynced: z.number().optional(),
});
export type AirbyteJob = z.infer<typeof AirbyteJob>;

export type IngestionKind = 'sources' | 'destinations' | 'connections';
export const INGESTION_KINDS: readonly IngestionKind[] = ['sources', 'destinations', 'connections'];

/** `GET /sources|destinations|connections` query (workspaceIds sent as repeated parameters). */
export interface ListQuery {
  workspaceIds?: string[];
  includeDeleted?: boolean;
  limit?: number;
  offset?: number;
}

/** A list answer: one page, with links to the neighbouring pages when there are any. */
export interface Page<T> {
  data: T[];
  next?: string;
  previous?: string;
}

function pageOf<T>(item: z.ZodType<T>): z.ZodType<Page<T>> {
  return z.looseObject({ data: z.array(item), next: z.string().optional(), previous: z.string().optional() });
}

/** Connector configuration: free-form per connector, and may hold secrets (never log it). */
export type ConnectorConfiguration = Record<string, unknown>;

export interface SourceCreateRequest {
  name: string;
  workspaceId: string;
  configuration: ConnectorConfiguration;
  definitionId?: string;
  secretId?: string;
}
export interface SourcePatchRequest {
  name?: string;
  workspaceId?: string;
  configuration?: ConnectorConfiguration;
  secretId?: string;
}
/** The fields the public API's SourceResponse and DestinationResponse share. */
const connectorResponse = {
  name: z.string(),
  definitionId: z.string(),
  workspaceId: z.string(),
  configuration: z.record(z.string(), z.unknown()),
  createdAt: z.number(),
};
export const SourceResponse = z.looseObject({ sourceId: z.string(), sourceType: z.string(), ...connectorResponse });
export type SourceResponse = z.infer<typeof SourceResponse>;

export interface DestinationCreateRequest {
  name: string;
  workspaceId: string;
  configuration: ConnectorConfiguration;
  definitionId?: string;
}
export interface DestinationPatchRequest {
  name?: string;
  configuration?: ConnectorConfiguration;
}
export const DestinationResponse = z.looseObject({
  destinationId: z.string(),
  destinationType: z.string(),
  ...connectorResponse,
});
export type DestinationResponse = z.infer<typeof DestinationResponse>;

export interface ConnectionSchedule {
  scheduleType: string;
  cronExpression?: string;
  basicTiming?: string;
}
export interface StreamConfigurations {
  streams?: Record<string, unknown>[];
}
const NamespaceDefinition = z.enum(['source', 'destination', 'custom_format']);
const NonBreakingBehavior = z.enum(['ignore', 'disable_connection', 'propagate_columns', 'propagate_fully']);
const ConnectionStatus = z.enum(['active', 'inactive', 'deprecated', 'locked']);
interface ConnectionSettings {
  name?: string;
  configurations?: StreamConfigurations;
  schedule?: ConnectionSchedule;
  namespaceDefinition?: z.infer<typeof NamespaceDefinition>;
  namespaceFormat?: string;
  prefix?: string;
  nonBreakingSchemaUpdatesBehavior?: z.infer<typeof NonBreakingBehavior>;
  status?: z.infer<typeof ConnectionStatus>;
}
export interface ConnectionCreateRequest extends ConnectionSettings {
  sourceId: string;
  destinationId: string;
}
export type ConnectionPatchRequest = ConnectionSettings;
export const ConnectionResponse = z.looseObject({
  connectionId: z.string(),
  name: z.string(),
  sourceId: z.string(),
  destinationId: z.string(),
  workspaceId: z.string(),
  status: ConnectionStatus,
  schedule: z.looseObject({
    scheduleType: z.string(),
    cronExpression: z.string().optional(),
    basicTiming: z.string().optional(),
  }),
  configurations: z.looseObject({ streams: z.array(z.record(z.string(), z.unknown())).optional() }),
  createdAt: z.number(),
  tags: z.array(z.looseObject({ tagId: z.string(), workspaceId: z.string(), name: z.string(), color: z.string() })),
  statusReason: z.string().optional(),
  namespaceDefinition: NamespaceDefinition.optional(),
  namespaceFormat: z.string().optional(),
  prefix: z.string().optional(),
  nonBreakingSchemaUpdatesBehavior: NonBreakingBehavior.optional(),
});
export type ConnectionResponse = z.infer<typeof ConnectionResponse>;

export interface IngestionTypes {
  sources: { create: SourceCreateRequest; patch: SourcePatchRequest; response: SourceResponse };
  destinations: { create: DestinationCreateRequest; patch: DestinationPatchRequest; response: DestinationResponse };
  connections: { create: ConnectionCreateRequest; patch: ConnectionPatchRequest; response: ConnectionResponse };
}

const RESPONSES: { [K in IngestionKind]: z.ZodType<IngestionTypes[K]['response']> } = {
  sources: SourceResponse,
  destinations: DestinationResponse,
  connections: ConnectionResponse,
};

const AccessToken = z.looseObject({ access_token: z.string(), expires_in: z.number().optional() });

export interface AirbyteConfig {
  /** e.g. https://api.airbyte.com/v1 or http://host/api/public/v1 */
  baseUrl: string;
  clientId: string;
  clientSecret: string;
}

export class AirbyteError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    /** Airbyte's own explanation (the problem body's detail), when it gave one. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'AirbyteError';
  }
  get retryable() {
    return this.status >= 500 || this.status === 429 || this.status === 0;
  }
}

/**
 * An answer's JSON body checked against what the API documents for it; one that does not
 * fit fails as a bad gateway answer naming the request and the fields that were wrong.
 */
async function parseAnswer<T>(res: Response, schema: z.ZodType<T>, method: string, path: string): Promise<T> {
  const what = `Airbyte ${method} ${path.replace(/\?.*$/, '')}`;
  let body: unknown;
  try {
    body = await res.json();
  } catch (e) {
    throw new AirbyteError(
      502,
      'invalid-response',
      `${what}: the answer is not JSON: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const r = schema.safeParse(body);
  if (!r.success)
    throw new AirbyteError(
      502,
      'invalid-response',
      `${what}: the answer does not fit the API: ${z.prettifyError(r.error).replace(/\n/g, ' ')}`,
    );
  return r.data;
}

export class AirbyteClient {
  private token?: { value: string; expiresAt: number };
  constructor(
    private readonly config: AirbyteConfig,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {
    if (!config.baseUrl) throw new Error('Airbyte base URL is missing: set AIRBYTE_URL');
  }

  private url(path: string) {
    return `${this.config.baseUrl.replace(/\/+$/, '')}${path}`;
  }

  private async accessToken(signal?: AbortSignal): Promise<string> {
    if (this.token && this.token.expiresAt > Date.now() + 10_000) return this.token.value;
    const res = await this.raw(
      'POST',
      '/applications/token',
      { client_id: this.config.clientId, client_secret: this.config.clientSecret, grant_type: 'client_credentials' },
      undefined,
      signal,
    );
    const body = await parseAnswer(res, AccessToken, 'POST', '/applications/token');
    this.token = { value: body.access_token, expiresAt: Date.now() + (body.expires_in ?? 180) * 1000 };
    return this.token.value;
  }

  private async raw(
    method: string,
    path: string,
    body: unknown,
    token: string | undefined,
    signal?: AbortSignal,
  ): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path), {
        method,
        headers: {
          accept: 'application/json',
          ...(body ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
        signal,
      });
    } catch (e) {
      throw new AirbyteError(0, 'network', `Airbyte ${method} ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (res.ok) return res;
    let problem: Record<string, unknown> = {};
    try {
      problem = recordOf(await res.json());
    } catch {
      /* not a problem body */
    }
    const field = (k: string) => (typeof problem[k] === 'string' ? problem[k] : undefined);
    if (res.status === 401) this.token = undefined;
    const detail = field('detail') ?? field('message');
    throw new AirbyteError(
      res.status,
      field('type') ?? String(res.status),
      `Airbyte ${method} ${path}: ${res.status} ${field('title') ?? ''}${detail ? `: ${detail}` : ''}`.trim(),
      detail,
    );
  }

  private async json<T>(
    schema: z.ZodType<T>,
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> {
    return parseAnswer(await this.authed(method, path, body, signal), schema, method, path);
  }

  private async authed(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await this.raw(method, path, body, await this.accessToken(signal), signal);
    } catch (e) {
      // A token revoked or expired early: fetch a new one once, then give up.
      if (!(e instanceof AirbyteError) || e.status !== 401) throw e;
      res = await this.raw(method, path, body, await this.accessToken(signal), signal);
    }
    return res;
  }

  /** Starts a sync; if one already runs for the connection (409), adopts it. */
  async startSync(connectionId: string, signal?: AbortSignal): Promise<{ job: AirbyteJob; adopted: boolean }> {
    try {
      return {
        job: await this.json(AirbyteJob, 'POST', '/jobs', { connectionId, jobType: 'sync' }, signal),
        adopted: false,
      };
    } catch (e) {
      if (!(e instanceof AirbyteError) || e.status !== 409) throw e;
      const running = await this.listJobs(connectionId, 'running', signal);
      const job = running.find((j) => j.jobType === 'sync') ?? running[0];
      if (!job) throw e;
      return { job, adopted: true };
    }
  }

  async listJobs(connectionId: string, status: string, signal?: AbortSignal): Promise<AirbyteJob[]> {
    const q = new URLSearchParams({ connectionId, status, jobType: 'sync', limit: '20', orderBy: 'createdAt|DESC' });
    return (await this.json(pageOf(AirbyteJob), 'GET', `/jobs?${q}`, undefined, signal)).data;
  }

  getJob(jobId: number | string, signal?: AbortSignal): Promise<AirbyteJob> {
    return this.json(AirbyteJob, 'GET', `/jobs/${jobId}`, undefined, signal);
  }

  /** Cancels; a job that is no longer running (409) or gone (404) needs nothing more. */
  async cancelJob(jobId: number | string, signal?: AbortSignal): Promise<string> {
    try {
      return (await this.json(AirbyteJob, 'DELETE', `/jobs/${jobId}`, undefined, signal)).status;
    } catch (e) {
      if (e instanceof AirbyteError && (e.status === 409 || e.status === 404)) return 'not-running';
      throw e;
    }
  }

  // Sources, destinations and connections (the ingestion half). A delete answers 204 with no body.

  /** One page of a workspace's sources, destinations or connections. */
  listResources<K extends IngestionKind>(
    kind: K,
    query: ListQuery = {},
    signal?: AbortSignal,
  ): Promise<Page<IngestionTypes[K]['response']>> {
    const q = new URLSearchParams();
    for (const w of query.workspaceIds ?? []) q.append('workspaceIds', w);
    if (query.includeDeleted !== undefined) q.set('includeDeleted', String(query.includeDeleted));
    if (query.limit !== undefined) q.set('limit', String(query.limit));
    if (query.offset !== undefined) q.set('offset', String(query.offset));
    const qs = q.toString();
    return this.json(pageOf(RESPONSES[kind]), 'GET', `/${kind}${qs ? `?${qs}` : ''}`, undefined, signal);
  }

  getResource<K extends IngestionKind>(
    kind: K,
    id: string,
    signal?: AbortSignal,
  ): Promise<IngestionTypes[K]['response']> {
    return this.json(RESPONSES[kind], 'GET', `/${kind}/${encodeURIComponent(id)}`, undefined, signal);
  }

  createResource<K extends IngestionKind>(
    kind: K,
    body: IngestionTypes[K]['create'],
    signal?: AbortSignal,
  ): Promise<IngestionTypes[K]['response']> {
    return this.json(RESPONSES[kind], 'POST', `/${kind}`, body, signal);
  }

  patchResource<K extends IngestionKind>(
    kind: K,
    id: string,
    body: IngestionTypes[K]['patch'],
    signal?: AbortSignal,
  ): Promise<IngestionTypes[K]['response']> {
    return this.json(RESPONSES[kind], 'PATCH', `/${kind}/${encodeURIComponent(id)}`, body, signal);
  }

  async deleteResource(kind: IngestionKind, id: string, signal?: AbortSignal): Promise<void> {
    await this.authed('DELETE', `/${kind}/${encodeURIComponent(id)}`, undefined, signal);
  }

  listSources = (q?: ListQuery, signal?: AbortSignal) => this.listResources('sources', q, signal);
  getSource = (id: string, signal?: AbortSignal) => this.getResource('sources', id, signal);
  createSource = (body: SourceCreateRequest, signal?: AbortSignal) => this.createResource('sources', body, signal);
  patchSource = (id: string, body: SourcePatchRequest, signal?: AbortSignal) =>
    this.patchResource('sources', id, body, signal);
  deleteSource = (id: string, signal?: AbortSignal) => this.deleteResource('sources', id, signal);

  listDestinations = (q?: ListQuery, signal?: AbortSignal) => this.listResources('destinations', q, signal);
  getDestination = (id: string, signal?: AbortSignal) => this.getResource('destinations', id, signal);
  createDestination = (body: DestinationCreateRequest, signal?: AbortSignal) =>
    this.createResource('destinations', body, signal);
  patchDestination = (id: string, body: DestinationPatchRequest, signal?: AbortSignal) =>
    this.patchResource('destinations', id, body, signal);
  deleteDestination = (id: string, signal?: AbortSignal) => this.deleteResource('destinations', id, signal);

  listConnections = (q?: ListQuery, signal?: AbortSignal) => this.listResources('connections', q, signal);
  getConnection = (id: string, signal?: AbortSignal) => this.getResource('connections', id, signal);
  createConnection = (body: ConnectionCreateRequest, signal?: AbortSignal) =>
    this.createResource('connections', body, signal);
  patchConnection = (id: string, body: ConnectionPatchRequest, signal?: AbortSignal) =>
    this.patchResource('connections', id, body, signal);
  deleteConnection = (id: string, signal?: AbortSignal) => this.deleteResource('connections', id, signal);
}

/**
 * The client from AIRBYTE_URL / AIRBYTE_CLIENT_ID / AIRBYTE_CLIENT_SECRET (worker and API alike):
 * undefined without AIRBYTE_URL; an error naming what is missing when only part is set.
 */
export function airbyteClientFromEnv(env: NodeJS.ProcessEnv = process.env): AirbyteClient | undefined {
  if (!env.AIRBYTE_URL) return undefined;
  const { AIRBYTE_CLIENT_ID: clientId, AIRBYTE_CLIENT_SECRET: clientSecret } = env;
  if (!clientId || !clientSecret) {
    const missing = ['AIRBYTE_CLIENT_ID', 'AIRBYTE_CLIENT_SECRET'].filter((k) => !env[k]);
    throw new Error(
      `AIRBYTE_URL is set but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not: set the Airbyte application's client credentials`,
    );
  }
  return new AirbyteClient({ baseUrl: env.AIRBYTE_URL, clientId, clientSecret });
}
