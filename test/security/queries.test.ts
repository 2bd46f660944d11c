/**
 * The query API (POST /api/v1/queries) as two tenants meet it: answers with rows from the
 * tenant's datasets (any version) and its own Postgres/MySQL connections, polls, cancels,
 * chunks, CSV, request ids, limits and the audit trail; and refuses another tenant's
 * statements, datasets, files and connections, and every write.
 */
import { tableFromIPC } from 'apache-arrow';
import type { FastifyInstance } from 'fastify';
import mysql from 'mysql2/promise';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { commitVersions, writeVersion } from '../../activities/lake/engine.js';
import { forTenant } from '../../activities/lake/open.js';
import { openDuck } from '../../activities/sql/sandbox.js';
import { createKey } from '../../store/keys.js';
import { readAnswer, stackApi } from '../harness/api.js';
import { runCli } from '../harness/processes.js';
import { waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let app: FastifyInstance;
let base: string;
let A: string; // the stack's tenant: owns the connections "warehouse" (Postgres) and "mart" (MySQL)
const B = `other-${randomUUID().slice(0, 6)}`;
const key: Record<string, string> = {};
let bFile: string; // a file of B's dataset, as a path on this machine
const table = `q_${randomUUID().slice(0, 8).replace(/-/g, '')}`;

async function seed(tenant: string, name: string, select: string) {
  const lake = forTenant(stack.lake!, tenant);
  const duck = await openDuck();
  try {
    const id = { layer: 'silver' as const, namespace: 'default', name };
    const producer = { tenant, runId: `seed-${randomUUID()}`, pipelineId: 'seed', taskId: 'seed' };
    const w = await writeVersion(lake, { conn: duck.conn, id, producer, select, attemptTag: randomUUID(), inputs: [] });
    const [v] = await commitVersions(lake, producer, [{ ...w, inputs: [] }]);
    return v;
  } finally {
    await duck.close();
  }
}

async function q(k: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const r = await fetch(`${base}/api/v1/queries`, {
    method: 'POST',
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return readAnswer(r);
}
async function get(k: string, url: string, headers: Record<string, string> = {}) {
  return readAnswer(await fetch(base + url, { headers: { authorization: `Bearer ${k}`, ...headers } }));
}
const post = async (k: string, url: string) => {
  const r = await fetch(base + url, { method: 'POST', headers: { authorization: `Bearer ${k}` } });
  return { status: r.status, json: await r.json() };
};
const audit = async (id: string) =>
  (await stack.db.query<any>('SELECT * FROM query_audit WHERE statement_id = $1', [id])).rows[0];

beforeAll(async () => {
  stack = await testStack('queries', { lake: 'file' });
  A = stack.tenant;
  ({ app, base } = await stackApi(stack, { queries: { chunkBytes: 4096, resultBytes: 1024 * 1024 } }));
  for (const t of [A, B]) key[t] = (await createKey(stack.db, t, 'viewer')).secret;
  await seed(A, 'orders', 'SELECT * FROM (VALUES (1, 10.0::DOUBLE), (2, 20.0::DOUBLE)) t(id, amount)');
  await seed(
    A,
    'orders',
    'SELECT * FROM (VALUES (1, 10.0::DOUBLE), (2, 20.0::DOUBLE), (3, 30.0::DOUBLE)) t(id, amount)',
  );
  const secret = await seed(B, 'secret', "SELECT 'globex-only' AS s");
  bFile = forTenant(stack.lake!, B).store.localPath(secret.files[0])!;
  const c = new pg.Client({ connectionString: inject('databases').postgresUrl });
  await c.connect();
  await c.query(
    `CREATE TABLE ${table} (id int PRIMARY KEY, name text); INSERT INTO ${table} VALUES (1, 'a'), (2, 'b'); CREATE SEQUENCE ${table}_seq`,
  );
  await c.end();
  const m = await mysql.createConnection({ uri: inject('databases').mysqlUrl });
  await m.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name varchar(10))`);
  await m.query(`INSERT INTO ${table} VALUES (1, 'a'), (2, 'b')`);
  await m.end();
}, 120_000);
afterAll(async () => {
  await app?.close();
  await stack?.close();
});

describe('answers with rows', () => {
  it("reads the tenant's datasets, any version, inline, and audits who ran what", async () => {
    const r = await q(key[A], { sql: 'SELECT count(*) AS n, sum(amount) AS total FROM silver.orders' });
    expect(r.status, r.text).toBe(200);
    expect(r.json).toMatchObject({
      status: 'succeeded',
      engine: 'duckdb',
      manifest: { totalRowCount: 1, totalChunkCount: 1, truncated: false },
      result: { chunkIndex: 0, rowCount: 1 },
    });
    expect(r.json.manifest.columns.map((c: any) => c.name)).toEqual(['n', 'total']);
    expect(r.json.result.data).toEqual([[3, 60]]);
    const v1 = await q(key[A], { sql: 'SELECT id FROM silver.orders@1 ORDER BY id' });
    expect(v1.json.result.data).toEqual([[1], [2]]);
    const row = await audit(r.json.statementId);
    expect(row).toMatchObject({
      tenant: A,
      engine: 'duckdb',
      status: 'succeeded',
      sql_text: 'SELECT count(*) AS n, sum(amount) AS total FROM silver.orders',
    });
    expect(Number(row.row_count)).toBe(1);
    expect(row.key_id).toMatch(/^key_/);
    expect(row.sql_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(row.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('takes params only through | literal and | ident, quoted', async () => {
    const r = await q(key[A], {
      sql: 'SELECT id FROM silver.orders WHERE amount > {{ params.min | literal }} ORDER BY id',
      params: { min: 15 },
    });
    expect(r.json.result.data).toEqual([[2], [3]]);
    const inj = await q(key[A], {
      sql: 'SELECT count(*) FROM silver.orders WHERE CAST(id AS VARCHAR) = {{ params.x | literal }}',
      params: { x: "1' OR '1'='1" },
    });
    expect(inj.json.result.data).toEqual([[0]]);
    const raw = await q(key[A], { sql: 'SELECT {{ params.x }}', params: { x: 1 } });
    expect(raw.status).toBe(400);
    expect(raw.json.error).toMatch(/write \{\{ params\.x \| literal \}\}/);
  });

  it('answers CSV by Accept, and large results in chunks fetched in parallel', async () => {
    const csv = await q(key[A], { sql: 'SELECT id, amount FROM silver.orders ORDER BY id' }, { accept: 'text/csv' });
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
    expect(csv.text).toBe('id,amount\r\n1,10\r\n2,20\r\n3,30\r\n');
    const big = await q(key[A], { sql: 'SELECT range AS i FROM range(3000) ORDER BY i' });
    const m = big.json.manifest;
    expect(m.totalRowCount).toBe(3000);
    expect(m.totalChunkCount).toBeGreaterThan(2);
    expect(big.json.result.nextChunkLink).toBe(`/api/v1/queries/${big.json.statementId}/result/chunks/1`);
    const rest = await Promise.all(
      m.chunks
        .slice(1)
        .map((c: any) => get(key[A], `/api/v1/queries/${big.json.statementId}/result/chunks/${c.chunkIndex}`)),
    );
    const all = [...big.json.result.data, ...rest.flatMap((r) => r.json.data)].map((r: any) => r[0]);
    expect(all).toEqual(Array.from({ length: 3000 }, (_, i) => i));
    expect(rest[0].json.rowOffset).toBe(m.chunks[1].rowOffset);
    expect(
      (await get(key[A], `/api/v1/queries/${big.json.statementId}/result/chunks/${m.totalChunkCount}`)).status,
    ).toBe(404);
  });

  it('answers Arrow IPC by Accept: typed columns a standard Arrow reader decodes, one stream per chunk', async () => {
    const sql =
      "SELECT id, amount, id::BIGINT * 3000000000 AS big, id > 1 AS later, DATE '2026-01-02' + id::INT AS day, " +
      '\'é,"x"\' AS note, 12345678901234567890.5::DECIMAL(38,1) AS exact FROM silver.orders ORDER BY id';
    const r = await fetch(`${base}/api/v1/queries`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key[A]}`,
        'content-type': 'application/json',
        accept: 'application/vnd.apache.arrow.stream',
      },
      body: JSON.stringify({ sql }),
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/application\/vnd\.apache\.arrow\.stream/);
    const table = tableFromIPC(new Uint8Array(await r.arrayBuffer()));
    expect(table.schema.fields.map((f) => [f.name, String(f.type)])).toEqual([
      ['id', 'Int32'],
      ['amount', 'Float64'],
      ['big', 'Int64'],
      ['later', 'Bool'],
      ['day', 'Date32<DAY>'],
      ['note', 'Utf8'],
      ['exact', 'Utf8'],
    ]);
    const rows = table.toArray().map((row) => row.toJSON());
    expect(rows.map((x) => [x.id, x.amount, x.big, x.later, x.note, x.exact])).toEqual([
      [1, 10, 3000000000n, false, 'é,"x"', '12345678901234567890.5'],
      [2, 20, 6000000000n, true, 'é,"x"', '12345678901234567890.5'],
      [3, 30, 9000000000n, true, 'é,"x"', '12345678901234567890.5'],
    ]);
    expect(new Date(Number(rows[0].day)).toISOString().slice(0, 10)).toBe('2026-01-03');
    // The JSON answer keeps the wide decimal exact too (a double would round it).
    const asJson = await q(key[A], { sql });
    expect(asJson.json.result.data[0][6]).toBe('12345678901234567890.5');
    // A later chunk decodes on its own (its own schema), and the rows are the JSON chunks' rows.
    const big = await q(key[A], { sql: 'SELECT range AS i FROM range(3000) ORDER BY i' });
    const c1 = await fetch(`${base}/api/v1/queries/${big.json.statementId}/result/chunks/1`, {
      headers: { authorization: `Bearer ${key[A]}`, accept: 'application/vnd.apache.arrow.stream' },
    });
    const json1 = await get(key[A], `/api/v1/queries/${big.json.statementId}/result/chunks/1`);
    const arrow1 = tableFromIPC(new Uint8Array(await c1.arrayBuffer()));
    expect(arrow1.toArray().map((row) => Number(row.toJSON().i))).toEqual(json1.json.data.map((x: number[]) => x[0]));
  });

  it("reads the tenant's Postgres and MySQL connections", async () => {
    const p = await q(key[A], { sql: `SELECT id, name FROM ${table} ORDER BY id`, connection: 'warehouse' });
    expect(p.json, p.text).toMatchObject({ status: 'succeeded', engine: 'postgres', connection: 'warehouse' });
    expect(p.json.result.data).toEqual([
      [1, 'a'],
      [2, 'b'],
    ]);
    const m = await q(key[A], {
      sql: `SELECT id, name FROM ${table} WHERE name = {{ params.n | literal }}`,
      connection: 'mart',
      params: { n: 'b' },
    });
    expect(m.json, m.text).toMatchObject({ status: 'succeeded', engine: 'mysql' });
    expect(m.json.result.data).toEqual([[2, 'b']]);
  });

  it('answers a slow statement with an id to poll, and cancels one', async () => {
    const slow = await q(key[A], { sql: 'SELECT pg_sleep(1.5), 42 AS answer', connection: 'warehouse', wait: 0 });
    expect(slow.status).toBe(202);
    expect(slow.json).toMatchObject({ status: 'running' });
    expect(slow.json.result).toBeUndefined();
    let st: any;
    await waitFor(
      async () => (st = (await get(key[A], `/api/v1/queries/${slow.json.statementId}`)).json).status !== 'running',
      20_000,
    );
    expect(st.status).toBe('succeeded');
    expect(st.result.data[0][1]).toBe(42);

    const long = await q(key[A], {
      sql: 'SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b',
      wait: 0,
    });
    expect(long.status).toBe(202);
    const t0 = Date.now();
    const c = await post(key[A], `/api/v1/queries/${long.json.statementId}/cancel`);
    expect(c.json.status).toBe('canceled');
    expect(Date.now() - t0).toBeLessThan(5000);
    expect((await audit(long.json.statementId)).status).toBe('canceled');
    const pgLong = await q(key[A], { sql: 'SELECT pg_sleep(60)', connection: 'warehouse', wait: 0 });
    expect((await post(key[A], `/api/v1/queries/${pgLong.json.statementId}/cancel`)).json.status).toBe('canceled');
  });

  it('returns the same statement for the same request id', async () => {
    const rid = randomUUID();
    const a = await q(key[A], { sql: 'SELECT 1 AS one' }, { 'idempotency-key': rid });
    const b = await q(key[A], { sql: 'SELECT 1 AS one' }, { 'idempotency-key': rid });
    expect(b.json.statementId).toBe(a.json.statementId);
    const c = await q(key[A], { sql: 'SELECT 1 AS one', requestId: rid });
    expect(c.json.statementId).toBe(a.json.statementId);
    const d = await q(key[A], { sql: 'SELECT 2 AS two' }, { 'idempotency-key': rid });
    expect(d.status).toBe(409);
    expect(d.json.error).toMatch(/used for a different statement/);
    // Another tenant's request id of the same text is its own.
    const e = await q(key[B], { sql: 'SELECT 1 AS one' }, { 'idempotency-key': rid });
    expect(e.json.statementId).not.toBe(a.json.statementId);
    expect((await stack.db.query('SELECT 1 FROM query_audit WHERE request_id = $1', [rid])).rowCount).toBe(2);
  });
});

describe('limits', () => {
  it('refuses more rows than the limit unless asked to truncate', async () => {
    const over = await q(key[A], { sql: 'SELECT * FROM range(100001)' });
    expect(over.json.status).toBe('failed');
    expect(over.json.error.message).toMatch(/more than 100,000 rows.*add a LIMIT.*rowLimit/);
    const cut = await q(key[A], { sql: 'SELECT * FROM range(100001)', rowLimit: 5 });
    expect(cut.json.manifest).toMatchObject({ totalRowCount: 5, truncated: true });
  });

  it('refuses a result over the byte limit, and stops a statement at its time limit', async () => {
    const big = await q(key[A], { sql: "SELECT repeat('x', 1000) FROM range(2000)" });
    expect(big.json.status).toBe('failed');
    expect(big.json.error.message).toMatch(/over the limit of 1 MiB: select fewer columns or rows/);
    const slow = await q(key[A], {
      sql: 'SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b',
      timeout: 1,
    });
    expect(slow.json.status).toBe('failed');
    expect(slow.json.error.message).toMatch(/ran longer than its limit of 1 s/);
    expect((await audit(slow.json.statementId)).status).toBe('failed');
    const wait = await q(key[A], { sql: 'SELECT 1', wait: 51 });
    expect(wait.status).toBe(400);
    expect(wait.json.error).toMatch(/wait.*at most 50 seconds/);
  });
});

describe('tenant isolation', () => {
  it("answers another tenant's statement id like an unknown one", async () => {
    const a = await q(key[A], { sql: 'SELECT 7' });
    const id = a.json.statementId;
    for (const url of [`/api/v1/queries/${id}`, `/api/v1/queries/${id}/result/chunks/0`]) {
      const r = await get(key[B], url);
      expect(r.status, url).toBe(404);
      expect(r.json.error).toBe(`no statement ${id}`);
    }
    expect((await post(key[B], `/api/v1/queries/${id}/cancel`)).status).toBe(404);
    expect((await get(key[B], `/api/v1/queries/q_${randomUUID()}`)).json.error).toMatch(/^no statement/);
    expect((await get(key[A], `/api/v1/queries/${id}`)).json.result.data).toEqual([[7]]);
    expect((await fetch(`${base}/api/v1/queries/${id}`)).status).toBe(401);
  });

  it("does not resolve another tenant's dataset, nor read any file path", async () => {
    const other = await q(key[A], { sql: 'SELECT * FROM silver.secret' });
    expect(other.status).toBe(404);
    expect(other.json.error).toMatch(/silver\.(default\.)?secret/);
    expect((await q(key[B], { sql: 'SELECT * FROM silver.secret' })).json.result.data).toEqual([['globex-only']]);
    for (const sql of [
      `SELECT * FROM read_parquet('${bFile}')`,
      `SELECT o.id, s.* FROM silver.orders o, read_parquet('${bFile}') s`,
      "SELECT * FROM read_text('/etc/passwd')",
      "SELECT * FROM 'package.json'",
      "SELECT * FROM glob('/**')",
    ]) {
      const r = await q(key[A], { sql });
      expect(r.status, sql).toBe(400);
      expect(r.json.error, sql).toMatch(/Permission Error|Catalog Error|does not exist/);
      expect(r.text).not.toContain('globex-only');
    }
    const refused = (
      await stack.db.query<any>("SELECT count(*)::int AS n FROM query_audit WHERE tenant = $1 AND status = 'refused'", [
        A,
      ])
    ).rows[0].n;
    expect(refused).toBeGreaterThanOrEqual(6);
  });

  it("refuses another tenant's connection", async () => {
    const r = await q(key[B], { sql: `SELECT * FROM ${table}`, connection: 'warehouse' });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatch(/unknown connection "warehouse" for tenant/);
    expect(r.text).not.toContain(inject('databases').postgresUrl);
  });

  it('refuses writes on every engine and changes nothing', async () => {
    for (const sql of [
      'CREATE TABLE x AS SELECT 1',
      "COPY (SELECT 1) TO '/tmp/strata-q.csv'",
      'INSERT INTO silver.orders VALUES (9, 9)',
      'SELECT 1; SELECT 2',
      "ATTACH '/tmp/x.db'",
      'SET threads = 64',
      'INSTALL httpfs',
    ]) {
      const r = await q(key[A], { sql });
      expect(r.status, sql).toBe(400);
      expect(r.json.error, sql).toMatch(/read-only|one statement|Permission|Parser|Catalog|Binder|Not implemented/);
    }
    for (const sql of [
      `DELETE FROM ${table}`,
      `UPDATE ${table} SET name = 'x'`,
      'COMMIT',
      `DROP TABLE ${table}`,
      `SET TRANSACTION READ WRITE`,
    ]) {
      const r = await q(key[A], { sql, connection: 'warehouse' });
      expect(r.status, sql).toBe(400);
      expect(r.json.error).toMatch(/queries are read-only/);
    }
    for (const sql of [
      `SELECT 1; DELETE FROM ${table}`,
      `WITH d AS (DELETE FROM ${table} RETURNING *) SELECT * FROM d`,
      `SELECT nextval('${table}_seq')`,
    ]) {
      const r = await q(key[A], { sql, connection: 'warehouse' });
      expect(r.json?.status, sql).toBe('failed');
    }
    for (const sql of [
      `DROP TABLE ${table}`,
      `DELETE FROM ${table}`,
      `SELECT * FROM ${table} INTO OUTFILE '/tmp/strata-q-out'`,
      'COMMIT',
    ]) {
      const r = await q(key[A], { sql, connection: 'mart' });
      expect(r.status, sql).toBe(400);
      expect(r.json.error).toMatch(/queries are read-only/);
    }
    const multi = await q(key[A], { sql: `SELECT 1; DELETE FROM ${table}`, connection: 'mart' });
    expect(multi.json.status).toBe('failed');
    const locked = await q(key[A], {
      sql: `WITH x AS (SELECT 1) SELECT * FROM ${table} FOR UPDATE`,
      connection: 'mart',
    });
    expect(['succeeded', 'failed']).toContain(locked.json.status);
    expect(
      (await q(key[A], { sql: `SELECT count(*) FROM ${table}`, connection: 'warehouse' })).json.result.data,
    ).toEqual([[2]]);
    expect((await q(key[A], { sql: `SELECT count(*) FROM ${table}`, connection: 'mart' })).json.result.data).toEqual([
      [2],
    ]);
    expect((await q(key[A], { sql: 'SELECT count(*) FROM silver.orders' })).json.result.data).toEqual([[3]]);
  });
});

describe('strata query', () => {
  it('prints a table, JSON or CSV from the API', async () => {
    const env = { STRATA_API_URL: base, STRATA_API_KEY: key[A] };
    const t = await runCli(['query', 'SELECT id, amount FROM silver.orders ORDER BY id'], env);
    expect(t.code, t.out).toBe(0);
    expect(t.out).toMatch(/id\s+amount\n1\s+10\n2\s+20\n3\s+30\n\(3 rows\)/);
    const c = await runCli(
      [
        'query',
        `SELECT name FROM ${table} WHERE id = {{ params.id | literal }}`,
        '--connection',
        'mart',
        '--param',
        'id=2',
        '--format',
        'csv',
      ],
      env,
    );
    expect(c.out).toContain('name\r\nb\r\n');
    const j = await runCli(['query', 'SELECT * FROM range(3000)', '--format', 'json'], env);
    expect(JSON.parse(j.out.slice(j.out.indexOf('{'))).rows).toHaveLength(3000);
    const bad = await runCli(['query', 'CREATE TABLE t AS SELECT 1'], env);
    expect(bad.code).toBe(2);
    expect(bad.out).toMatch(/strata: queries are read-only/);
  });
});
