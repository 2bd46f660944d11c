/**
 * Speaks the Airbyte public API v1 over fetch (no SDK: the official one is generated,
 * heavy, and lags the spec's `queued` status). Bearer tokens come from client
 * credentials held by the worker; they never appear in errors or results.
 */
export const AIRBYTE_TERMINAL = ['succeeded', 'failed', 'cancelled'];

export interface AirbyteJob {
  jobId: number;
  status: string;
  jobType: string;
  startTime: string;
  connectionId: string;
  lastUpdatedAt?: string;
  duration?: string;
  bytesSynced?: number;
  rowsSynced?: number;
}

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
  ) {
    super(message);
    this.name = 'AirbyteError';
  }
  get retryable() {
    return this.status >= 500 || this.status === 429 || this.status === 0;
  }
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
    const res = await this.raw('POST', '/applications/token', { client_id: this.config.clientId, client_secret: this.config.clientSecret, grant_type: 'client_credentials' }, undefined, signal);
    const body = (await res.json()) as { access_token: string; expires_in?: number };
    this.token = { value: body.access_token, expiresAt: Date.now() + (body.expires_in ?? 180) * 1000 };
    return this.token.value;
  }

  private async raw(method: string, path: string, body: unknown, token: string | undefined, signal?: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path), {
        method,
        headers: { accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal,
      });
    } catch (e) {
      throw new AirbyteError(0, 'network', `Airbyte ${method} ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (res.ok) return res;
    let problem: { type?: string; title?: string; detail?: string; message?: string } = {};
    try {
      problem = (await res.json()) as typeof problem;
    } catch {
      /* not a problem body */
    }
    if (res.status === 401) this.token = undefined;
    throw new AirbyteError(res.status, problem.type ?? String(res.status), `Airbyte ${method} ${path}: ${res.status} ${problem.title ?? ''}${problem.detail ? `: ${problem.detail}` : problem.message ? `: ${problem.message}` : ''}`.trim());
  }

  private async json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    let res: Response;
    try {
      res = await this.raw(method, path, body, await this.accessToken(signal), signal);
    } catch (e) {
      // A token revoked or expired early: fetch a new one once, then give up.
      if (!(e instanceof AirbyteError) || e.status !== 401) throw e;
      res = await this.raw(method, path, body, await this.accessToken(signal), signal);
    }
    return (await res.json()) as T;
  }

  /** Starts a sync; if one already runs for the connection (409), adopts it. */
  async startSync(connectionId: string, signal?: AbortSignal): Promise<{ job: AirbyteJob; adopted: boolean }> {
    try {
      return { job: await this.json<AirbyteJob>('POST', '/jobs', { connectionId, jobType: 'sync' }, signal), adopted: false };
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
    return (await this.json<{ data: AirbyteJob[] }>('GET', `/jobs?${q}`, undefined, signal)).data;
  }

  getJob(jobId: number | string, signal?: AbortSignal): Promise<AirbyteJob> {
    return this.json<AirbyteJob>('GET', `/jobs/${jobId}`, undefined, signal);
  }

  /** Cancels; a job that is no longer running (409) or gone (404) needs nothing more. */
  async cancelJob(jobId: number | string, signal?: AbortSignal): Promise<string> {
    try {
      return (await this.json<AirbyteJob>('DELETE', `/jobs/${jobId}`, undefined, signal)).status;
    } catch (e) {
      if (e instanceof AirbyteError && (e.status === 409 || e.status === 404)) return 'not-running';
      throw e;
    }
  }
}
