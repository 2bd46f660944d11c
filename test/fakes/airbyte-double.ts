/**
 * An Airbyte public API v1 double (self-managed base path /api/public/v1): client-credential
 * tokens, POST /jobs answering 200 JobResponse (409 while a sync runs), GET/DELETE /jobs/{id},
 * GET /jobs filters, RFC 7807 problem bodies. Job statuses follow a timeline per connection.
 * Sources, destinations and connections: list (workspaceIds, includeDeleted, limit, offset,
 * next/previous links), get, create, patch, delete (204; then 404); required fields answered
 * with 400 problems, unknown ids and workspaces with 404, secrets masked in answers.
 */
import type http from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { sendJson, serve, type Served } from './http.js';

export const BASE_PATH = '/api/public/v1';

export interface JobPhase {
  status: 'pending' | 'queued' | 'running' | 'incomplete' | 'succeeded' | 'failed' | 'cancelled';
  ms?: number;
}

export const SYNC_SCENARIOS = {
  success: (runMs = 300): JobPhase[] => [
    { status: 'pending', ms: 50 },
    { status: 'queued', ms: 50 },
    { status: 'running', ms: runMs },
    { status: 'succeeded' },
  ],
  failure: (): JobPhase[] => [
    { status: 'running', ms: 100 },
    { status: 'incomplete', ms: 100 },
    { status: 'running', ms: 100 },
    { status: 'failed' },
  ],
  runForever: (): JobPhase[] => [{ status: 'pending', ms: 30 }, { status: 'running' }],
};

interface JobRec {
  jobId: number;
  connectionId: string;
  jobType: string;
  created: number;
  timeline: JobPhase[];
  cancelledAt?: number;
  rows: number;
  bytes: number;
  /** The destination is still writing (onSync has not finished): the job does not succeed before. */
  writing?: boolean;
}

/** Connector definitions the double knows (ids as in Airbyte's registry). */
export const DEFINITIONS = {
  sources: {
    postgres: 'decd338e-5647-4c0b-adf4-da0e75f5a750',
    faker: 'dfd88b22-b603-4c3d-aad7-3701784586b1',
    file: '778daa7c-feaf-4db6-96f3-70fd645acc77',
  },
  destinations: {
    postgres: '25c5221d-dce2-4163-ade9-739ef790f503',
    s3: '4816b78f-1489-44c1-9060-4b19d5fa9362',
    'dev-null': 'a7bcc9d8-13b3-4e49-b80d-d020b90045e3',
    's3-data-lake': '716ca874-520b-4902-9f80-9fad66754b89',
  },
} as const;

/** Airbyte answers `**********` for secret properties of a connector's configuration. */
const SECRET_KEY = /pass(word)?|secret|token|api_?key|private_?key|credentials?/i;
function maskSecrets(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(maskSecrets);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [
        k,
        SECRET_KEY.test(k) && (typeof x === 'string' || typeof x === 'number') ? '**********' : maskSecrets(x),
      ]),
    );
  return v;
}

type ActorKind = 'sources' | 'destinations';
interface ActorRec {
  id: string;
  name: string;
  type: string;
  definitionId: string;
  workspaceId: string;
  configuration: Record<string, unknown>;
  createdAt: number;
  deleted: boolean;
}
interface ConnectionRec {
  connectionId: string;
  name: string;
  sourceId: string;
  destinationId: string;
  workspaceId: string;
  status: string;
  schedule: { scheduleType: string; cronExpression?: string };
  configurations: { streams: unknown[] };
  namespaceDefinition: string;
  namespaceFormat?: string;
  prefix: string;
  nonBreakingSchemaUpdatesBehavior: string;
  createdAt: number;
  deleted: boolean;
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

export class AirbyteDouble {
  served!: Served;
  readonly clientId = 'strata-worker';
  readonly clientSecret = `secret-${randomBytes(8).toString('hex')}`;
  readonly jobs: JobRec[] = [];
  readonly requests: { method: string; path: string; status: number; body: unknown; query: URLSearchParams }[] = [];
  /** Connection ids a sync may run on (tests add some; created connections join). */
  readonly connections = new Set<string>();
  /** Workspaces that exist; a create naming another answers 404. */
  readonly workspaces = new Set<string>();
  readonly actors: Record<ActorKind, Map<string, ActorRec>> = { sources: new Map(), destinations: new Map() };
  readonly connectionRecs = new Map<string, ConnectionRec>();
  /** Every request body received (to check what clients send against the spec). */
  readonly received: { method: string; path: string; body: unknown }[] = [];
  scenario: (connectionId: string) => JobPhase[] = () => SYNC_SCENARIOS.success();
  /** What the destination connector does during a sync started through the API (e.g. write Iceberg tables). */
  onSync?: (connection: { connectionId: string; destinationId: string; workspaceId: string }) => Promise<void>;
  /** Errors onSync threw (a test checks this stays empty). */
  readonly syncErrors: unknown[] = [];
  rowsPerSync = 1234;
  private tokens = new Set<string>();
  private nextId = 1000;

  static async start(): Promise<AirbyteDouble> {
    const d = new AirbyteDouble();
    d.served = await serve((req, body, res) => d.handle(req, body, res));
    return d;
  }
  get baseUrl() {
    return `${this.served.url}${BASE_PATH}`;
  }
  close() {
    return this.served.close();
  }

  /** A sync started outside Strata (Airbyte's own schedule) that is running now. */
  startExternalSync(connectionId: string, timeline = SYNC_SCENARIOS.success(600)) {
    return this.newJob(connectionId, timeline);
  }

  /** A valid bearer token, for raw requests in tests. */
  issueToken() {
    const token = randomBytes(16).toString('hex');
    this.tokens.add(token);
    return token;
  }

  /** Invalidates every issued token (as an expiry or a key rotation would). */
  revokeTokens() {
    this.tokens.clear();
  }

  /** Ends a job now with the given status (the sync finished on Airbyte's side). */
  finish(job: { timeline: JobPhase[]; created: number }, status: JobPhase['status'] = 'succeeded') {
    const elapsed = Date.now() - job.created;
    job.timeline = [{ status: 'running', ms: elapsed }, { status }];
  }

  count(method: string, pathRe: RegExp, status?: number) {
    return this.requests.filter(
      (r) => r.method === method && pathRe.test(r.path) && (status === undefined || r.status === status),
    ).length;
  }

  private newJob(connectionId: string, timeline: JobPhase[]): JobRec {
    const j: JobRec = {
      jobId: this.nextId++,
      connectionId,
      jobType: 'sync',
      created: Date.now(),
      timeline,
      rows: this.rowsPerSync,
      bytes: this.rowsPerSync * 100,
    };
    this.jobs.push(j);
    return j;
  }

  status(j: JobRec): JobPhase['status'] {
    if (j.cancelledAt) return 'cancelled';
    let t = Date.now() - j.created;
    for (const ph of j.timeline) {
      if (ph.ms === undefined || t < ph.ms) return ph.status;
      t -= ph.ms;
    }
    const last = j.timeline[j.timeline.length - 1].status;
    return last === 'succeeded' && j.writing ? 'running' : last;
  }

  view(j: JobRec) {
    const st = this.status(j);
    const done = st === 'succeeded';
    const secs = Math.max(1, Math.round((Date.now() - j.created) / 1000));
    return {
      jobId: j.jobId,
      status: st,
      jobType: j.jobType,
      startTime: new Date(j.created).toISOString().replace(/\.\d+Z$/, 'Z'),
      connectionId: j.connectionId,
      lastUpdatedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      duration: `PT${secs}S`,
      bytesSynced: done ? j.bytes : 0,
      rowsSynced: done ? j.rows : 0,
    };
  }

  private problem(res: http.ServerResponse, status: number, type: string, title: string, detail: string) {
    sendJson(
      res,
      status,
      {
        status,
        type: `https://reference.airbyte.com/reference/errors#${type}`,
        title,
        detail,
        documentationUrl: null,
        data: {},
      },
      'application/problem+json',
    );
    return status;
  }

  /** A connection in `workspaceId` that syncs can run on (its source and destination are not modelled). */
  addSyncConnection(workspaceId: string, connectionId: string = randomUUID()) {
    this.workspaces.add(workspaceId);
    this.connectionRecs.set(connectionId, {
      connectionId,
      name: `connection ${connectionId.slice(0, 8)}`,
      sourceId: randomUUID(),
      destinationId: randomUUID(),
      workspaceId,
      status: 'active',
      schedule: { scheduleType: 'manual' },
      configurations: { streams: [] },
      namespaceDefinition: 'destination',
      prefix: '',
      nonBreakingSchemaUpdatesBehavior: 'ignore',
      createdAt: Math.floor(Date.now() / 1000),
      deleted: false,
    });
    this.connections.add(connectionId);
    return connectionId;
  }

  /** A new workspace id the double knows. */
  addWorkspace(id: string = randomUUID()) {
    this.workspaces.add(id);
    return id;
  }

  private handle(req: http.IncomingMessage, body: string, res: http.ServerResponse) {
    const url = new URL(req.url!, this.served.url);
    const rec = {
      method: req.method!,
      path: url.pathname,
      status: 0,
      body: undefined as unknown,
      query: url.searchParams,
    };
    this.requests.push(rec);
    if (body) {
      try {
        this.received.push({ method: req.method!, path: url.pathname, body: JSON.parse(body) });
      } catch {
        /* not JSON: answered 400 below */
      }
    }
    rec.status = this.route(req, url, body, res, (b) => (rec.body = b));
  }

  private route(
    req: http.IncomingMessage,
    url: URL,
    body: string,
    res: http.ServerResponse,
    saw: (b: unknown) => void,
  ): number {
    const path = url.pathname.startsWith(BASE_PATH) ? url.pathname.slice(BASE_PATH.length) : null;
    const ok = (status: number, b: unknown) => {
      saw(b);
      sendJson(res, status, b);
      return status;
    };
    if (path === null) return this.problem(res, 404, 'not-found', 'resource-not-found', `no route ${url.pathname}`);
    if (req.method === 'POST' && path === '/applications/token') {
      const b = JSON.parse(body || '{}');
      if (
        b.client_id !== this.clientId ||
        b.client_secret !== this.clientSecret ||
        (b.grant_type ?? b['grant-type']) !== 'client_credentials'
      )
        return this.problem(res, 401, 'invalid-api-key', 'invalid-api-key', 'Invalid client credentials');
      const token = randomBytes(16).toString('hex');
      this.tokens.add(token);
      return ok(200, { access_token: token, token_type: 'Bearer', expires_in: 180 });
    }
    const auth = String(req.headers.authorization ?? '');
    if (!auth.startsWith('Bearer ') || !this.tokens.has(auth.slice(7)))
      return this.problem(res, 401, 'invalid-api-key', 'invalid-api-key', 'Invalid or missing bearer token');

    if (req.method === 'POST' && path === '/jobs') {
      const b = JSON.parse(body || '{}');
      if (typeof b.connectionId !== 'string' || !b.jobType)
        return this.problem(res, 400, 'bad-request', 'bad-request', 'connectionId and jobType are required');
      if (!this.connections.has(b.connectionId))
        return this.problem(
          res,
          404,
          'resource-not-found',
          'resource-not-found',
          `Could not find a connection with id: ${b.connectionId}`,
        );
      if (b.jobType === 'refresh')
        return this.problem(
          res,
          422,
          'unprocessable-entity',
          'unprocessable-entity',
          'refresh is not supported for this connection',
        );
      if (
        this.jobs.some(
          (j) => j.connectionId === b.connectionId && !['succeeded', 'failed', 'cancelled'].includes(this.status(j)),
        )
      )
        return this.problem(
          res,
          409,
          'try-again-later',
          'try-again-later',
          `A sync is already running for: ${b.connectionId}`,
        );
      const j = this.newJob(b.connectionId, this.scenario(b.connectionId));
      j.jobType = b.jobType;
      const conn = this.connectionRecs.get(b.connectionId);
      if (this.onSync && conn) {
        j.writing = true;
        this.onSync(conn)
          .catch((e: unknown) => {
            this.syncErrors.push(e);
            j.timeline = [{ status: 'failed' }];
          })
          .finally(() => (j.writing = false));
      }
      return ok(200, this.view(j));
    }
    if (req.method === 'GET' && path === '/jobs') {
      const q = url.searchParams;
      const list = this.jobs
        .filter(
          (j) =>
            (!q.get('connectionId') || j.connectionId === q.get('connectionId')) &&
            (!q.get('status') || this.status(j) === q.get('status')) &&
            (!q.get('jobType') || j.jobType === q.get('jobType')),
        )
        .reverse()
        .slice(Number(q.get('offset') ?? 0), Number(q.get('offset') ?? 0) + Number(q.get('limit') ?? 20));
      return ok(200, { data: list.map((j) => this.view(j)) });
    }
    const ing = /^\/(sources|destinations|connections)(?:\/([^/]+))?$/.exec(path);
    if (ing)
      return this.ingestion(
        req.method!,
        ing[1] as ActorKind | 'connections',
        ing[2] && decodeURIComponent(ing[2]),
        url,
        body,
        res,
        ok,
      );
    const m = /^\/jobs\/(\d+)$/.exec(path);
    if (m) {
      const j = this.jobs.find((x) => x.jobId === Number(m[1]));
      if (!j)
        return this.problem(
          res,
          404,
          'resource-not-found',
          'resource-not-found',
          `Could not find a job with id: ${m[1]}`,
        );
      if (req.method === 'GET') return ok(200, this.view(j));
      if (req.method === 'DELETE') {
        if (['succeeded', 'failed', 'cancelled'].includes(this.status(j)))
          return this.problem(res, 409, 'state-conflict', 'state-conflict', 'Job is not currently running');
        j.cancelledAt = Date.now();
        return ok(200, this.view(j));
      }
    }
    return this.problem(res, 404, 'resource-not-found', 'resource-not-found', `no route ${req.method} ${url.pathname}`);
  }

  private actorView(kind: ActorKind, a: ActorRec) {
    const idKey = kind === 'sources' ? 'sourceId' : 'destinationId';
    const typeKey = kind === 'sources' ? 'sourceType' : 'destinationType';
    return {
      [idKey]: a.id,
      name: a.name,
      [typeKey]: a.type,
      definitionId: a.definitionId,
      workspaceId: a.workspaceId,
      configuration: maskSecrets(a.configuration),
      createdAt: a.createdAt,
    };
  }

  private connectionView(c: ConnectionRec) {
    const { deleted: _, ...v } = c;
    return { ...v, tags: [] };
  }

  private ingestion(
    method: string,
    kind: ActorKind | 'connections',
    id: string | undefined,
    url: URL,
    body: string,
    res: http.ServerResponse,
    ok: (status: number, b: unknown) => number,
  ): number {
    const one = kind.slice(0, -1);
    const bad = (detail: string) => this.problem(res, 400, 'bad-request', 'bad-request', detail);
    const notFound = (what: string, x: string) =>
      this.problem(res, 404, 'resource-not-found', 'resource-not-found', `Could not find a ${what} with id: ${x}`);
    let b: Record<string, unknown> = {};
    if (method === 'POST' || method === 'PATCH') {
      try {
        b = JSON.parse(body || 'null');
      } catch {
        return bad('The request body is not valid JSON');
      }
      if (!isObject(b)) return bad('The request body must be a JSON object');
    }
    const view = (r: ActorRec | ConnectionRec) =>
      kind === 'connections' ? this.connectionView(r as ConnectionRec) : this.actorView(kind, r as ActorRec);
    const store = (): Map<string, ActorRec | ConnectionRec> =>
      kind === 'connections' ? this.connectionRecs : this.actors[kind];

    if (id === undefined && method === 'GET') {
      const q = url.searchParams;
      const limit = Number(q.get('limit') ?? 20);
      const offset = Number(q.get('offset') ?? 0);
      if (!Number.isInteger(limit) || limit < 1 || limit > 100)
        return bad('limit must be an integer between 1 and 100');
      if (!Number.isInteger(offset) || offset < 0) return bad('offset must be an integer of 0 or more');
      const includeDeleted = q.get('includeDeleted') === 'true';
      const ws = q
        .getAll('workspaceIds')
        .flatMap((w) => w.split(','))
        .filter(Boolean);
      if (ws.some((w) => !UUID.test(w))) return bad('workspaceIds must be UUIDs');
      const all = [...store().values()].filter(
        (r) => (includeDeleted || !r.deleted) && (!ws.length || ws.includes(r.workspaceId)),
      );
      const page = all.slice(offset, offset + limit);
      const link = (o: number) => {
        const l = new URL(url);
        l.searchParams.set('limit', String(limit));
        l.searchParams.set('offset', String(o));
        return l.toString();
      };
      return ok(200, {
        data: page.map(view),
        ...(offset + limit < all.length ? { next: link(offset + limit) } : {}),
        ...(offset > 0 ? { previous: link(Math.max(0, offset - limit)) } : {}),
      });
    }

    if (id === undefined && method === 'POST') {
      if (kind === 'connections') {
        const missing = AirbyteDouble.REQUIRED['/connections'].filter((k) => typeof b[k] !== 'string');
        if (missing.length) return bad(`${missing.join(', ')}: required`);
        for (const k of ['sourceId', 'destinationId'])
          if (!UUID.test(b[k] as string)) return bad(`${k} must be a UUID`);
        const src = this.actors.sources.get(b.sourceId as string);
        if (!src || src.deleted) return notFound('source', b.sourceId as string);
        const dst = this.actors.destinations.get(b.destinationId as string);
        if (!dst || dst.deleted) return notFound('destination', b.destinationId as string);
        if (src.workspaceId !== dst.workspaceId)
          return bad('The source and the destination of a connection must be in the same workspace');
        if (b.name !== undefined && typeof b.name !== 'string') return bad('name must be a string');
        const c: ConnectionRec = {
          connectionId: randomUUID(),
          name: b.name ?? `${src.name} → ${dst.name}`,
          sourceId: src.id,
          destinationId: dst.id,
          workspaceId: src.workspaceId,
          status: (b.status as string) ?? 'active',
          schedule: (b.schedule as ConnectionRec['schedule']) ?? { scheduleType: 'manual' },
          configurations: { streams: (b.configurations as { streams?: unknown[] } | undefined)?.streams ?? [] },
          namespaceDefinition: (b.namespaceDefinition as string) ?? 'destination',
          ...(b.namespaceFormat !== undefined ? { namespaceFormat: b.namespaceFormat as string } : {}),
          prefix: (b.prefix as string) ?? '',
          nonBreakingSchemaUpdatesBehavior: (b.nonBreakingSchemaUpdatesBehavior as string) ?? 'ignore',
          createdAt: Math.floor(Date.now() / 1000),
          deleted: false,
        };
        const invalid = this.connectionSettingsProblem(c);
        if (invalid) return bad(invalid);
        this.connectionRecs.set(c.connectionId, c);
        this.connections.add(c.connectionId);
        return ok(200, view(c));
      }
      const missing = AirbyteDouble.REQUIRED[`/${kind}`].filter((k) => b[k] === undefined || b[k] === null);
      if (missing.length) return bad(`${missing.join(', ')}: required`);
      if (typeof b.name !== 'string' || !b.name) return bad('name must be a non-empty string');
      if (typeof b.workspaceId !== 'string' || !UUID.test(b.workspaceId)) return bad('workspaceId must be a UUID');
      if (!isObject(b.configuration)) return bad('configuration must be an object');
      if (!this.workspaces.has(b.workspaceId)) return notFound('workspace', b.workspaceId);
      const defs = DEFINITIONS[kind] as Record<string, string>;
      const typeKey = kind === 'sources' ? 'sourceType' : 'destinationType';
      let type: string | undefined;
      let definitionId: string | undefined;
      if (typeof b.definitionId === 'string') {
        type = Object.keys(defs).find((t) => defs[t] === b.definitionId);
        if (!type) return notFound(`${one} definition`, b.definitionId);
        definitionId = b.definitionId;
      } else if (typeof b.configuration[typeKey] === 'string') {
        type = b.configuration[typeKey];
        definitionId = defs[type];
        if (!definitionId) return bad(`configuration.${typeKey}: unknown ${one} type ${JSON.stringify(type)}`);
      } else return bad(`Either definitionId or configuration.${typeKey} must be provided`);
      const a: ActorRec = {
        id: randomUUID(),
        name: b.name,
        type,
        definitionId,
        workspaceId: b.workspaceId,
        configuration: b.configuration,
        createdAt: Math.floor(Date.now() / 1000),
        deleted: false,
      };
      this.actors[kind].set(a.id, a);
      return ok(200, view(a));
    }

    if (id === undefined)
      return this.problem(res, 405, 'method-not-allowed', 'method-not-allowed', `${method} is not allowed on /${kind}`);
    if (!UUID.test(id)) return bad(`${one}Id must be a UUID`);
    const r = store().get(id);
    if (!r || r.deleted) return notFound(one, id);
    if (method === 'GET') return ok(200, view(r));
    if (method === 'DELETE') {
      r.deleted = true;
      if (kind === 'connections') {
        (r as ConnectionRec).status = 'deprecated';
        this.connections.delete(id);
      } else {
        // Deleting a source or destination deletes its connections.
        for (const c of this.connectionRecs.values())
          if (!c.deleted && (kind === 'sources' ? c.sourceId : c.destinationId) === id) {
            c.deleted = true;
            c.status = 'deprecated';
            this.connections.delete(c.connectionId);
          }
      }
      res.writeHead(204);
      res.end();
      return 204;
    }
    if (method === 'PATCH') {
      if (b.name !== undefined && (typeof b.name !== 'string' || !b.name))
        return bad('name must be a non-empty string');
      if (kind === 'connections') {
        const c = r as ConnectionRec;
        const next: ConnectionRec = { ...c };
        for (const k of [
          'name',
          'status',
          'schedule',
          'namespaceDefinition',
          'namespaceFormat',
          'prefix',
          'nonBreakingSchemaUpdatesBehavior',
        ] as const)
          if (b[k] !== undefined) (next as unknown as Record<string, unknown>)[k] = b[k];
        if (b.configurations !== undefined)
          next.configurations = { streams: (b.configurations as { streams?: unknown[] }).streams ?? [] };
        const invalid = this.connectionSettingsProblem(next);
        if (invalid) return bad(invalid);
        Object.assign(c, next);
        return ok(200, view(c));
      }
      const a = r as ActorRec;
      if (b.configuration !== undefined && !isObject(b.configuration)) return bad('configuration must be an object');
      if (b.workspaceId !== undefined && b.workspaceId !== a.workspaceId) {
        if (typeof b.workspaceId !== 'string' || !this.workspaces.has(b.workspaceId))
          return notFound(
            'workspace',
            typeof b.workspaceId === 'string' ? b.workspaceId : JSON.stringify(b.workspaceId),
          );
        a.workspaceId = b.workspaceId;
      }
      if (typeof b.name === 'string') a.name = b.name;
      // A masked value sent back (as read) keeps the stored secret.
      if (isObject(b.configuration))
        a.configuration = {
          ...a.configuration,
          ...Object.fromEntries(Object.entries(b.configuration).filter(([, v]) => v !== '**********')),
        };
      return ok(200, view(a));
    }
    return this.problem(
      res,
      405,
      'method-not-allowed',
      'method-not-allowed',
      `${method} is not allowed on /${kind}/{${one}Id}`,
    );
  }

  private connectionSettingsProblem(c: ConnectionRec): string | undefined {
    if (!['active', 'inactive', 'deprecated', 'locked'].includes(c.status))
      return `status must be one of active, inactive, deprecated, locked`;
    if (!isObject(c.schedule) || !['manual', 'cron'].includes(c.schedule.scheduleType))
      return 'schedule.scheduleType must be manual or cron';
    if (c.schedule.scheduleType === 'cron' && typeof c.schedule.cronExpression !== 'string')
      return 'schedule.cronExpression is required for a cron schedule';
    if (!['source', 'destination', 'custom_format'].includes(c.namespaceDefinition))
      return 'namespaceDefinition must be one of source, destination, custom_format';
    if (
      !['ignore', 'disable_connection', 'propagate_columns', 'propagate_fully'].includes(
        c.nonBreakingSchemaUpdatesBehavior,
      )
    )
      return 'nonBreakingSchemaUpdatesBehavior must be one of ignore, disable_connection, propagate_columns, propagate_fully';
    if (!Array.isArray(c.configurations.streams)) return 'configurations.streams must be an array';
    return undefined;
  }

  /** The fields each create requires (the OpenAPI document's request schemas require the same). */
  static readonly REQUIRED: Record<string, string[]> = {
    '/sources': ['name', 'workspaceId', 'configuration'],
    '/destinations': ['name', 'workspaceId', 'configuration'],
    '/connections': ['sourceId', 'destinationId'],
  };

  /** Method/path pairs this double serves, in OpenAPI path-template form. */
  static readonly ROUTES: [string, string][] = [
    ['post', '/applications/token'],
    ['post', '/jobs'],
    ['get', '/jobs'],
    ['get', '/jobs/{jobId}'],
    ['delete', '/jobs/{jobId}'],
    ...(['source', 'destination', 'connection'] as const).flatMap((one): [string, string][] => [
      ['get', `/${one}s`],
      ['post', `/${one}s`],
      ['get', `/${one}s/{${one}Id}`],
      ['patch', `/${one}s/{${one}Id}`],
      ['delete', `/${one}s/{${one}Id}`],
    ]),
  ];
}
