/**
 * Plain DuckDB tasks share one sandboxed instance per tenant (per grant) on a worker: each task
 * has its own connection and transaction, so nothing one task creates is seen by another, the
 * locked settings hold for every connection, and another tenant's folder stays out of reach.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDuckdb } from '../../activities/sql/duckdb.js';
import { openSharedDuck, runTenantSql } from '../../activities/sql/sandbox.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'strata-shared-duck-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const task = (tenant: string, sql: string, output?: string, n = 0) =>
  runDuckdb({
    lakeRoot: path.join(dir, 'lake', tenant),
    sql,
    output,
    attemptTag: `a${n}`,
    signal: new AbortController().signal,
    scratch: path.join(dir, 'scratch', tenant, `t${n}`),
    shared: true,
  });
const failure = (p: Promise<unknown>) =>
  p.then(
    () => 'succeeded',
    (e) => String((e as Error).message),
  );

describe('the shared DuckDB sandbox', () => {
  it('keeps tasks apart: tables a task creates are gone for the next, even while the first is still open', async () => {
    expect(await task('acme', 'CREATE TABLE scratch AS SELECT 42 AS v; SELECT * FROM scratch')).toEqual({
      rowCount: 1,
    });
    expect(await failure(task('acme', 'SELECT * FROM scratch', undefined, 1))).toMatch(
      /Catalog Error: Table with name scratch does not exist/,
    );
    const a = await openSharedDuck({ dirs: [path.join(dir, 'lake', 'acme')], scratchRoot: path.join(dir, 'shared') });
    const b = await openSharedDuck({ dirs: [path.join(dir, 'lake', 'acme')], scratchRoot: path.join(dir, 'shared') });
    try {
      await runTenantSql(a.conn, 'CREATE TABLE mine AS SELECT 1 AS v');
      expect(await failure(runTenantSql(b.conn, 'SELECT * FROM mine'))).toMatch(/Table with name mine does not exist/);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('holds the lock on every connection and refuses what tasks may not run', async () => {
    for (const sql of [
      'SET enable_external_access = true',
      'RESET lock_configuration',
      "SET allowed_directories = ['/']",
    ]) {
      const c = await openSharedDuck({ dirs: [path.join(dir, 'lake', 'acme')], scratchRoot: path.join(dir, 'shared') });
      try {
        expect(await failure(c.conn.run(sql)), sql).toMatch(/locked|lock_configuration|Cannot change/i);
      } finally {
        await c.close();
      }
    }
    for (const sql of ['COMMIT', 'BEGIN TRANSACTION', "ATTACH ':memory:' AS x", 'SET threads = 8'])
      expect(await failure(task('acme', sql, undefined, 2)), sql).toMatch(/statement 1 is a/);
  });

  it("never reaches another tenant's folder or the worker's files, and writes outputs only in its own", async () => {
    const out = await task('acme', 'SELECT 7 AS secret', 'private/x.parquet', 3);
    expect(out).toEqual({ rowCount: 1, location: 'private/x.parquet' });
    const acmeFile = path.join(dir, 'lake', 'acme', 'private', 'x.parquet');
    expect(await task('acme', `SELECT * FROM read_parquet('${acmeFile}')`, undefined, 4)).toEqual({ rowCount: 1 });
    expect(await failure(task('globex', `SELECT * FROM read_parquet('${acmeFile}')`, undefined, 5))).toMatch(
      /Permission Error/,
    );
    expect(await failure(task('globex', "SELECT * FROM read_text('/etc/passwd')", undefined, 6))).toMatch(
      /Permission Error/,
    );
    expect(await failure(task('globex', "SELECT * FROM '../acme/private/x.parquet'", undefined, 7))).toMatch(
      /Permission Error|does not exist|outside/,
    );
  });
});
