/**
 * The query API's statements (POST /api/v1/queries), modelled on Databricks' statement
 * execution API: a statement runs in this API process (DuckDB in the sandbox over the
 * tenant's datasets; Postgres/MySQL on the tenant's connection, read-only), answers inline
 * when it ends within `wait`, else by id to poll or cancel. Results are split into chunks
 * of at most LIMITS.queryChunkBytes (the first inline) and kept for LIMITS.queryKeepMs after
 * the statement ends, in this process's memory; a client request id finds its statement
 * again for as long. Every statement (refused ones too) is audited in `query_audit`.
 */
import { createHash, randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { LakeDeps } from '../activities/lake/engine.js';
import { forTenant } from '../activities/lake/open.js';
import { resolveConnection, type Connections } from '../activities/sql/connections.js';
import {
  prepareDuckdbQuery,
  preparePostgresQuery,
  prepareMysqlQuery,
  QueryRefused,
  RowLimitError,
  type PreparedQuery,
  type QueryColumn,
} from '../activities/sql/query.js';
import { NonRetryableError } from '../schemas/errors.js';
import type { QueryBody } from '../schemas/api.js';
import { checkParamValue, paramDecl, type ParamDecl } from '../schemas/params.js';
import { renderField } from '../schemas/template.js';
import type { Db } from '../store/db.js';
import type { Principal } from '../store/keys.js';
import { owns } from './auth.js';
import { fmtBytes, LIMITS } from '../schemas/limits.js';
import { RequestError } from '../schemas/errors.js';

export type StatementStatus = 'running' | 'succeeded' | 'failed' | 'canceled';

interface Statement {
  id: string;
  tenant: string;
  keyId: string;
  requestId?: string;
  fingerprint: string;
  engine: 'duckdb' | 'postgres' | 'mysql';
  connection?: string;
  status: StatementStatus;
  createdAt: Date;
  endedAt?: Date;
  columns?: QueryColumn[];
  /** Rows split into chunks. */
  chunks?: unknown[][][];
  totalRows?: number;
  bytes?: number;
  truncated?: boolean;
  error?: string;
  done: Promise<void>;
  cancel(): void;
  canceled?: boolean;
}

export interface QueriesOptions {
  db: Db;
  lake?: LakeDeps;
  connections: Connections;
  /** Overrides of LIMITS (tests make chunks small). */
  chunkBytes?: number;
  resultBytes?: number;
  keepMs?: number;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const missing = (id: string) => `no statement ${id}`;

export class QueriesService {
  private readonly statements = new Map<string, Statement>();
  private readonly byRequest = new Map<string, string>();

  constructor(private readonly o: QueriesOptions) {}

  private sweep() {
    const keep = this.o.keepMs ?? LIMITS.queryKeepMs;
    const now = Date.now();
    for (const [id, s] of this.statements)
      if (s.endedAt && s.endedAt.getTime() + keep < now) {
        this.statements.delete(id);
        if (s.requestId) this.byRequest.delete(`${s.tenant}\0${s.requestId}`);
      }
  }

  /** Submits a statement and waits up to `wait` seconds for it. Refusals throw RequestError (audited). */
  async submit(p: Principal, body: QueryBody, requestIdHeader?: string): Promise<Statement> {
    this.sweep();
    const requestId = body.requestId ?? requestIdHeader;
    if (requestIdHeader !== undefined && body.requestId !== undefined && requestIdHeader !== body.requestId)
      throw new RequestError("the Idempotency-Key header and the body's requestId differ: send one of them", 400);
    if (requestId !== undefined && !/^[\x21-\x7e]{1,128}$/.test(requestId))
      throw new RequestError('the request id must be 1 to 128 printable ASCII characters without spaces', 400);
    const engine = body.engine ?? (body.connection ? undefined : 'duckdb');
    const fingerprint = sha256(
      JSON.stringify([
        body.sql,
        body.engine ?? null,
        body.connection ?? null,
        body.params ?? {},
        body.namespace ?? null,
        body.rowLimit ?? null,
      ]),
    );
    if (requestId !== undefined) {
      const prev = this.statements.get(this.byRequest.get(`${p.tenant}\0${requestId}`) ?? '');
      if (prev) {
        if (prev.fingerprint !== fingerprint)
          throw new RequestError(
            `request id "${requestId}" was used for a different statement (${prev.id}): use a new request id for a new statement`,
            409,
          );
        await this.wait(prev, body.wait);
        return prev;
      }
    }
    const running = [...this.statements.values()].filter((s) => s.tenant === p.tenant && s.status === 'running').length;
    if (running >= LIMITS.queryRunningPerTenant)
      throw new RequestError(
        `${running} statements of tenant ${p.tenant} are running, the most at once: wait for one to end, or cancel one (POST /api/v1/queries/{id}/cancel)`,
        429,
      );

    const id = `q_${randomUUID()}`;
    const audit = { id, tenant: p.tenant, keyId: p.keyId, requestId, sql: body.sql };
    let prepared: PreparedQuery;
    let conn: string | undefined;
    let eng: Statement['engine'];
    const timeoutMs = (body.timeout ?? LIMITS.queryTimeoutSeconds.default) * 1000;
    try {
      if (body.connection) {
        const c = (() => {
          try {
            return resolveConnection(this.o.connections, body.connection, engine, p.tenant);
          } catch (e) {
            if (e instanceof NonRetryableError)
              throw new RequestError(
                e.message
                  .replace(/\(STRATA_CONN_.*\)/, '(on the API too)')
                  .replace(/the task says engine/, 'the query says engine'),
                400,
              );
            throw e;
          }
        })();
        conn = c.name;
        eng = c.engine;
        const sql = this.render(body, eng);
        prepared =
          eng === 'postgres'
            ? await preparePostgresQuery(c, sql, timeoutMs)
            : await prepareMysqlQuery(c, sql, timeoutMs);
      } else {
        if (engine !== 'duckdb')
          throw new RequestError(
            `engine ${engine} needs a connection: name one of your tenant's ${engine} connections in "connection"`,
            400,
          );
        eng = 'duckdb';
        if (!this.o.lake)
          throw new RequestError(
            'this API has no lake configured: start it with a metastore (DATABASE_URL) and STRATA_LAKE_ROOT',
            503,
          );
        const sql = this.render(body, eng);
        prepared = await prepareDuckdbQuery({
          lake: forTenant(this.o.lake, p.tenant),
          tenant: p.tenant,
          namespace: body.namespace ?? 'default',
          sql,
          scratch: path.join(os.tmpdir(), 'strata-queries', id),
        });
      }
    } catch (e) {
      const err =
        e instanceof QueryRefused
          ? new RequestError(e.message, e.status)
          : e instanceof RequestError
            ? e
            : new RequestError((e as Error).message, 400);
      await this.auditStart(audit, body.engine ?? engine ?? 'duckdb', conn, 'refused', err.message);
      throw err;
    }

    let finish!: () => void;
    // A cancel can arrive before the engine started the statement: repeat it until the statement ends.
    let again: NodeJS.Timeout | undefined;
    const cancelOnce = () => {
      try {
        prepared.cancel();
      } catch {
        /* already ended */
      }
    };
    const stop = () => {
      cancelOnce();
      again ??= setInterval(cancelOnce, 250);
    };
    const st: Statement = {
      id,
      tenant: p.tenant,
      keyId: p.keyId,
      requestId,
      fingerprint,
      engine: eng,
      connection: conn,
      status: 'running',
      createdAt: new Date(),
      done: new Promise((r) => (finish = r)),
      cancel: () => {
        st.canceled = true;
        stop();
      },
    };
    this.statements.set(id, st);
    if (requestId !== undefined) this.byRequest.set(`${p.tenant}\0${requestId}`, id);
    await this.auditStart(audit, eng, conn, 'running');
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, timeoutMs);
    const limit = body.rowLimit ?? LIMITS.queryRows;
    void prepared
      .run({
        maxRows: limit,
        truncate: body.rowLimit !== undefined,
        rowsHint: 'add a LIMIT or aggregate, or pass "rowLimit" to take the first rows',
      })
      .then((r) => {
        const maxBytes = this.o.resultBytes ?? LIMITS.queryResultBytes;
        const chunks = split(r.rows, this.o.chunkBytes ?? LIMITS.queryChunkBytes);
        const bytes = chunks.bytes;
        if (bytes > maxBytes)
          throw new RowLimitError(
            `the result is ${fmtBytes(bytes)} as JSON, over the limit of ${fmtBytes(maxBytes)}: select fewer columns or rows`,
          );
        Object.assign(st, {
          status: 'succeeded',
          columns: r.columns,
          chunks: chunks.chunks,
          totalRows: r.rows.length,
          bytes,
          truncated: r.truncated,
        });
      })
      .catch((e: Error) => {
        if (st.canceled && !timedOut) Object.assign(st, { status: 'canceled', error: 'canceled by request' });
        else if (timedOut)
          Object.assign(st, {
            status: 'failed',
            error: `the statement ran longer than its limit of ${timeoutMs / 1000} s and was stopped: narrow it, or give a larger "timeout" (at most ${LIMITS.queryTimeoutSeconds.max})`,
          });
        else Object.assign(st, { status: 'failed', error: e.message });
      })
      .finally(async () => {
        clearTimeout(timer);
        clearInterval(again);
        st.endedAt = new Date();
        await this.auditEnd(st).catch(() => {});
        finish();
      });
    await this.wait(st, body.wait);
    return st;
  }

  private render(body: QueryBody, dialect: 'duckdb' | 'postgres' | 'mysql'): string {
    const decls: Record<string, ParamDecl> = {};
    const vars: Record<string, string> = {};
    for (const [name, v] of Object.entries(body.params ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
        throw new RequestError(`params: "${name.slice(0, 40)}" is not a param name (letters, digits, "_")`, 400);
      const d = paramDecl(v);
      const c = checkParamValue(name, d, v);
      if (!c.ok) throw new RequestError(`params: ${c.message}`, 400);
      decls[name] = d;
      vars[`params.${name}`] = c.value;
    }
    try {
      return renderField(body.sql, vars, { sql: dialect, params: decls });
    } catch (e) {
      throw new RequestError(`sql: ${(e as Error).message}`, 400);
    }
  }

  private async wait(st: Statement, waitSeconds: number | undefined) {
    const ms = (waitSeconds ?? LIMITS.queryWaitSeconds.default) * 1000;
    if (st.status !== 'running' || ms <= 0) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([st.done, new Promise<void>((r) => (t = setTimeout(r, ms)))]);
    clearTimeout(t);
  }

  /** A statement of the caller's tenant, or 404 (another tenant's id is answered like an unknown one). */
  get(p: Principal, id: string): Statement {
    this.sweep();
    const st = this.statements.get(id);
    owns(p, st?.tenant, missing(id));
    return st!;
  }

  async cancel(p: Principal, id: string): Promise<Statement> {
    const st = this.get(p, id);
    if (st.status === 'running') {
      st.cancel();
      let t: NodeJS.Timeout | undefined;
      await Promise.race([st.done, new Promise<void>((r) => (t = setTimeout(r, 5000)))]);
      clearTimeout(t);
    }
    return st;
  }

  chunk(p: Principal, id: string, n: number) {
    const st = this.get(p, id);
    if (st.status !== 'succeeded')
      throw new RequestError(
        `statement ${id} is ${st.status}${st.status === 'running' ? ': poll GET /api/v1/queries/{id} until it succeeds' : ''}; it has no result`,
        409,
      );
    if (!Number.isInteger(n) || n < 0 || n >= st.chunks!.length)
      throw new RequestError(`chunk ${n} is not in the result: chunks are 0 to ${st.chunks!.length - 1}`, 404);
    return chunkView(st, n);
  }

  /** Stops every running statement (API shutdown). */
  async close() {
    const running = [...this.statements.values()].filter((s) => s.status === 'running');
    for (const s of running) s.cancel();
    await Promise.all(running.map((s) => Promise.race([s.done, new Promise((r) => setTimeout(r, 5000))])));
  }

  private async auditStart(
    a: { id: string; tenant: string; keyId: string; requestId?: string; sql: string },
    engine: string,
    connection: string | undefined,
    status: string,
    error?: string,
  ) {
    await this.o.db.query(
      `INSERT INTO query_audit (statement_id, tenant, key_id, request_id, engine, connection, sql_sha256, sql_text, status, error, ended_at, duration_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $9 = 'refused' THEN now() END, CASE WHEN $9 = 'refused' THEN 0 END)`,
      [
        a.id,
        a.tenant,
        a.keyId,
        a.requestId ?? null,
        engine,
        connection ?? null,
        sha256(a.sql),
        a.sql.slice(0, 65536),
        status,
        error?.slice(0, 2000) ?? null,
      ],
    );
  }

  private async auditEnd(st: Statement) {
    await this.o.db.query(
      'UPDATE query_audit SET status = $2, error = $3, row_count = $4, bytes = $5, ended_at = now(), duration_ms = $6 WHERE statement_id = $1',
      [
        st.id,
        st.status,
        st.error?.slice(0, 2000) ?? null,
        st.totalRows ?? null,
        st.bytes ?? null,
        st.endedAt!.getTime() - st.createdAt.getTime(),
      ],
    );
  }
}

/** Rows into chunks of at most `max` bytes of JSON (a chunk holds at least one row). */
function split(rows: unknown[][], max: number): { chunks: unknown[][][]; bytes: number } {
  const chunks: unknown[][][] = [];
  let cur: unknown[][] = [];
  let curBytes = 2;
  let bytes = 0;
  for (const r of rows) {
    const b = Buffer.byteLength(JSON.stringify(r)) + 1;
    bytes += b;
    if (cur.length && curBytes + b > max) {
      chunks.push(cur);
      cur = [];
      curBytes = 2;
    }
    cur.push(r);
    curBytes += b;
  }
  if (cur.length || chunks.length === 0) chunks.push(cur);
  return { chunks, bytes };
}

const link = (st: Statement, n: number) => `/api/v1/queries/${st.id}/result/chunks/${n}`;

function chunkView(st: Statement, n: number) {
  const chunks = st.chunks!;
  const rowOffset = chunks.slice(0, n).reduce((s, c) => s + c.length, 0);
  return {
    chunkIndex: n,
    rowOffset,
    rowCount: chunks[n].length,
    data: chunks[n],
    ...(n + 1 < chunks.length ? { nextChunkIndex: n + 1, nextChunkLink: link(st, n + 1) } : {}),
  };
}

/** The statement as the API answers it: status, and when it succeeded, the manifest and the first chunk. */
export function statementView(st: Statement) {
  const base = {
    statementId: st.id,
    status: st.status,
    engine: st.engine,
    ...(st.connection ? { connection: st.connection } : {}),
    createdAt: st.createdAt.toISOString(),
    ...(st.endedAt
      ? {
          endedAt: st.endedAt.toISOString(),
          durationMs: st.endedAt.getTime() - st.createdAt.getTime(),
          expiresAt: new Date(st.endedAt.getTime() + LIMITS.queryKeepMs).toISOString(),
        }
      : {}),
    links: { self: `/api/v1/queries/${st.id}`, cancel: `/api/v1/queries/${st.id}/cancel` },
  };
  if (st.status !== 'succeeded') return { ...base, ...(st.error ? { error: { message: st.error } } : {}) };
  let rowOffset = 0;
  return {
    ...base,
    manifest: {
      format: 'JSON_ARRAY',
      columns: st.columns!,
      totalRowCount: st.totalRows!,
      totalByteCount: st.bytes!,
      totalChunkCount: st.chunks!.length,
      truncated: !!st.truncated,
      chunks: st.chunks!.map((c, i) => {
        const x = { chunkIndex: i, rowOffset, rowCount: c.length };
        rowOffset += c.length;
        return x;
      }),
    },
    result: chunkView(st, 0),
  };
}

/** A result value (not null) as text: strings as they are, numbers and booleans printed, nested values as JSON. */
export const cellText = (v: unknown): string =>
  typeof v === 'string'
    ? v
    : typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean'
      ? String(v)
      : JSON.stringify(v);

/** A chunk (or with `header`, the first) as CSV (RFC 4180). */
export function csvOf(columns: QueryColumn[], rows: unknown[][], header: boolean): string {
  const cell = (v: unknown) => {
    if (v === null || v === undefined) return '';
    const s = cellText(v);
    return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = rows.map((r) => r.map(cell).join(','));
  if (header) lines.unshift(columns.map((c) => cell(c.name)).join(','));
  return lines.join('\r\n') + (lines.length ? '\r\n' : '');
}

export type { Statement };
