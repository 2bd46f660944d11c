/**
 * DuckDB macro libraries: uploaded over HTTP (buildApi in-process on a folder lake), checked
 * by DuckDB itself (CREATE MACRO only), versioned and pinned like JAR libraries, registered
 * inside the task's locked sandbox before its SQL: a macro body that reaches past the
 * task's grant fails closed.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { loadConfig } from '../../schemas/config.js';
import { createKey } from '../../store/keys.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let app: FastifyInstance;
let key: string;
let otherKey: string;

beforeAll(async () => {
  stack = await testStack('macros', { lake: 'file' });
  const config = loadConfig({ STRATA_TASK_QUEUE: stack.taskQueue, TEMPORAL_ADDRESS: inject('temporalAddress') });
  ({ app } = await buildApi({ db: stack.db, client: stack.client, config, dispatcher: false, lake: stack.lake }));
  key = (await createKey(stack.db, stack.tenant, 'admin', 'macros')).secret;
  otherKey = (await createKey(stack.db, 'globex', 'admin', 'macros-globex')).secret;
});
afterAll(async () => {
  await app?.close();
  await stack?.close();
});

const MONEY = `-- money helpers
CREATE MACRO cents(x) AS CAST(round(x * 100) AS BIGINT);
CREATE MACRO evens(n) AS TABLE SELECT range AS i FROM range(n) WHERE range % 2 = 0;
`;

const upload = (name: string, version: string, sql: string, k = key) =>
  app.inject({
    method: 'POST',
    url: `/api/v1/libraries?name=${name}&version=${version}`,
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/sql' },
    payload: sql,
  });
const register = (body: object, k = key) =>
  app.inject({
    method: 'POST',
    url: '/api/v1/pipelines',
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
    payload: body,
  });

async function runTask(sql: string, libraries: object[], output?: string) {
  const s = spec({
    id: 'macro_run',
    tasks: [{ id: 'q', kind: 'sql', sql, libraries, ...(output ? { output } : {}) }],
  });
  return stack.withWorker(async () => {
    const h = await stack.runs.start({ spec: s, tenant: stack.tenant, trigger: 'manual' });
    await stack.client.workflow
      .getHandle(h.runId)
      .result()
      .catch(() => undefined);
    return stack.runs.state(h.runId);
  });
}

describe('DuckDB macro libraries', () => {
  it('upload: DuckDB reads the macros; the same SQL again is a no-op, other SQL a 409; anything but CREATE MACRO is a 400 naming the statement', async () => {
    const first = await upload('money', '1', MONEY);
    expect(first.statusCode, first.body).toBe(201);
    expect(first.json()).toMatchObject({
      kind: 'duckdb',
      file: 'money-1.sql',
      key: 'libraries/money/1/money-1.sql',
      functions: [
        { name: 'cents', class: 'macro' },
        { name: 'evens', class: 'table_macro' },
      ],
    });
    expect((await upload('money', '1', MONEY)).statusCode).toBe(200);
    expect((await upload('money', '1', `${MONEY}CREATE MACRO twice(x) AS x * 2;`)).statusCode).toBe(409);
    for (const [sql, says] of [
      ['CREATE MACRO ok(x) AS x; CREATE TABLE t AS SELECT 1 AS a;', /statement 2 creates something other than a macro/],
      ['CREATE VIEW v AS SELECT 1', /statement 1 creates something other than a macro/],
      ['SELECT 42', /statement 1 is a SELECT: a DuckDB macro library holds only CREATE MACRO statements/],
      ["COPY (SELECT 1) TO 'x.csv'", /statement 1: .*(COPY|Permission)/],
      ["ATTACH 'other.db'", /statement 1 is a ATTACH|statement 1: /],
      ["CREATE MACRO peek() AS TABLE SELECT * FROM read_csv('/etc/passwd')", /statement 1: Permission Error/],
      ['CREATE MACRO broken(', /does not parse/],
    ] as const) {
      const r = await upload('bad', '1', sql);
      expect(r.statusCode, `${sql}: ${r.body}`).toBe(400);
      expect(r.json().error).toMatch(says);
    }
    expect((await stack.db.query("SELECT 1 FROM library_versions WHERE name = 'bad'")).rowCount).toBe(0);
  });

  it('a duckdb task pinning the library uses its macros; registration checks the pin against the tenant’s own', async () => {
    const ok = await register({
      id: 'uses_money',
      tasks: [{ id: 'q', kind: 'sql', sql: 'SELECT cents(1.5) AS c', libraries: [{ name: 'money', version: 1 }] }],
    });
    expect(ok.statusCode, ok.body).toBe(201);
    const missing = await register({
      id: 'uses_money2',
      tasks: [{ id: 'q', kind: 'sql', sql: 'SELECT 1', libraries: [{ name: 'money', version: 9 }] }],
    });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error).toMatch(/library "money" has no version "9": use one of 1/);
    const foreign = await register(
      { id: 'steal', tasks: [{ id: 'q', kind: 'sql', sql: 'SELECT 1', libraries: [{ name: 'money', version: 1 }] }] },
      otherKey,
    );
    expect(foreign.statusCode).toBe(400);
    expect(foreign.json().error).toMatch(/no library "money"/);
    const onPostgres = await register({
      id: 'pg_money',
      tasks: [
        {
          id: 'q',
          kind: 'sql',
          engine: 'postgres',
          connection: 'warehouse',
          sql: 'SELECT 1',
          libraries: [{ name: 'money', version: 1 }],
        },
      ],
    });
    expect(onPostgres.statusCode).toBe(400);
    expect(onPostgres.json().error).toMatch(/"libraries" applies to engines spark and emr only/);
    // Deleting the pinned version is refused.
    const del = await app.inject({
      method: 'DELETE',
      url: '/api/v1/libraries/money/1',
      headers: { authorization: `Bearer ${key}` },
    });
    expect(del.statusCode).toBe(409);

    const st = await runTask(
      'SELECT cents(12.345) AS c, (SELECT count(*) FROM evens(10)) AS n',
      [{ name: 'money', version: 1 }],
      'out/money.parquet',
    );
    expect(st.status, JSON.stringify(st.tasks)).toBe('success');
    const inst = await DuckDBInstance.create(':memory:');
    const conn = await inst.connect();
    const rows = (
      await conn.runAndReadAll(`SELECT c, n FROM '${path.join(stack.tenantRoot, 'out/money.parquet')}'`)
    ).getRows();
    conn.closeSync();
    inst.closeSync();
    expect(rows.map((r) => r.map(Number))).toEqual([[1235, 5]]);

    // A task writing a dataset registers them the same way, in its own sandbox.
    const ds = await stack.withWorker(async () => {
      const sp = spec({
        id: 'macro_dataset',
        tasks: [
          {
            id: 'q',
            kind: 'sql',
            layer: 'silver',
            sql: 'SELECT cents(i) AS c FROM evens(6)',
            output: 'silver.cents',
            libraries: [{ name: 'money', version: 1 }],
          },
        ],
      });
      const h = await stack.runs.start({ spec: sp, tenant: stack.tenant, trigger: 'manual' });
      return stack.runs.wait(h.runId);
    });
    expect(ds.status, JSON.stringify(ds.tasks)).toBe('success');
    expect(ds.tasks.q.output?.rowCount).toBe(3);
  });

  it('a hostile macro fails closed: its body is bound by the task’s sandbox', async () => {
    // Another tenant's file, and a file of the worker's, that the macro's body names.
    const foreign = path.join(stack.lakeRoot, 'globex', 'secret.csv');
    await mkdir(path.dirname(foreign), { recursive: true });
    await writeFile(foreign, 'card\n4111111111111111\n');
    // DuckDB binds a macro body naming a file when the macro is created: the upload's sandbox refuses it.
    const named = await upload('sneaky', '1', `CREATE MACRO peek() AS (SELECT count(*) FROM read_csv('${foreign}'));`);
    expect(named.statusCode).toBe(400);
    expect(named.json().error).toMatch(/statement 1: Permission Error/);
    // A body that takes the path as an argument cannot be bound early: it is bound in the task's sandbox, and refused there.
    const param = await upload('sneaky', '2', 'CREATE MACRO peek(p) AS TABLE SELECT * FROM read_csv(p);');
    expect(param.statusCode, param.body).toBe(201);
    const st = await runTask(
      `SELECT count(*) AS n FROM peek('${foreign}')`,
      [{ name: 'sneaky', version: 2 }],
      'out/peek.parquet',
    );
    expect(st.status).toBe('failed');
    expect(st.tasks.q.error).toMatch(/Permission Error|disabled by configuration/);
    // The same macro over the tenant's own file works: the macro changes nothing about the grant.
    await mkdir(path.join(stack.tenantRoot, 'landing'), { recursive: true });
    await writeFile(path.join(stack.tenantRoot, 'landing/own.csv'), 'a\n1\n2\n');
    const own = await runTask(
      `SELECT count(*) AS n FROM peek('${path.join(stack.tenantRoot, 'landing/own.csv')}')`,
      [{ name: 'sneaky', version: 2 }],
      'out/own.parquet',
    );
    expect(own.status, JSON.stringify(own.tasks)).toBe('success');
    await expect(readFile(path.join(stack.tenantRoot, 'out/peek.parquet'))).rejects.toThrow();
    // A library changed in the lake behind the metastore's back (its SHA-256 no longer matches) is refused.
    const lakeKey = 'libraries/money/1/money-1.sql';
    const original = await stack.store!.getBytes(lakeKey);
    expect(original.toString()).toBe(MONEY);
    await stack.store!.putBytes(lakeKey, "CREATE MACRO cents(x) AS (SELECT count(*) FROM read_csv('/etc/passwd'));");
    const again = await runTask('SELECT cents(1) AS c', [{ name: 'money', version: 1 }], 'out/forged.parquet');
    expect(again.status).toBe('failed');
    expect(again.tasks.q.error).toMatch(/does not match its SHA-256/);
    await stack.store!.putBytes(lakeKey, original);
  });
});
