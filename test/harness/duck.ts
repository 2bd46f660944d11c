/** Reading what the lake holds with DuckDB, independently of the code that wrote it, for tests' checks. */
import { DuckDBInstance } from '@duckdb/node-api';
import path from 'node:path';
import type { DatasetId } from '../../schemas/lake.js';
import { localFile } from '../../activities/lake/engine.js';
import { forTenant } from '../../activities/lake/open.js';
import { prepareDuckdbQuery } from '../../activities/sql/query.js';
import type { TestStack } from './temporal.js';

/** The rows of local Parquet files (optionally `WHERE …`), read by a DuckDB of their own. */
export async function parquetRows(files: string[], where = ''): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  try {
    return (
      await c.runAndReadAll(`SELECT * FROM read_parquet([${files.map((f) => `'${f}'`).join(',')}]) ${where}`)
    ).getRowObjectsJson();
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

/**
 * The rows of a dataset version of the stack's tenant (its current one without `version`),
 * read straight from the files the catalog names.
 */
export async function datasetRows(
  stack: TestStack,
  id: Omit<DatasetId, 'namespace'> & { namespace?: string },
  version?: number,
  where = '',
): Promise<Record<string, unknown>[]> {
  const lake = forTenant(stack.lake!, stack.tenant);
  const ds = { namespace: 'default', ...id };
  const v =
    version === undefined
      ? await stack.lake!.catalog.current(stack.tenant, ds)
      : await stack.lake!.catalog.version(stack.tenant, ds, version);
  if (!v) throw new Error(`${ds.layer}.${ds.name}${version === undefined ? '' : `@${version}`} has no version`);
  return parquetRows(await Promise.all(v.files.map((f) => localFile(lake, f))), where);
}

/** Rows as comparable text: every value as a string, rows sorted. */
export const canon = (rows: Record<string, unknown>[]) =>
  rows
    .map((r) =>
      JSON.stringify(
        Object.fromEntries(
          Object.entries(r)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([k, v]) => [k, v === null ? null : typeof v === 'object' ? JSON.stringify(v) : String(v as string)]),
        ),
      ),
    )
    .sort();

/** A DuckDB query over the stack tenant's lake, as its tasks' SQL sees it (datasets by name): all its rows. */
export async function lakeQuery(stack: TestStack, sql: string) {
  const q = await prepareDuckdbQuery({
    lake: forTenant(stack.lake!, stack.tenant),
    tenant: stack.tenant,
    namespace: 'default',
    sql,
    scratch: path.join(stack.lakeRoot, 'q'),
  });
  return (await q.run({ maxRows: 100_000, truncate: false, rowsHint: '' })).rows;
}
