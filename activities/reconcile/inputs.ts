/**
 * What a comparison reads, made into local files the comparison paths read (CSV or
 * Parquet), always inside the run's tenant:
 *
 * - a lake path or `s3://` / `file://` URI: on a local lake the file is read in place; on
 *   S3 (MinIO, Ceph) the object is streamed to the comparison's input folder. A relative
 *   path is a key of the tenant's own lake, an absolute URI must fall inside it or in one of
 *   the tenant's allowed locations (`locate`, the same rule as s3.* tasks);
 * - a catalog dataset (`silver.orders@3`): the tenant's own catalog resolves the version,
 *   its Parquet files are read from the lake (cached, as DuckDB tasks do);
 * - a table or query on one of the tenant's connections: read in a read-only transaction
 *   (a Postgres cursor, a MySQL stream), every value as the database prints it, written to
 *   Parquet (nulls kept) in bounded memory;
 * - another task's output in the same run: the dataset version that task committed.
 *
 * Another tenant's dataset, connection or path gets the same answer as an unknown one.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import mysql from 'mysql2';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { Layer, type DatasetId } from '../../schemas/lake.js';
import { DATASET_INPUT_RE, type DatasetRef, type ReconcileInput } from '../../schemas/reconcile.js';
import { CatalogError, type DatasetVersion } from '../../store/catalog.js';
import { errorMessage, NonRetryableError } from '../../schemas/errors.js';
import type { LakeDeps } from '../lake/engine.js';
import { localFile } from '../lake/engine.js';
import { forTenant } from '../lake/open.js';
import type { S3Config } from '../s3/client.js';
import { openStore } from '../s3/client.js';
import { normaliseLocation } from '../s3/location.js';
import { locate } from '../s3/tenant.js';
import { redact, resolveConnection, type Connections } from '../sql/connections.js';
import { quoteIdent, quoteIdentIn, quoteLiteral } from '../sql/quote.js';
import { checkReading, QueryRefused } from '../sql/query.js';

export interface InputEnv {
  tenant: string;
  /** The run (workflow id) a `{task}` input belongs to; undefined outside a pipeline. */
  workflowId?: string;
  /** The lake (unscoped; scoped here with forTenant). Without it only local files are readable. */
  lake?: LakeDeps;
  /** The tenant's allowed locations outside the lake (STRATA_TENANT_LOCATIONS). */
  allowed: readonly string[];
  s3?: S3Config;
  connections?: Connections;
  /** A folder private to this comparison, for fetched and extracted inputs. */
  dir: string;
  signal?: AbortSignal;
  /** A resumed comparison: keep a table extracted by an earlier attempt (its partitions came from it). */
  resume?: boolean;
}

export interface Materialised {
  /** A local file input for the comparison paths (a lake path stays as it was on a local lake). */
  ref: DatasetRef;
  /** Local files the comparison may read besides the tenant's folder (file:// locations). */
  grant: string[];
  /** What was read, for the result: the label and, for datasets, the version. */
  source: { input: string; dataset?: string; namespace?: string; version?: number; rows?: number };
}

const notFound = (what: string) => new NonRetryableError(`dataset not found: ${what}`, 'NotFound');

export async function materialise(input: ReconcileInput, side: 'left' | 'right', env: InputEnv): Promise<Materialised> {
  await mkdir(env.dir, { recursive: true });
  if ('uri' in input) return fromUri(input, side, env);
  if ('dataset' in input) {
    const { id, at } = parseDatasetInput(input.dataset, input.namespace);
    const lake = needLake(env, input.dataset);
    const v = await lake.catalog.resolve(env.tenant, id, at).catch(catalogErr);
    return fromVersion(lake, v, side, env, input.dataset);
  }
  if ('connection' in input) return fromConnection(input, side, env);
  const lake = needLake(env, `task ${input.task}`);
  const v = await taskOutputVersion(lake, env.tenant, env.workflowId, input.task);
  return fromVersion(lake, v, side, env, `task:${input.task}`);
}

/**
 * A dataset input (`layer.name`, `layer.name@3`, `layer.name@'ISO time'`) as the catalog reads
 * it: the dataset and the version or time it is read at (none: the latest).
 */
export function parseDatasetInput(dataset: string, namespace = 'default'): { id: DatasetId; at?: string } {
  const m = DATASET_INPUT_RE.exec(dataset);
  const layer = Layer.safeParse(m?.[1]);
  if (!m || !layer.success)
    throw new NonRetryableError(
      `"${dataset}" is not a dataset: write layer.name, layer.name@VERSION or layer.name@'ISO time'`,
      'BadInput',
    );
  return { id: { layer: layer.data, namespace, name: m[2] }, at: m[3]?.replace(/^'|'$/g, '') };
}

/**
 * The dataset version another task of this run wrote (its main output before its quarantine):
 * what `{task: X}` reads, on every engine.
 */
export async function taskOutputVersion(
  lake: LakeDeps,
  tenant: string,
  workflowId: string | undefined,
  task: string,
): Promise<DatasetVersion> {
  if (!workflowId)
    throw new NonRetryableError(
      `{task: ${task}} reads another task's output, which exists only in a pipeline run: name a dataset or a file instead`,
      'BadInput',
    );
  const r = await lake.catalog.db.query<{ layer: string; namespace: string; name: string; version: number }>(
    `SELECT layer, namespace, name, version FROM lake_dataset_versions
      WHERE tenant = $1 AND run_id = $2 AND task_id = $3 AND status <> 'vacuumed'
      ORDER BY (name LIKE '%\\_quarantine') , name, version DESC`,
    [tenant, workflowId, task],
  );
  const row = r.rows[0];
  if (!row)
    throw new NonRetryableError(
      `task "${task}" wrote no dataset in this run: give it an output dataset (output: layer.name) or compare a file instead`,
      'BadInput',
    );
  const layer = Layer.safeParse(row.layer);
  if (!layer.success) throw new Error(`task "${task}" wrote a dataset in an unknown layer: ${row.layer}`);
  const id: DatasetId = { layer: layer.data, namespace: row.namespace, name: row.name };
  const v = await lake.catalog.version(tenant, id, Number(row.version));
  if (!v) throw notFound(`task ${task}'s output`);
  return v;
}

function needLake(env: InputEnv, what: string): LakeDeps {
  if (!env.lake)
    throw new NonRetryableError(
      `${what}: reading datasets needs the lake catalog, which this worker has not got (set DATABASE_URL on the worker)`,
      'ConfigError',
    );
  return forTenant(env.lake, env.tenant);
}

function catalogErr(e: unknown): never {
  if (e instanceof CatalogError) throw new NonRetryableError(e.message, 'DatasetError');
  throw e;
}

const extOf = (key: string, format?: 'csv' | 'parquet'): 'csv' | 'parquet' =>
  format ?? (key.endsWith('.parquet') ? 'parquet' : 'csv');

async function fromUri(input: DatasetRef, side: string, env: InputEnv): Promise<Materialised> {
  const u = input.uri;
  const source = { input: u };
  const isS3 = /^s3:\/\//i.test(u);
  const lake = env.lake ? forTenant(env.lake, env.tenant) : undefined;
  // Local files (a relative path on a local lake, file://, an absolute path) are read in
  // place: the comparison's own resolver keeps them inside the tenant's folder.
  if (!isS3 && (!lake || lake.store.localPath('x') !== undefined || /^(file:\/\/|\/)/.test(u)))
    return { ref: input, grant: [], source };
  let store;
  let key: string;
  if (lake) ({ store, key } = locate({ lake: lake.store, allowed: env.allowed, s3: env.s3 }, u));
  else {
    const n = normaliseLocation(u);
    const a = env.allowed.find((x) => /^s3:\/\//.test(x) && n.startsWith(x));
    if (!a)
      throw new NonRetryableError(
        `"${u}" is outside your allowed locations: use a path inside the lake, or ask the platform operator to allow the location for your tenant (STRATA_TENANT_LOCATIONS)`,
        'LocationError',
      );
    store = openStore(a.replace(/\/$/, ''), env.s3);
    key = n.slice(a.length);
  }
  if (!key || key.endsWith('/') || !(await store.head(key))) throw notFound(u);
  const format = extOf(key, input.format);
  const file = path.join(env.dir, `${side}.${format}`);
  await fetchOnce(file, (tmp) => store.getFile(key, tmp));
  return { ref: { ...input, uri: `file://${file}`, format }, grant: [`file://${file}`], source };
}

/** Writes a file through a temporary name, so a retry never reads a half-written one. */
async function fetchOnce(file: string, write: (tmp: string) => Promise<unknown>): Promise<void> {
  if (existsSync(file)) return;
  const tmp = `${file}.part`;
  await rm(tmp, { force: true });
  await write(tmp);
  await rename(tmp, file);
}

async function fromVersion(
  deps: LakeDeps,
  v: DatasetVersion,
  side: string,
  env: InputEnv,
  label: string,
): Promise<Materialised> {
  const lake = forTenant(deps, env.tenant);
  const files = await Promise.all(v.files.map((f) => localFile(lake, f)));
  const source = {
    input: label,
    dataset: `${v.layer}.${v.name}`,
    namespace: v.namespace,
    version: v.version,
    rows: v.rowCount,
  };
  if (files.length === 1)
    return { ref: { uri: `file://${files[0]}`, format: 'parquet' }, grant: [`file://${files[0]}`], source };
  // Several part files: one local Parquet file (DuckDB streams them into it).
  const file = path.join(env.dir, `${side}-v${v.version}.parquet`);
  await fetchOnce(file, (tmp) =>
    withDuck(env.dir, (c) =>
      c.run(
        `COPY (SELECT * FROM read_parquet([${files.map(quoteLiteral).join(', ')}])) TO ${quoteLiteral(tmp)} (FORMAT parquet)`,
      ),
    ),
  );
  return { ref: { uri: `file://${file}`, format: 'parquet' }, grant: [`file://${file}`], source };
}

async function withDuck<T>(dir: string, fn: (c: import('@duckdb/node-api').DuckDBConnection) => Promise<T>) {
  const inst = await DuckDBInstance.create(':memory:', {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
  });
  const c = await inst.connect();
  try {
    const tmp = path.join(dir, 'duck-tmp');
    await mkdir(tmp, { recursive: true });
    await c.run(`SET temp_directory = ${quoteLiteral(tmp)}`);
    await c.run(`SET memory_limit = '128MB'`);
    await c.run('SET preserve_insertion_order = false');
    return await fn(c);
  } finally {
    c.closeSync();
    inst.closeSync();
  }
}

const FETCH_ROWS = 5000;

async function fromConnection(
  input: { connection: string; table?: string; query?: string },
  side: string,
  env: InputEnv,
): Promise<Materialised> {
  const conn = resolveConnection(env.connections ?? {}, input.connection, undefined, env.tenant);
  const q = (s: string) => quoteIdentIn(conn.engine, s);
  const sql = input.table ? `SELECT * FROM ${input.table.split('.').map(q).join('.')}` : (input.query ?? '').trim();
  try {
    checkReading(sql, conn.engine);
  } catch (e) {
    if (e instanceof QueryRefused) throw new NonRetryableError(`${side}.query: ${e.message}`, 'BadInput');
    throw e;
  }
  const label = `${input.connection}:${input.table ?? 'query'}`;
  const jsonl = path.join(env.dir, `${side}.jsonl`);
  const file = path.join(env.dir, `${side}.parquet`);
  if (env.resume && existsSync(file))
    return { ref: { uri: `file://${file}`, format: 'parquet' }, grant: [`file://${file}`], source: { input: label } };
  // A table may change between attempts: a fresh attempt reads it again.
  await rm(file, { force: true });
  const out = createWriteStream(jsonl);
  const write = async (line: string) => {
    if (!out.write(line)) await new Promise<void>((r) => out.once('drain', () => r()));
  };
  let columns: string[] = [];
  let rows = 0;
  const emit = async (row: (string | null)[]) => {
    let s = '{';
    for (let i = 0; i < row.length; i++)
      s += `${i ? ',' : ''}"c${i}":${row[i] === null ? 'null' : JSON.stringify(row[i])}`;
    await write(s + '}\n');
    rows++;
  };
  try {
    if (conn.engine === 'postgres') columns = await readPostgres(conn.url, sql, emit, env.signal);
    else columns = await readMysql(conn.url, sql, emit, env.signal);
  } catch (e) {
    out.destroy();
    if (e instanceof NonRetryableError) throw e;
    const code = e instanceof Error && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
    const msg = redact(`${conn.engine} (${conn.name}): ${errorMessage(e)}`);
    // A statement the database refuses (bad SQL, a missing table or column, no rights, a
    // write in a read-only transaction) fails at once; lost connections, deadlocks,
    // serialization failures and resource limits are retried.
    const transient = /^(08|40|53|57|HY|ER_LOCK|ER_CON|ER_SERVER_SHUTDOWN|PROTOCOL_|ECONN|ETIMEDOUT)/;
    if (code && !transient.test(code)) throw new NonRetryableError(msg, 'BadInput');
    throw new Error(msg);
  }
  await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
  const dup = columns.find((c, i) => columns.indexOf(c) !== i);
  if (dup)
    throw new NonRetryableError(
      `${side}: the ${label} result has column "${dup}" twice: give each column its own name`,
      'BadInput',
    );
  if (!columns.length) throw new NonRetryableError(`${side}: the ${label} result has no columns`, 'BadInput');
  const spec = columns.map((_, i) => `'c${i}': 'VARCHAR'`).join(', ');
  const select = columns.map((n, i) => `c${i} AS ${quoteIdent(n)}`).join(', ');
  await withDuck(env.dir, (c) =>
    c.run(
      `COPY (SELECT ${select} FROM read_json(${quoteLiteral(jsonl)}, format = 'newline_delimited', columns = {${spec}})) TO ${quoteLiteral(`${file}.part`)} (FORMAT parquet)`,
    ),
  );
  await rename(`${file}.part`, file);
  await rm(jsonl, { force: true });
  return {
    ref: { uri: `file://${file}`, format: 'parquet' },
    grant: [`file://${file}`],
    source: { input: label, rows },
  };
}

/** A row as the drivers are told to give it: every value as text, or null. */
const isTextRow = (row: unknown[]): row is (string | null)[] => row.every((v) => v === null || typeof v === 'string');

function textRow(row: unknown[]): (string | null)[] {
  if (isTextRow(row)) return row;
  throw new Error('the database driver gave a value that is not text: every value is read as the database prints it');
}

/** Postgres: a cursor in a READ ONLY transaction, rolled back; every value as Postgres prints it. */
async function readPostgres(
  url: string,
  sql: string,
  emit: (row: (string | null)[]) => Promise<void>,
  signal?: AbortSignal,
): Promise<string[]> {
  const client = new pg.Client({
    connectionString: url,
    application_name: 'strata-reconcile',
    types: { getTypeParser: () => (v: string) => v },
  });
  await client.connect();
  try {
    await client.query('BEGIN TRANSACTION READ ONLY');
    // Extended protocol: one statement, so nothing (COMMIT; …) can follow the cursor.
    // queryMode is pg's, not in its type definitions: a typed variable carries it without a cast.
    const declare: pg.QueryConfig & { queryMode: 'extended' } = {
      text: `DECLARE strata_reconcile NO SCROLL CURSOR FOR ${sql.replace(/;\s*$/, '')}\n`,
      queryMode: 'extended',
    };
    await client.query(declare);
    let columns: string[] = [];
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new Error('cancelled');
      const r = await client.query<unknown[]>({
        text: `FETCH FORWARD ${FETCH_ROWS} FROM strata_reconcile`,
        rowMode: 'array',
      });
      columns = r.fields.map((f) => f.name);
      for (const row of r.rows) await emit(textRow(row));
      if (r.rows.length < FETCH_ROWS) break;
    }
    return columns;
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    await client.end().catch(() => {});
  }
}

/** MySQL/MariaDB: streamed in START TRANSACTION READ ONLY, rolled back; every value as text. */
async function readMysql(
  url: string,
  sql: string,
  emit: (row: (string | null)[]) => Promise<void>,
  signal?: AbortSignal,
): Promise<string[]> {
  const c = mysql.createConnection({
    uri: url.replace(/^mariadb:/, 'mysql:'),
    multipleStatements: false,
    dateStrings: true,
    typeCast: (field, next) => {
      void next;
      return field.string();
    },
  });
  const p = c.promise();
  try {
    await p.query('START TRANSACTION READ ONLY');
    let columns: string[] = [];
    const q = c.query({ sql, rowsAsArray: true });
    q.on('fields', (fields: { name: string }[]) => (columns = fields.map((f) => f.name)));
    for await (const row of q.stream({ highWaterMark: 1000 })) {
      if (signal?.aborted) throw signal.reason ?? new Error('cancelled');
      if (Array.isArray(row)) await emit(textRow(row));
    }
    return columns;
  } finally {
    await p.query('ROLLBACK').catch(() => {});
    await p.end().catch(() => c.destroy());
  }
}
