import { DuckDBInstance } from '@duckdb/node-api';
import type mysql from 'mysql2/promise';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunState } from '../../schemas/run.js';
import { spec } from '../harness/specs.js';
import { connectWarehouses, type Warehouses } from '../harness/databases.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let pgc: pg.Client;
let my: mysql.Connection;
let wh: Warehouses;
beforeAll(async () => {
  stack = await testStack('sql');
  wh = await connectWarehouses(stack.connections);
  ({ pg: pgc, mysql: my } = wh);
});
afterAll(async () => {
  await wh?.close();
  await stack?.close();
});

const run = (s: ReturnType<typeof spec>): Promise<RunState> => stack.withWorker(() => stack.runToEnd(s));

describe('sql tasks', () => {
  it('duckdb reads CSV from the lake and writes Parquet atomically', async () => {
    await writeFile(path.join(stack.tenantRoot, 'orders.csv'), 'id,amount\n1,10.5\n2,20\n3,-1\n');
    const st = await run(
      spec(`
id: duck
tasks:
  - id: clean
    kind: sql
    sql: SELECT id, amount FROM read_csv('orders.csv') WHERE amount > 0
    output: silver/orders.parquet
  - id: total
    kind: sql
    needs: [clean]
    sql: SELECT sum(amount) AS total FROM read_parquet('silver/orders.parquet')
    output: gold/total.parquet
`),
    );
    expect(st.status).toBe('success');
    expect(st.tasks.clean.output).toEqual({ rowCount: 2, location: 'silver/orders.parquet' });
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const rows = (
      await c.runAndReadAll(`SELECT total FROM read_parquet('${path.join(stack.tenantRoot, 'gold/total.parquet')}')`)
    ).getRows();
    expect(Number(rows[0][0])).toBe(30.5);
    c.closeSync();
    // no attempt-scoped temporary file is left behind
    expect((await readdir(path.join(stack.tenantRoot, 'silver'))).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('duckdb errors in SQL fail at once with the engine message, and leave no output', async () => {
    const st = await run(
      spec(`
id: duckbad
tasks:
  - id: bad
    kind: sql
    sql: SELEC 1
    output: silver/bad.parquet
    retry: { attempts: 4, initialInterval: 50ms }
  - id: missing
    kind: sql
    sql: SELECT * FROM no_such_table
    retry: { attempts: 4, initialInterval: 50ms }
`),
    );
    expect(st.tasks.bad).toMatchObject({ status: 'failed', attempts: 1, errorType: 'SqlError' });
    expect(st.tasks.bad.error).toMatch(/Parser Error/);
    expect(st.tasks.missing.error).toMatch(/Catalog Error.*no_such_table/);
    expect(st.tasks.missing.attempts).toBe(1);
    await expect(readdir(path.join(stack.tenantRoot, 'silver'))).resolves.not.toContain('bad.parquet');
  });

  it('postgres runs statements once per run, with row counts, and reports SQL errors without retrying', async () => {
    await pgc.query('DROP TABLE IF EXISTS pg_events; CREATE TABLE pg_events (id int primary key, kind text)');
    const st = await run(
      spec(`
id: pgjob
tasks:
  - id: load
    kind: sql
    engine: postgres
    connection: warehouse
    sql: "INSERT INTO pg_events SELECT g, 'x' FROM generate_series(1, 5) g"
  - id: count
    kind: sql
    engine: postgres
    connection: warehouse
    needs: [load]
    sql: SELECT * FROM pg_events WHERE id > 2
  - id: broken
    kind: sql
    engine: postgres
    connection: warehouse
    sql: SELECT nope FROM pg_events
    retry: { attempts: 3, initialInterval: 50ms }
  - id: unknown_conn
    kind: sql
    engine: postgres
    connection: nowhere
    sql: SELECT 1
`),
    );
    expect(st.tasks.load.output).toMatchObject({ rowCount: 5, alreadyApplied: false });
    expect(st.tasks.count.output).toMatchObject({ rowCount: 3 });
    expect(st.tasks.broken).toMatchObject({ status: 'failed', attempts: 1, errorType: 'SqlError' });
    expect(st.tasks.broken.error).toMatch(/column "nope" does not exist.*42703/);
    expect(st.tasks.unknown_conn.error).toMatch(
      new RegExp(
        `unknown connection "nowhere" for tenant ${stack.tenant}: use one of mart, warehouse, or ask the platform operator to add it \\(STRATA_CONN_NOWHERE`,
      ),
    );
    // a failed transaction leaves no ledger row, so a repair can run it again
    const ledger = await pgc.query('SELECT task_id FROM strata_task_ledger WHERE workflow_id = $1 ORDER BY task_id', [
      st.workflowId,
    ]);
    expect(ledger.rows.map((r) => r.task_id)).toEqual(['count', 'load']);
  });

  it('mysql (MariaDB) runs statements with the same guarantees', async () => {
    await my.query('DROP TABLE IF EXISTS my_events');
    await my.query('CREATE TABLE my_events (id INT PRIMARY KEY, kind VARCHAR(10))');
    const st = await run(
      spec(`
id: myjob
tasks:
  - id: load
    kind: sql
    engine: mysql
    connection: mart
    sql: "INSERT INTO my_events VALUES (1, 'a'), (2, 'b'), (3, 'c')"
  - id: read
    kind: sql
    engine: mysql
    connection: mart
    needs: [load]
    sql: SELECT * FROM my_events
  - id: broken
    kind: sql
    engine: mysql
    connection: mart
    sql: SELECT * FROM no_such_table
    retry: { attempts: 3, initialInterval: 50ms }
`),
    );
    expect(st.tasks.load.output).toMatchObject({ rowCount: 3 });
    expect(st.tasks.read.output).toMatchObject({ rowCount: 3 });
    expect(st.tasks.broken).toMatchObject({ status: 'failed', attempts: 1 });
    expect(st.tasks.broken.error).toMatch(/no_such_table.*doesn't exist/);
  });

  it('a second attempt of an applied postgres task finds the ledger and does not apply again', async () => {
    const { runPostgres } = await import('../../activities/sql/postgres.js');
    await pgc.query('DROP TABLE IF EXISTS once; CREATE TABLE once (n int)');
    const key = { workflowId: 'wf-once', taskId: 't' };
    const conn = stack.connections.warehouse;
    const sig = new AbortController().signal;
    const a = await runPostgres(conn, key, 'INSERT INTO once VALUES (1)', sig);
    const [b, c] = await Promise.all([
      runPostgres(conn, key, 'INSERT INTO once VALUES (1)', sig),
      runPostgres(conn, key, 'INSERT INTO once VALUES (1)', sig),
    ]);
    expect(a).toEqual({ rowCount: 1, alreadyApplied: false, ledger: 'unprotected' });
    expect(b).toEqual({ rowCount: 1, alreadyApplied: true, ledger: 'unprotected' });
    expect(c).toEqual({ rowCount: 1, alreadyApplied: true, ledger: 'unprotected' });
    expect((await pgc.query('SELECT count(*)::int AS n FROM once')).rows[0].n).toBe(1);
  });

  it('postgres tasks that meet a database without the ledger at the same moment all run: creating it concurrently is no error', async () => {
    const { runPostgres } = await import('../../activities/sql/postgres.js');
    const { default: Pg } = await import('pg');
    // A database of this test's own: the ledger is dropped between rounds.
    const db = `strata_ledger_race_${process.pid}`;
    await pgc.query(`DROP DATABASE IF EXISTS ${db}`);
    await pgc.query(`CREATE DATABASE ${db}`);
    const url = new URL(stack.connections.warehouse.url);
    url.pathname = `/${db}`;
    const conn = { ...stack.connections.warehouse, url: url.toString() };
    const raceDb = new Pg.Client({ connectionString: conn.url });
    await raceDb.connect();
    const sig = new AbortController().signal;
    try {
      // Several rounds of eight first-time tasks each: Postgres reports the lost race on
      // CREATE TABLE IF NOT EXISTS as 23505, 42P07 or 42710, depending on where it is lost.
      for (let round = 0; round < 6; round++) {
        if (round) await raceDb.query('DROP TABLE strata_task_ledger');
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) =>
            runPostgres(conn, { workflowId: `race-${round}`, taskId: `t${i}` }, 'SELECT 1', sig),
          ),
        );
        expect(results.filter((r) => r.status === 'rejected').map((r) => String(r.reason))).toEqual([]);
        expect((await raceDb.query('SELECT count(*)::int AS n FROM strata_task_ledger')).rows[0].n).toBe(8);
      }
    } finally {
      await raceDb.end();
      await pgc.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    }
  });
});
