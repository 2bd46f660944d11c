/**
 * Read-only statements for the query API (api/queries-service.ts): one statement, its rows
 * answered (not written anywhere), under row, byte and time limits, cancellable.
 *
 * - DuckDB runs in the sandbox (sandbox.ts) over the tenant's datasets: each `layer.name[@at]`
 *   the SQL names resolves through the tenant's catalog, and the sandbox grants exactly those
 *   versions' files — no folder, so any other path (another tenant's, the API's) is refused.
 *   The statement must be one SELECT.
 * - Postgres runs the statement as a cursor (`DECLARE … CURSOR FOR`, sent alone with the
 *   extended protocol, so nothing can follow it) in a `READ ONLY` transaction that is rolled back.
 * - MySQL/MariaDB runs it in `START TRANSACTION READ ONLY` (one statement per call), rolled back;
 *   only reading statements are sent, since DDL would commit implicitly.
 */
import mysql from 'mysql2/promise';
import { Connection as MysqlCoreConnection } from 'mysql2';
import { StatementType } from '@duckdb/node-api';
import pg from 'pg';
import { attachInputs, type LakeDeps } from '../lake/engine.js';
import { NonRetryableError, errorMessage, errorNumber, errorString } from '../../schemas/errors.js';
import { redact, type ConnectionConfig } from './connections.js';
import { duckdbFailure } from './duckdb.js';
import { killQuery } from './mysql.js';
import { backendName, backendPid, cancelBackend } from './postgres.js';
import { openDuck, statementTypeName, type SandboxLimits } from './sandbox.js';

export interface QueryColumn {
  name: string;
  type: string;
}

export interface QueryResult {
  columns: QueryColumn[];
  rows: unknown[][];
  /** More rows than `maxRows` and the caller asked to truncate. */
  truncated: boolean;
}

export interface QueryLimits {
  maxRows: number;
  /** true: keep the first maxRows and mark the result truncated; false: more is an error. */
  truncate: boolean;
  /** How far past it a limit error says the caller went, in words (the API's message). */
  rowsHint: string;
  /** DuckDB only: values in DuckDB's JSON forms (BIGINT and DECIMAL as text, DATE as YYYY-MM-DD), as dataset previews show them. */
  duckdbJson?: boolean;
}

/** A prepared statement: run it once; cancel() stops it wherever it is. */
export interface PreparedQuery {
  run(limits: QueryLimits): Promise<QueryResult>;
  cancel(): void;
  /** Frees what prepare took (run does it too). */
  close(): Promise<void>;
}

/** A statement refused before it runs (not read-only, names what it may not): a 400. */
export class QueryRefused extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export class RowLimitError extends Error {}

/** Rows fetched one past the limit: over it the statement fails, or with `truncate` the rows are cut and marked. */
function capRows(rows: unknown[][], l: QueryLimits): { rows: unknown[][]; truncated: boolean } {
  if (rows.length <= l.maxRows) return { rows, truncated: false };
  if (!l.truncate) tooMany(l);
  return { rows: rows.slice(0, l.maxRows), truncated: true };
}

function tooMany(l: QueryLimits): never {
  throw new RowLimitError(
    `the result has more than ${l.maxRows.toLocaleString('en')} rows, the most a query may answer: ${l.rowsHint}`,
  );
}

/** JSON-safe values: bigints and big numbers as strings, dates as ISO text, bytes as base64. */
function jsonValue(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (typeof v === 'object') {
    const plain: unknown = JSON.parse(
      JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)),
    );
    return plain;
  }
  return v;
}

/** DuckDB over the tenant's datasets (`lake` already scoped with forTenant). */
export async function prepareDuckdbQuery(o: {
  lake: LakeDeps;
  tenant: string;
  namespace: string;
  sql: string;
  scratch: string;
  limits?: Partial<SandboxLimits>;
}): Promise<PreparedQuery> {
  const duck = await openDuck();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await duck.close();
  };
  try {
    let attached;
    try {
      attached = await attachInputs(duck.conn, o.lake, o.tenant, o.namespace, o.sql);
    } catch (e) {
      if (e instanceof NonRetryableError)
        throw new QueryRefused(
          e.message,
          /no current version|does not exist|had no version/.test(e.message)
            ? 404
            : /removed by retention/.test(e.message)
              ? 410
              : 400,
        );
      throw e;
    }
    // Exactly the versions' files: no folder at all, so any path the SQL names itself is refused.
    await duck.lock({ files: attached.files, scratch: o.scratch, limits: o.limits });
    let extracted;
    try {
      extracted = await duck.conn.extractStatements(attached.sql);
    } catch (e) {
      throw new QueryRefused(duckdbFailure(e).message);
    }
    if (extracted.count !== 1)
      throw new QueryRefused(`a query is one statement, found ${extracted.count}: send them one at a time`);
    let st;
    try {
      st = await extracted.prepare(0);
    } catch (e) {
      throw new QueryRefused(duckdbFailure(e).message);
    }
    if (st.statementType !== StatementType.SELECT)
      throw new QueryRefused(
        `queries are read-only: send one SELECT, not a ${statementTypeName(st.statementType)} (pipelines write datasets)`,
      );
    const prepared = st;
    return {
      async run(l) {
        try {
          const reader = await prepared.streamAndReadUntil(l.maxRows + 1);
          const columns = reader.columnNames().map((name, i) => ({ name, type: reader.columnType(i).toString() }));
          if (l.duckdbJson) return { columns, ...capRows(reader.getRowsJson(), l) };
          // A decimal wider than a double holds exactly is sent as its exact text (DuckDB's JS
          // values would round it); the rest as JS values.
          const wide = columns.map((c) => Number(/^DECIMAL\((\d+),/.exec(c.type)?.[1] ?? 0) > 15);
          const exact = wide.some(Boolean) ? reader.getRowsJson() : undefined;
          const rows = reader
            .getRowsJS()
            .map((r, i) => r.map((v, j) => (exact && wide[j] ? exact[i][j] : jsonValue(v))));
          return { columns, ...capRows(rows, l) };
        } catch (e) {
          if (e instanceof RowLimitError) throw e;
          throw new Error(duckdbFailure(e).message);
        } finally {
          await close();
        }
      },
      cancel: () => duck.conn.interrupt(),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The statement's first keyword, past comments and parentheses. */
function firstKeyword(sql: string): string {
  let s = sql;
  for (;;) {
    const t = s.replace(/^\s+/, '');
    if (t.startsWith('--') || t.startsWith('#')) s = t.slice(t.indexOf('\n') < 0 ? t.length : t.indexOf('\n'));
    else if (t.startsWith('/*')) s = t.slice(t.indexOf('*/') < 0 ? t.length : t.indexOf('*/') + 2);
    else if (t.startsWith('(')) s = t.slice(1);
    else return (/^[A-Za-z]+/.exec(t)?.[0] ?? '').toUpperCase();
  }
}

const READERS: Record<'postgres' | 'mysql', string[]> = {
  postgres: ['SELECT', 'WITH', 'VALUES', 'TABLE'],
  mysql: ['SELECT', 'WITH', 'VALUES', 'TABLE', 'SHOW', 'DESCRIBE', 'DESC', 'EXPLAIN'],
};

export function checkReading(sql: string, engine: 'postgres' | 'mysql') {
  const k = firstKeyword(sql);
  if (!READERS[engine].includes(k))
    throw new QueryRefused(
      `queries are read-only: on ${engine} send one ${READERS[engine].join(', ')} statement${k ? `, not ${k}` : ''}`,
    );
  if (engine === 'mysql' && /\binto\s+(outfile|dumpfile|@)/i.test(sql.replace(/'(?:[^'\\]|\\.|'')*'/g, "''")))
    throw new QueryRefused('queries are read-only: SELECT … INTO writes a file or variables; leave INTO out');
}

const PG_TYPES: Record<number, string> = {
  16: 'boolean',
  17: 'bytea',
  20: 'bigint',
  21: 'smallint',
  23: 'integer',
  25: 'text',
  114: 'json',
  700: 'real',
  701: 'double precision',
  1042: 'char',
  1043: 'varchar',
  1082: 'date',
  1114: 'timestamp',
  1184: 'timestamptz',
  1700: 'numeric',
  2950: 'uuid',
  3802: 'jsonb',
};

/** The type parsers a query's client uses: bigint (count(*)) as a number while it is exact, else its digits. */
function pgTypes(): pg.TypeOverrides {
  const types = new pg.TypeOverrides();
  types.setTypeParser(20, (v: string) => (Number.isSafeInteger(Number(v)) ? Number(v) : v));
  return types;
}

/** Postgres: the statement as a cursor in a READ ONLY transaction, always rolled back. */
export async function preparePostgresQuery(
  conn: ConnectionConfig,
  sql: string,
  timeoutMs: number,
): Promise<PreparedQuery> {
  checkReading(sql, 'postgres');
  const body = sql.trim().replace(/;\s*$/, '');
  const appName = backendName('query');
  const client = new pg.Client({
    connectionString: conn.url,
    application_name: appName,
    types: pgTypes(),
  });
  try {
    await client.connect();
  } catch (e) {
    throw new Error(redact(`postgres (${conn.name}): ${errorMessage(e)}`));
  }
  let ended = false;
  const close = async () => {
    if (ended) return;
    ended = true;
    await client.end().catch(() => {});
  };
  return {
    async run(l) {
      try {
        await client.query('BEGIN TRANSACTION READ ONLY');
        await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
        // Extended protocol: one statement, so nothing (COMMIT; …) can follow the cursor. (pg
        // takes `queryMode`; its type declarations leave it out.)
        const declare: pg.QueryConfig & { queryMode: 'extended' } = {
          text: `DECLARE strata_query NO SCROLL CURSOR FOR ${body}\n`,
          queryMode: 'extended',
        };
        await client.query(declare);
        const r = await client.query({ text: `FETCH FORWARD ${l.maxRows + 1} FROM strata_query`, rowMode: 'array' });
        const columns = r.fields.map((f) => ({ name: f.name, type: PG_TYPES[f.dataTypeID] ?? `oid ${f.dataTypeID}` }));
        return {
          columns,
          ...capRows(
            r.rows.map((row: unknown[]) => row.map(jsonValue)),
            l,
          ),
        };
      } catch (e) {
        if (e instanceof RowLimitError) throw e;
        const code = errorString(e, 'code');
        const readOnly = code === '25006' ? ': queries are read-only' : '';
        throw new Error(
          redact(`postgres (${conn.name}): ${errorMessage(e)}${code ? ` [SQLSTATE ${code}]` : ''}${readOnly}`),
        );
      } finally {
        await client.query('ROLLBACK').catch(() => {});
        await close();
      }
    },
    cancel: () => void cancelBackend(conn, backendPid(client), appName),
    close,
  };
}

/** MySQL/MariaDB: one reading statement in START TRANSACTION READ ONLY, rolled back; rows streamed up to the limit. */
export async function prepareMysqlQuery(
  conn: ConnectionConfig,
  sql: string,
  timeoutMs: number,
): Promise<PreparedQuery> {
  checkReading(sql, 'mysql');
  let c: mysql.Connection;
  try {
    c = await mysql.createConnection({
      uri: conn.url.replace(/^mariadb:/, 'mysql:'),
      multipleStatements: false,
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: false,
    });
  } catch (e) {
    throw new Error(redact(`mysql (${conn.name}): ${errorMessage(e)}`));
  }
  let ended = false;
  const close = async () => {
    if (ended) return;
    ended = true;
    await c.end().catch(() => c.destroy());
  };
  return {
    async run(l) {
      let destroyed = false;
      try {
        // A server-side cap too (MariaDB and MySQL name it differently; whichever exists applies).
        await c.query(`SET SESSION max_statement_time = ${Math.max(1, timeoutMs / 1000)}`).catch(() => {});
        await c.query(`SET SESSION max_execution_time = ${Math.max(1, Math.floor(timeoutMs))}`).catch(() => {});
        await c.query('START TRANSACTION READ ONLY');
        // The promise wrapper's core connection (its type declarations leave the field out):
        // rows are streamed from it so that a result past the limit is never held whole.
        const core: unknown = Reflect.get(c, 'connection');
        if (!(core instanceof MysqlCoreConnection))
          throw new Error('the MySQL driver connection has no core connection to stream rows from');
        const out = await new Promise<QueryResult>((resolve, reject) => {
          let columns: QueryColumn[] = [];
          const rows: unknown[][] = [];
          let settled = false;
          const done = (f: () => void) => {
            if (!settled) {
              settled = true;
              f();
            }
          };
          const q = core.query({ sql, rowsAsArray: true });
          q.on('fields', (fields: { name: string; columnType?: number; type?: number }[]) => {
            columns = fields.map((f) => ({ name: f.name, type: mysqlType(f.columnType ?? f.type) }));
          });
          q.on('result', (row: unknown) => {
            if (!Array.isArray(row)) return; // a statement without rows (SHOW … answers rows; SET would not get here)
            if (rows.length >= l.maxRows) {
              if (!l.truncate)
                return done(() => {
                  destroyed = true;
                  core.destroy();
                  try {
                    tooMany(l);
                  } catch (e) {
                    reject(e instanceof Error ? e : new Error(String(e)));
                  }
                });
              destroyed = true;
              core.destroy();
              return done(() => resolve({ columns, rows, truncated: true }));
            }
            rows.push(row.map(jsonValue));
          });
          q.on('error', (e: Error) => done(() => reject(e)));
          q.on('end', () => done(() => resolve({ columns, rows, truncated: false })));
        });
        return out;
      } catch (e) {
        if (e instanceof RowLimitError) throw e;
        const sqlState = errorString(e, 'sqlState');
        const readOnly = errorNumber(e, 'errno') === 1792 ? ': queries are read-only' : '';
        throw new Error(
          redact(`mysql (${conn.name}): ${errorMessage(e)}${sqlState ? ` [SQLSTATE ${sqlState}]` : ''}${readOnly}`),
        );
      } finally {
        if (!destroyed) await c.query('ROLLBACK').catch(() => {});
        if (destroyed) ended = true;
        await close();
      }
    },
    cancel: () => void killQuery(conn, c.threadId),
    close,
  };
}

const MYSQL_TYPES: Record<number, string> = {
  0: 'decimal',
  1: 'tinyint',
  2: 'smallint',
  3: 'int',
  4: 'float',
  5: 'double',
  7: 'timestamp',
  8: 'bigint',
  9: 'mediumint',
  10: 'date',
  11: 'time',
  12: 'datetime',
  13: 'year',
  15: 'varchar',
  16: 'bit',
  245: 'json',
  246: 'decimal',
  252: 'blob',
  253: 'varchar',
  254: 'char',
};
const mysqlType = (t: number | undefined) => (t === undefined ? 'unknown' : (MYSQL_TYPES[t] ?? `type ${t}`));
