/**
 * An Airbyte public API v1 double (self-managed base path /api/public/v1): client-credential
 * tokens, POST /jobs answering 200 JobResponse (409 while a sync runs), GET/DELETE /jobs/{id},
 * GET /jobs filters, RFC 7807 problem bodies. Job statuses follow a timeline per connection.
 */
import type http from 'node:http';
import { randomBytes } from 'node:crypto';
import { sendJson, serve, type Served } from './http.js';

export const BASE_PATH = '/api/public/v1';

export interface JobPhase {
  status: 'pending' | 'queued' | 'running' | 'incomplete' | 'succeeded' | 'failed' | 'cancelled';
  ms?: number;
}

export const SYNC_SCENARIOS = {
  success: (runMs = 300): JobPhase[] => [{ status: 'pending', ms: 50 }, { status: 'queued', ms: 50 }, { status: 'running', ms: runMs }, { status: 'succeeded' }],
  failure: (): JobPhase[] => [{ status: 'running', ms: 100 }, { status: 'incomplete', ms: 100 }, { status: 'running', ms: 100 }, { status: 'failed' }],
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
}

export class AirbyteDouble {
  served!: Served;
  readonly clientId = 'strata-worker';
  readonly clientSecret = `secret-${randomBytes(8).toString('hex')}`;
  readonly jobs: JobRec[] = [];
  readonly requests: { method: string; path: string; status: number; body: unknown }[] = [];
  readonly connections = new Set<string>();
  scenario: (connectionId: string) => JobPhase[] = () => SYNC_SCENARIOS.success();
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
    return this.requests.filter((r) => r.method === method && pathRe.test(r.path) && (status === undefined || r.status === status)).length;
  }

  private newJob(connectionId: string, timeline: JobPhase[]): JobRec {
    const j: JobRec = { jobId: this.nextId++, connectionId, jobType: 'sync', created: Date.now(), timeline, rows: this.rowsPerSync, bytes: this.rowsPerSync * 100 };
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
    return j.timeline[j.timeline.length - 1].status;
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
    sendJson(res, status, { status, type: `https://reference.airbyte.com/reference/errors#${type}`, title, detail, documentationUrl: null, data: {} }, 'application/problem+json');
    return status;
  }

  private handle(req: http.IncomingMessage, body: string, res: http.ServerResponse) {
    const url = new URL(req.url!, this.served.url);
    const rec = { method: req.method!, path: url.pathname, status: 0, body: undefined as unknown };
    this.requests.push(rec);
    rec.status = this.route(req, url, body, res, (b) => (rec.body = b));
  }

  private route(req: http.IncomingMessage, url: URL, body: string, res: http.ServerResponse, saw: (b: unknown) => void): number {
    const path = url.pathname.startsWith(BASE_PATH) ? url.pathname.slice(BASE_PATH.length) : null;
    const ok = (status: number, b: unknown) => {
      saw(b);
      sendJson(res, status, b);
      return status;
    };
    if (path === null) return this.problem(res, 404, 'not-found', 'resource-not-found', `no route ${url.pathname}`);
    if (req.method === 'POST' && path === '/applications/token') {
      const b = JSON.parse(body || '{}');
      if (b.client_id !== this.clientId || b.client_secret !== this.clientSecret || (b.grant_type ?? b['grant-type']) !== 'client_credentials')
        return this.problem(res, 401, 'invalid-api-key', 'invalid-api-key', 'Invalid client credentials');
      const token = randomBytes(16).toString('hex');
      this.tokens.add(token);
      return ok(200, { access_token: token, token_type: 'Bearer', expires_in: 180 });
    }
    const auth = String(req.headers.authorization ?? '');
    if (!auth.startsWith('Bearer ') || !this.tokens.has(auth.slice(7))) return this.problem(res, 401, 'invalid-api-key', 'invalid-api-key', 'Invalid or missing bearer token');

    if (req.method === 'POST' && path === '/jobs') {
      const b = JSON.parse(body || '{}');
      if (typeof b.connectionId !== 'string' || !b.jobType) return this.problem(res, 400, 'bad-request', 'bad-request', 'connectionId and jobType are required');
      if (!this.connections.has(b.connectionId)) return this.problem(res, 404, 'resource-not-found', 'resource-not-found', `Could not find a connection with id: ${b.connectionId}`);
      if (b.jobType === 'refresh') return this.problem(res, 422, 'unprocessable-entity', 'unprocessable-entity', 'refresh is not supported for this connection');
      if (this.jobs.some((j) => j.connectionId === b.connectionId && !['succeeded', 'failed', 'cancelled'].includes(this.status(j))))
        return this.problem(res, 409, 'try-again-later', 'try-again-later', `A sync is already running for: ${b.connectionId}`);
      const j = this.newJob(b.connectionId, this.scenario(b.connectionId));
      j.jobType = b.jobType;
      return ok(200, this.view(j));
    }
    if (req.method === 'GET' && path === '/jobs') {
      const q = url.searchParams;
      const list = this.jobs
        .filter((j) => (!q.get('connectionId') || j.connectionId === q.get('connectionId')) && (!q.get('status') || this.status(j) === q.get('status')) && (!q.get('jobType') || j.jobType === q.get('jobType')))
        .reverse()
        .slice(Number(q.get('offset') ?? 0), Number(q.get('offset') ?? 0) + Number(q.get('limit') ?? 20));
      return ok(200, { data: list.map((j) => this.view(j)) });
    }
    const m = /^\/jobs\/(\d+)$/.exec(path);
    if (m) {
      const j = this.jobs.find((x) => x.jobId === Number(m[1]));
      if (!j) return this.problem(res, 404, 'resource-not-found', 'resource-not-found', `Could not find a job with id: ${m[1]}`);
      if (req.method === 'GET') return ok(200, this.view(j));
      if (req.method === 'DELETE') {
        if (['succeeded', 'failed', 'cancelled'].includes(this.status(j))) return this.problem(res, 409, 'state-conflict', 'state-conflict', 'Job is not currently running');
        j.cancelledAt = Date.now();
        return ok(200, this.view(j));
      }
    }
    return this.problem(res, 404, 'resource-not-found', 'resource-not-found', `no route ${req.method} ${url.pathname}`);
  }

  /** Method/path pairs this double serves, in OpenAPI path-template form. */
  static readonly ROUTES: [string, string][] = [
    ['post', '/applications/token'],
    ['post', '/jobs'],
    ['get', '/jobs'],
    ['get', '/jobs/{jobId}'],
    ['delete', '/jobs/{jobId}'],
  ];
}
