/**
 * SQL on DuckDB over the tenant's own lake folder, in the sandbox (sandbox.ts): relative
 * paths in the SQL (read_csv, read_parquet) resolve under that folder, and nothing outside
 * it is readable. With `output`, the query's result is
 * written as Parquet to an attempt-scoped temporary file and renamed into place, so a
 * crashed or retried attempt never leaves a partial file at the output path.
 */
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { z } from 'zod';
import { NonRetryableError } from '../../schemas/errors.js';
import { registerMacros } from './macros.js';
import { quoteLiteral } from './quote.js';
import {
  absolutePaths,
  assertOneSelect,
  openDuck,
  openSharedDuck,
  runTenantSql,
  type SandboxLimits,
} from './sandbox.js';

/** DuckDB error kinds that retrying cannot fix. */
const USER_ERRORS =
  /^(Parser|Binder|Catalog|Conversion|Invalid Input|Constraint|Not implemented|Out of Range|Syntax|Permission|Dependency|Invalid) Error/;

/** A query's rows as JSON values, checked against the shape the caller expects of each. */
export async function duckRows<T>(conn: DuckDBConnection, sql: string, row: z.ZodType<T>): Promise<T[]> {
  return z.array(row).parse((await conn.runAndReadAll(sql)).getRowObjectsJson());
}

const Described = z.object({ column_name: z.string(), column_type: z.string(), null: z.string() });

/** The columns a SELECT returns, as DESCRIBE prints them: name, DuckDB type, nullable. */
export async function describeSelect(
  conn: DuckDBConnection,
  select: string,
): Promise<{ name: string; type: string; nullable: boolean }[]> {
  const rows = await duckRows(conn, `DESCRIBE ${select}`, Described);
  return rows.map((d) => ({ name: d.column_name, type: d.column_type, nullable: d.null !== 'NO' }));
}

/** Resolves a lake-relative path, refusing anything that climbs out of the lake. */
export function lakePath(lakeRoot: string, rel: string): string {
  const root = path.resolve(lakeRoot);
  const p = path.resolve(root, rel);
  if (p !== root && !p.startsWith(root + path.sep))
    throw new NonRetryableError(`output "${rel}" is outside the lake root: use a path inside it`, 'ConfigError');
  return p;
}

export async function runDuckdb(opts: {
  /** The tenant's own lake folder: relative paths resolve here, and only files under it are readable. */
  lakeRoot: string;
  sql: string;
  output?: string;
  attemptTag: string;
  signal: AbortSignal;
  /** The attempt's private scratch folder (temp spill). */
  scratch: string;
  limits?: Partial<SandboxLimits>;
  /** DuckDB macro libraries the task pins: registered inside the locked sandbox before its SQL. */
  macros?: { name: string; version: string; sql: string }[];
  /**
   * Run on the tenant's shared sandboxed instance (a connection and a transaction of its own)
   * rather than a fresh instance: the grant is the same for every plain task of the tenant.
   * Default: on, unless STRATA_SQL_SHARED_INSTANCE=0.
   */
  shared?: boolean;
}): Promise<{ rowCount: number; location?: string }> {
  const root = path.resolve(opts.lakeRoot);
  await mkdir(root, { recursive: true });
  const final = opts.output ? lakePath(root, opts.output) : undefined;
  // The attempt's output is written under the tenant's folder, which the grant covers either way.
  const tmp0 = final ? `${final}.${opts.attemptTag}.tmp` : undefined;
  // A task with macro libraries gets an instance of its own: two tasks registering the same
  // macro names in one shared catalog would conflict.
  const share = !opts.macros?.length && (opts.shared ?? process.env.STRATA_SQL_SHARED_INSTANCE !== '0');
  // An instance of its own is locked to the task's files below; a shared one is locked already.
  const own = share ? undefined : await openDuck();
  const duck =
    own ??
    (await openSharedDuck({
      dirs: [root],
      scratchRoot: path.join(path.dirname(opts.scratch), 'shared'),
      limits: opts.limits,
    }));
  const onAbort = () => duck.conn.interrupt();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  let tmp: string | undefined;
  try {
    if (final) {
      await mkdir(path.dirname(final), { recursive: true });
      tmp = tmp0;
    }
    if (own)
      await own.lock({
        files: tmp ? [tmp] : [],
        dirs: [root],
        scratch: opts.scratch,
        limits: opts.limits,
      });
    if (opts.macros?.length) await registerMacros(duck.conn, opts.macros);
    if (final && tmp) {
      const body = absolutePaths(opts.sql, root).trim().replace(/;\s*$/, '');
      await assertOneSelect(duck.conn, body, 'a task with "output"');
      const reader = await duck.conn.runAndReadAll(`COPY (${body}\n) TO ${quoteLiteral(tmp)} (FORMAT parquet)`);
      const rowCount = Number(reader.getRows()[0]?.[0] ?? 0);
      await rename(tmp, final);
      tmp = undefined;
      return { rowCount, location: path.relative(root, final) };
    }
    const reader = await runTenantSql(duck.conn, absolutePaths(opts.sql, root));
    return { rowCount: reader.currentRowCount };
  } catch (e) {
    throw duckdbFailure(e);
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    if (tmp) await rm(tmp, { force: true });
    await duck.close();
  }
}

/** The one classification of DuckDB errors: what retrying cannot fix fails at once. */
export function duckdbFailure(e: unknown): Error {
  if (e instanceof NonRetryableError) return e;
  const msg = (e instanceof Error ? e.message : String(e)).replace(/^Failed to extract statements: /, '');
  if (USER_ERRORS.test(msg)) return new NonRetryableError(`duckdb: ${msg}`, 'SqlError');
  return new Error(`duckdb: ${msg}`);
}
