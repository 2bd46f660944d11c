/**
 * The DuckDB sandbox tenant SQL runs in. DuckDB's own settings draw the boundary:
 * external access off except the exact files and folders the task may touch
 * (`allowed_paths`, `allowed_directories`), no extension install or autoload, temp space
 * in the attempt's scratch folder with a cap, memory and thread limits, and then
 * `lock_configuration`, so no statement can SET or RESET any of it. On top of that, tenant
 * statements are checked by type before they run: reading and in-memory work only — no
 * COPY, ATTACH, EXPORT, LOAD, INSTALL, PRAGMA or SET.
 */
import { DuckDBInstance, DuckDBTypeId, StatementType, type DuckDBConnection, type DuckDBType } from '@duckdb/node-api';
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { NonRetryableError, errorMessage } from '../../schemas/errors.js';
import { quoteIdent, quoteLiteral as quote } from './quote.js';

export interface SandboxLimits {
  /** DuckDB memory_limit, e.g. "1GB". */
  memory: string;
  threads: number;
  /** max_temp_directory_size, e.g. "4GB". */
  temp: string;
}

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = { memory: '1GB', threads: 2, temp: '4GB' };

/** The worker's limits per task (STRATA_SQL_MEMORY_LIMIT, STRATA_SQL_THREADS, STRATA_SQL_TEMP_LIMIT), checked by the config schema. */
export function sandboxLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<SandboxLimits> {
  return {
    ...(env.STRATA_SQL_MEMORY_LIMIT ? { memory: env.STRATA_SQL_MEMORY_LIMIT } : {}),
    ...(env.STRATA_SQL_THREADS ? { threads: Number(env.STRATA_SQL_THREADS) } : {}),
    ...(env.STRATA_SQL_TEMP_LIMIT ? { temp: env.STRATA_SQL_TEMP_LIMIT } : {}),
  };
}

export interface SandboxGrant {
  /** Exact files the SQL may read (dataset versions, landing files) or the platform writes (the attempt's output). */
  files: string[];
  /** Folders whose files the SQL may read (a plain task's own lake folder). */
  dirs?: string[];
  /** The attempt's private scratch folder: temp spill goes here, and it is removed on close. */
  scratch: string;
  limits?: Partial<SandboxLimits>;
}

export interface Duck {
  conn: DuckDBConnection;
  /** Applies the grant and locks the configuration; from then on only the grant is reachable. */
  lock(grant: SandboxGrant): Promise<void>;
  close(): Promise<void>;
  /**
   * Closes the instance later, off the path between two tasks, then runs `after` (e.g. removes
   * the task's scratch folder): closing frees the memory its queries used on this thread
   * (measured 6–70 ms), and done as the task returns it delays the workflow task that records
   * it and starts the next one. Retired instances are closed while the next task's main
   * statement runs on DuckDB's own threads (`whileDuckWorks`), or after `RETIRE_IDLE_MS` when
   * no other task comes.
   */
  retire(after?: () => Promise<unknown>): void;
}

/** How long a retired instance waits for the next task before it is closed anyway. */
export const RETIRE_IDLE_MS = 1_000;
const retired: (() => Promise<unknown>)[] = [];
let retireTimer: NodeJS.Timeout | undefined;

/**
 * Awaits `work` (a statement DuckDB runs on its own threads) and closes retired instances
 * meanwhile, so that their closing overlaps the statement instead of delaying a task.
 */
export function whileDuckWorks<T>(work: Promise<T>): Promise<T> {
  if (retired.length) setImmediate(closeRetired);
  return work;
}

function closeRetired() {
  if (retireTimer) clearTimeout(retireTimer);
  retireTimer = undefined;
  for (const close of retired.splice(0)) close().catch(() => {});
}

const list = (xs: string[]) => `[${xs.map(quote).join(', ')}]`;

// Autoload off from the start: nothing may fetch or load an extension behind our back.
const INSTANCE_OPTIONS = {
  autoinstall_known_extensions: 'false',
  autoload_known_extensions: 'false',
  allow_community_extensions: 'false',
};

/**
 * One fresh instance made ahead of need: creating an instance costs about 10 ms of CPU (DuckDB
 * registers its built-in catalog), which a task would otherwise wait for at its start. It is
 * made in the background when the previous one is taken, has never run a statement when it is
 * handed out (so it is as fresh as one made on demand), and is closed after `SHARED_IDLE_MS`
 * unused.
 */
let spare: { ready: Promise<DuckDBInstance>; memory?: string; idle?: NodeJS.Timeout } | undefined;

const SIZE = /^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i;

/**
 * A task instance's options: autoload off, and the worker's memory limit from the start. Setting
 * `memory_limit` on a running instance makes DuckDB flush its allocator, whose caches are the
 * process's: measured 2–33 ms per task on a worker whose earlier tasks left memory to return.
 * At creation it costs nothing, and the lock sets it only for a grant with a limit of its own.
 */
function taskInstanceOptions(): { options: Record<string, string>; memory?: string } {
  const memory = { ...DEFAULT_SANDBOX_LIMITS, ...sandboxLimitsFromEnv() }.memory;
  // A malformed limit is refused by the lock, with its message; the instance starts with DuckDB's own.
  return SIZE.test(memory)
    ? { options: { ...INSTANCE_OPTIONS, memory_limit: memory }, memory }
    : { options: INSTANCE_OPTIONS };
}

function makeSpare() {
  const { options, memory } = taskInstanceOptions();
  const entry: NonNullable<typeof spare> = { ready: DuckDBInstance.create(':memory:', options), memory };
  spare = entry;
  entry.ready.then(
    (instance) => {
      entry.idle = setTimeout(() => {
        if (spare !== entry) return;
        spare = undefined;
        instance.closeSync();
      }, SHARED_IDLE_MS);
      entry.idle.unref();
    },
    () => {
      if (spare === entry) spare = undefined;
    },
  );
}

/**
 * A never-used instance: the spare when there is one (and a new spare in the background), else a
 * new one; with the memory limit it was created with.
 */
async function freshInstance(): Promise<{ instance: DuckDBInstance; memory?: string }> {
  const taken = spare;
  spare = undefined;
  makeSpare();
  if (taken) {
    const instance = await taken.ready.catch(() => undefined);
    if (taken.idle) clearTimeout(taken.idle);
    if (instance) return { instance, memory: taken.memory };
  }
  const { options, memory } = taskInstanceOptions();
  return { instance: await DuckDBInstance.create(':memory:', options), memory };
}

/** A fresh in-memory DuckDB; call `lock` before any tenant SQL runs. */
export async function openDuck(): Promise<Duck> {
  // Autoload off from the start: nothing may fetch or load an extension behind our back.
  const { instance, memory } = await freshInstance();
  const conn = await instance.connect();
  let scratch: string | undefined;
  return {
    conn,
    async lock(g) {
      scratch = g.scratch;
      await lockSandbox(conn, g, memory);
    },
    close,
    retire(after) {
      retired.push(async () => {
        await close();
        await after?.();
      });
      if (!retireTimer) {
        retireTimer = setTimeout(closeRetired, RETIRE_IDLE_MS);
        retireTimer.unref();
      }
    },
  };
  async function close() {
    conn.closeSync();
    instance.closeSync();
    if (scratch) await rm(path.join(scratch, 'duckdb-tmp'), { recursive: true, force: true });
  }
}

/** Applies a grant to a fresh instance's settings and locks them (they are the instance's, for every connection). */
async function lockSandbox(conn: DuckDBConnection, g: SandboxGrant, createdWithMemory?: string): Promise<void> {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, ...sandboxLimitsFromEnv(), ...g.limits };
  if (!SIZE.test(limits.memory) || !SIZE.test(limits.temp))
    throw new Error(`sandbox limits must be sizes like "1GB" (got memory ${limits.memory}, temp ${limits.temp})`);
  const temp = path.join(g.scratch, 'duckdb-tmp');
  await mkdir(temp, { recursive: true });
  const dirs = (g.dirs ?? []).map((d) => (d.endsWith(path.sep) ? d : d + path.sep));
  // One round trip: the settings apply in order, the lock last.
  await conn.run(
    [
      `SET temp_directory = ${quote(temp)}`,
      `SET max_temp_directory_size = ${quote(limits.temp)}`,
      // Set at creation already, unless this grant has a limit of its own (see taskInstanceOptions).
      ...(limits.memory === createdWithMemory ? [] : [`SET memory_limit = ${quote(limits.memory)}`]),
      `SET threads = ${Math.max(1, Math.floor(limits.threads))}`,
      `SET allowed_directories = ${list(dirs)}`,
      // A granted folder itself is reachable too (COPY … PARTITION_BY creates and lists it), not only what is in it.
      `SET allowed_paths = ${list([...g.files, ...dirs.map((d) => d.slice(0, -path.sep.length))])}`,
      'SET enable_external_access = false',
      'SET lock_configuration = true',
    ].join(';\n'),
  );
}

/**
 * A connection on a sandboxed instance that a tenant's plain DuckDB tasks on this worker share
 * (their grant is the same: the tenant's lake folder, the same limits). A new instance costs
 * about 10 ms of CPU (DuckDB registers its built-in catalog), a connection well under 1 ms.
 * The instance is keyed by its grant, so two tenants never share one; its settings are locked
 * before any tenant SQL, as in `openDuck`. Each task runs in a transaction of its own that is
 * rolled back at the end, so what one task creates is never seen by another; its outputs are
 * files, written by COPY (not transactional). Limits (memory, threads, temp) apply to the tenant's
 * tasks on this worker together. An instance nobody uses for `SHARED_IDLE_MS` is closed.
 */
export async function openSharedDuck(g: {
  dirs: string[];
  /** Where the instance's temp spill folder goes (one per instance under it). */
  scratchRoot: string;
  limits?: Partial<SandboxLimits>;
}): Promise<{ conn: DuckDBConnection; close(): Promise<void> }> {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, ...sandboxLimitsFromEnv(), ...g.limits };
  const key = JSON.stringify({ dirs: [...g.dirs].sort(), limits });
  let entry = shared.get(key);
  if (!entry) {
    const scratch = path.join(g.scratchRoot, createHash('sha256').update(key).digest('hex').slice(0, 16));
    entry = (async () => {
      const instance = await DuckDBInstance.create(':memory:', INSTANCE_OPTIONS);
      const conn = await instance.connect();
      try {
        await lockSandbox(conn, { files: [], dirs: g.dirs, scratch, limits });
      } finally {
        conn.closeSync();
      }
      return { instance, users: 0, scratch };
    })();
    shared.set(key, entry);
    entry.catch(() => shared.delete(key));
  }
  const sd = await entry;
  sd.users++;
  if (sd.idle) clearTimeout(sd.idle);
  sd.idle = undefined;
  let conn: DuckDBConnection | undefined;
  try {
    conn = await sd.instance.connect();
    await conn.run('BEGIN TRANSACTION');
  } catch (e) {
    conn?.closeSync();
    release(key, sd, true);
    throw e;
  }
  const c = conn;
  let closed = false;
  return {
    conn: c,
    async close() {
      if (closed) return;
      closed = true;
      let broken = false;
      try {
        await c.run('ROLLBACK');
      } catch (e) {
        // A failed statement already ended the transaction; an invalidated database is not reused.
        broken = /invalidated|FATAL/i.test(String(errorMessage(e)));
      }
      c.closeSync();
      release(key, sd, broken);
    },
  };
}

interface SharedDuck {
  instance: DuckDBInstance;
  users: number;
  scratch: string;
  idle?: NodeJS.Timeout;
  dropped?: boolean;
}
const shared = new Map<string, Promise<SharedDuck>>();
export const SHARED_IDLE_MS = 30_000;

function release(key: string, sd: SharedDuck, broken: boolean) {
  sd.users--;
  if (broken && !sd.dropped) {
    sd.dropped = true;
    shared.delete(key);
  }
  if (sd.users > 0) return;
  const end = () => {
    if (!sd.dropped) shared.delete(key);
    sd.dropped = true;
    sd.instance.closeSync();
    void rm(path.join(sd.scratch, 'duckdb-tmp'), { recursive: true, force: true });
  };
  if (sd.dropped) return end();
  sd.idle = setTimeout(end, SHARED_IDLE_MS);
  sd.idle.unref();
}

/** Statement kinds tenant SQL may run: reading, and in-memory tables and views. */
const ALLOWED: ReadonlySet<StatementType> = new Set([
  StatementType.SELECT,
  StatementType.EXPLAIN,
  StatementType.CREATE,
  StatementType.INSERT,
  StatementType.UPDATE,
  StatementType.DELETE,
  StatementType.DROP,
]);

/** A statement type's name (SELECT, COPY…), as DuckDB's enum spells it. */
export function statementTypeName(t: StatementType): string {
  return StatementType[t] ?? String(t);
}

/**
 * Runs tenant SQL statement by statement, refusing (before it runs) any statement of a
 * kind that reaches outside the sandbox. Returns the last statement's rows.
 */
export async function runTenantSql(conn: DuckDBConnection, sql: string) {
  const extracted = await conn.extractStatements(sql);
  if (extracted.count === 0) throw new NonRetryableError('the SQL holds no statement: write a SELECT', 'SqlError');
  const run = async (i: number) => {
    const st = await extracted.prepare(i);
    if (!ALLOWED.has(st.statementType))
      throw new NonRetryableError(
        `duckdb: statement ${i + 1} is a ${statementTypeName(st.statementType)}, which tasks may not run: Strata writes the task's output itself (set "output"), and reads only the lake`,
        'SqlError',
      );
    return st.runAndReadAll();
  };
  for (let i = 0; i < extracted.count - 1; i++) await run(i);
  return run(extracted.count - 1);
}

/** Checks that text is exactly one SELECT (a dataset's query, a check predicate) without running it. */
export async function assertOneSelect(conn: DuckDBConnection, sql: string, what: string): Promise<void> {
  const extracted = await conn.extractStatements(sql);
  if (extracted.count !== 1)
    throw new NonRetryableError(
      `${what} must be one SELECT statement, found ${extracted.count}: remove the extra statements`,
      'SqlError',
    );
  const st = await extracted.prepare(0);
  if (st.statementType !== StatementType.SELECT)
    throw new NonRetryableError(
      `${what} must be a SELECT, not a ${statementTypeName(st.statementType)}: Strata writes the output itself`,
      'SqlError',
    );
}

/**
 * Checks that text is exactly one SELECT and returns the columns it yields, named and typed as
 * `DESCRIBE SELECT * FROM (…)` prints them (duplicate names get DuckDB's `_1` suffixes, aliased
 * types such as JSON keep their alias), binding it once: a lake task's SELECT is otherwise bound
 * by the check and again by DESCRIBE, each a few ms over its inputs' Parquet footers. The text
 * is first parsed alone (exactly one statement), then bound inside `SELECT * FROM (…)`, where
 * only a query can stand; what does not bind there is checked as `assertOneSelect` does, for its
 * message, or fails with DuckDB's own error.
 */
export async function oneSelectColumns(
  conn: DuckDBConnection,
  sql: string,
  what: string,
): Promise<{ name: string; type: string }[]> {
  const body = sql.trim().replace(/;\s*$/, '');
  const parsed = await conn.extractStatements(body);
  if (parsed.count !== 1)
    throw new NonRetryableError(
      `${what} must be one SELECT statement, found ${parsed.count}: remove the extra statements`,
      'SqlError',
    );
  let st: Awaited<ReturnType<typeof parsed.prepare>>;
  try {
    // The newline ends a trailing line comment inside the tenant's SELECT.
    const wrapped = await conn.extractStatements(`SELECT * FROM (${body}\n)`);
    if (wrapped.count !== 1)
      throw new NonRetryableError(`${what} must be one SELECT statement: remove the extra statements`, 'SqlError');
    st = await wrapped.prepare(0);
  } catch (e) {
    await assertOneSelect(conn, body, what);
    throw e;
  }
  if (st.statementType !== StatementType.SELECT)
    throw new NonRetryableError(`${what} must be a SELECT, not a ${statementTypeName(st.statementType)}`, 'SqlError');
  return Array.from({ length: st.columnCount }, (_, i) => ({
    name: st.columnName(i),
    type: typeText(st.columnType(i)),
  }));
}

/** A type as DESCRIBE prints it, but for always quoting struct field names: an alias (JSON) wins, at any depth. */
export function typeText(t: DuckDBType): string {
  if (t.alias) return t.alias;
  switch (t.typeId) {
    case DuckDBTypeId.STRUCT:
      return `STRUCT(${t.entryNames.map((n, i) => `${quoteIdent(n)} ${typeText(t.entryTypes[i])}`).join(', ')})`;
    case DuckDBTypeId.LIST:
      return `${typeText(t.valueType)}[]`;
    case DuckDBTypeId.ARRAY:
      return `${typeText(t.valueType)}[${t.length}]`;
    case DuckDBTypeId.MAP:
      return `MAP(${typeText(t.keyType)}, ${typeText(t.valueType)})`;
    case DuckDBTypeId.UNION:
      return `UNION(${t.memberTags.map((n, i) => `${quoteIdent(n)} ${typeText(t.memberTypes[i])}`).join(', ')})`;
    default:
      return t.toString();
  }
}

const READERS = /\b(read_\w+|parquet_scan|parquet_metadata|parquet_schema|glob|sniff_csv)\s*\(\s*$/i;
const FROM_LIKE = /\b(from|join)\s+$/i;

/**
 * Relative file paths in tenant SQL (`read_csv('landing/x.csv')`, `FROM 'a.parquet'`) are
 * rewritten to absolute paths under the tenant's folder, because DuckDB would otherwise
 * also look for them in the worker's working folder. Only the first argument of DuckDB's
 * file readers and `FROM 'file'` scans are rewritten; a relative path anywhere else stays
 * as written and DuckDB refuses it (the sandbox allows no relative paths), so a form this
 * misses fails closed.
 */
export function absolutePaths(sql: string, root: string): string {
  let out = '';
  let i = 0;
  let inList = false;
  while (i < sql.length) {
    const ch = sql[i];
    if (ch === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end < 0 ? sql.length : end;
      out += sql.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      const stop = end < 0 ? sql.length : end + 2;
      out += sql.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === "'") {
      let j = i + 1;
      let text = '';
      while (j < sql.length) {
        if (sql[j] === "'" && sql[j + 1] === "'") {
          text += "'";
          j += 2;
        } else if (sql[j] === "'") break;
        else text += sql[j++];
      }
      const isPathArg = READERS.test(out) || FROM_LIKE.test(out) || (inList && /[[,]\s*$/.test(out));
      if (isPathArg && text && !/^[a-z][a-z0-9+.-]*:\/\//i.test(text) && !text.startsWith('/'))
        out += `'${path.join(root, text).replaceAll("'", "''")}'`;
      else out += sql.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (ch === '[' && READERS.test(out)) inList = true;
    else if (ch === ']') inList = false;
    out += ch;
    i++;
  }
  return out;
}
