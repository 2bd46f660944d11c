/**
 * SQL on DuckDB over the local lake folder. Relative paths in the SQL (read_csv,
 * read_parquet) resolve under the lake root. With `output`, the query's result is
 * written as Parquet to an attempt-scoped temporary file and renamed into place, so a
 * crashed or retried attempt never leaves a partial file at the output path.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { NonRetryableError } from '../core/task.js';

/** DuckDB error kinds that retrying cannot fix. */
const USER_ERRORS = /^(Parser|Binder|Catalog|Conversion|Invalid Input|Constraint|Not implemented|Out of Range|Syntax|Permission|Dependency|Invalid) Error/;

export function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** Resolves a lake-relative path, refusing anything that climbs out of the lake. */
export function lakePath(lakeRoot: string, rel: string): string {
  const root = path.resolve(lakeRoot);
  const p = path.resolve(root, rel);
  if (p !== root && !p.startsWith(root + path.sep)) throw new NonRetryableError(`output "${rel}" is outside the lake root: use a path inside it`, 'ConfigError');
  return p;
}

export async function runDuckdb(opts: {
  lakeRoot: string;
  sql: string;
  output?: string;
  attemptTag: string;
  signal: AbortSignal;
}): Promise<{ rowCount: number; location?: string }> {
  const root = path.resolve(opts.lakeRoot);
  await mkdir(root, { recursive: true });
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const onAbort = () => conn.interrupt();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  let tmp: string | undefined;
  try {
    await conn.run(`SET file_search_path = ${quoteLiteral(root)}`);
    if (opts.output) {
      const final = lakePath(root, opts.output);
      await mkdir(path.dirname(final), { recursive: true });
      tmp = `${final}.${opts.attemptTag}.tmp`;
      const body = opts.sql.trim().replace(/;\s*$/, '');
      const reader = await conn.runAndReadAll(`COPY (${body}) TO ${quoteLiteral(tmp)} (FORMAT parquet)`);
      const rowCount = Number(reader.getRows()[0]?.[0] ?? 0);
      await rename(tmp, final);
      tmp = undefined;
      return { rowCount, location: path.relative(root, final) };
    }
    const reader = await conn.runAndReadAll(opts.sql);
    return { rowCount: reader.currentRowCount };
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (USER_ERRORS.test(msg)) throw new NonRetryableError(`duckdb: ${msg}`, 'SqlError');
    throw new Error(`duckdb: ${msg}`);
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    if (tmp) await rm(tmp, { force: true });
    conn.closeSync();
    instance.closeSync();
  }
}
