/**
 * The data plane as a hostile tenant tries it: with nothing but its own keys, `globex`
 * tries to read the worker's files and secrets, write outside its attempt, and read,
 * overwrite or delete `acme`'s data, through every task kind that names a location or
 * runs SQL. Each attempt must fail with a reason, and leave every file and row as it was.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../harness/processes.js';
import { securityStack, type SecurityStack } from './stack.js';

let s: SecurityStack;
const noSecrets = (text: string) => {
  for (const secret of s.secrets) expect(text).not.toContain(secret);
};

beforeAll(async () => {
  s = await securityStack('dataplane');
  // acme's data: a landing file and a committed dataset.
  await s.putObject('acme/landing/orders.csv', 'id,amount\n1,10\n2,20\n');
  const r = await s.runPipeline('acme', {
    id: 'acme_orders',
    tasks: [
      {
        id: 'land',
        kind: 'ingest.file',
        source: 'landing/orders.csv',
        format: 'csv',
        columns: { id: 'int', amount: 'double' },
        output: 'bronze.orders',
      },
      {
        id: 'clean',
        kind: 'sql',
        needs: ['land'],
        layer: 'silver',
        output: 'silver.orders',
        sql: 'SELECT * FROM bronze.orders',
      },
    ],
  });
  if (r.run?.status !== 'success') throw new Error(`acme's setup run: ${JSON.stringify(r)}`);
}, 180_000);
afterAll(async () => s?.close());

/** Every object of acme's, with its bytes: what no attempt of globex's may change. */
async function acmeSnapshot(): Promise<Record<string, string | undefined>> {
  const keys = await s.listObjects('acme/');
  return Object.fromEntries(await Promise.all(keys.map(async (k) => [k, await s.getObject(k)] as const)));
}

async function transform(tenant: 'acme' | 'globex', body: Record<string, unknown>) {
  const r = await s.call('POST', '/api/v1/transform', s.keys[tenant].operator, body);
  expect(r.status, r.text).toBe(202);
  return s.waitRun(r.json.runId, s.keys[tenant].viewer);
}

describe('the lake is physically per tenant', () => {
  it("puts each tenant's objects under its own prefix", async () => {
    const all = await s.listObjects('');
    expect(all.length).toBeGreaterThan(2);
    expect(all.every((k) => k.startsWith('acme/'))).toBe(true);
    expect(all.some((k) => k.startsWith('acme/silver/default/orders/data/'))).toBe(true);
  });

  it("refuses globex listing, reading, overwriting or deleting acme's objects through s3.* tasks, and changes nothing", async () => {
    const before = await acmeSnapshot();
    const acmeFile = Object.keys(before).find((k) => k.includes('/silver/default/orders/data/'))!;
    const r = await s.runPipeline('globex', {
      id: 'raid',
      tasks: [
        { id: 'list', kind: 's3.list', prefix: `${s.lakeRoot}/acme/` },
        { id: 'copy_out', kind: 's3.copy', from: `${s.lakeRoot}/${acmeFile}`, to: 'loot/orders.parquet' },
        { id: 'overwrite', kind: 's3.copy', from: 'loot/nothing.csv', to: `${s.lakeRoot}/${acmeFile}` },
        { id: 'delete', kind: 's3.delete', path: `${s.lakeRoot}/acme/`, recursive: true },
        { id: 'delete_bucket', kind: 's3.delete', path: `s3://${s.bucket}/`, recursive: true },
        {
          id: 'sense',
          kind: 's3.wait',
          path: `${s.lakeRoot}/acme/landing/orders.csv`,
          waitTimeout: '1s',
          pollInterval: '100ms',
        },
        { id: 'worker_files', kind: 's3.copy', from: 'file:///etc/passwd', to: 'loot/passwd' },
      ],
    });
    expect(r.status).toBe(202);
    for (const t of ['list', 'copy_out', 'overwrite', 'delete', 'delete_bucket', 'sense', 'worker_files']) {
      expect(r.run.tasks[t], t).toMatchObject({ status: 'failed', errorType: 'LocationError', attempts: 1 });
      expect(r.run.tasks[t].error).toMatch(/is outside your lake \(s3:\/\/[^)]+\/globex\)/);
    }
    expect(await acmeSnapshot()).toEqual(before);
    expect(await s.listObjects('globex/loot/')).toEqual([]);
  });

  it('refuses ".." at registration with the field and the fix, and stores nothing', async () => {
    const r = await s.call('POST', '/api/v1/pipelines', s.keys.globex.admin, {
      id: 'climb',
      tasks: [{ id: 'c', kind: 's3.copy', from: '../acme/landing/orders.csv', to: 'x.csv' }],
    });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.json)).toMatch(/tasks\[0\]\.from.*climbs out with \\"\.\.\\"/);
    expect((await s.call('GET', '/api/v1/pipelines/climb', s.keys.globex.viewer)).status).toBe(404);
  });

  it("vacuum of globex's dataset of the same name leaves acme's files alone", async () => {
    const r = await s.runPipeline('globex', {
      id: 'same_name',
      tasks: [{ id: 'o', kind: 'sql', layer: 'silver', output: 'silver.orders', sql: 'SELECT 1 AS id' }],
    });
    expect(r.run.status).toBe('success');
    const before = await acmeSnapshot();
    const cli = await runCli(['datasets', 'vacuum', '--older-than', '0', '--tenant', 'globex'], s.env);
    expect(cli.code, cli.out).toBe(0);
    expect(await acmeSnapshot()).toEqual(before);
    const preview = await s.call('GET', '/api/v1/datasets/silver.orders/preview', s.keys.acme.viewer);
    expect(preview.status, preview.text).toBe(200);
    expect(preview.json.rows).toHaveLength(2);
  });
});

describe('DuckDB SQL runs in a sandbox', () => {
  it("cannot read the worker's files: system files, the admin key, the Temporal database, the environment", async () => {
    for (const sql of [
      "SELECT * FROM read_text('/etc/passwd')",
      `SELECT * FROM read_text('${path.join(s.dataDir, 'admin-key')}')`,
      "SELECT * FROM read_text('/proc/self/environ')",
      "SELECT * FROM read_csv('../../../../../../etc/passwd')",
      "SELECT * FROM glob('/**')",
      "SELECT * FROM 'file:///etc/hostname'",
    ]) {
      const run = await transform('globex', { sql });
      expect(run.status, sql).toBe('failed');
      expect(run.tasks.transform.errorType, sql).toBe('SqlError');
      expect(run.tasks.transform.error, sql).toMatch(
        /Permission Error: Cannot access file|Catalog Error: Table with name file:\/\/\/etc\/hostname does not exist/,
      );
      expect(run.tasks.transform.attempts, sql).toBe(1);
      noSecrets(JSON.stringify(run));
    }
    // A relative path means the tenant's own folder, never the worker's working folder.
    const rel = await transform('globex', { sql: "SELECT * FROM read_text('package.json')" });
    expect(rel.tasks.transform.output).toEqual({ rowCount: 0 });
  });

  it('cannot write files, attach databases, load extensions or lift its own limits', async () => {
    const target = path.join(s.dataDir, 'pwned.csv');
    const cases: [string, RegExp][] = [
      [`COPY (SELECT 1) TO '${target}'`, /statement 1 is a COPY|Permission Error/],
      ["COPY (SELECT 1) TO 'own.csv'", /statement 1 is a COPY|Permission Error/],
      [`ATTACH '${path.join(s.dataDir, 'evil.duckdb')}' AS x`, /statement 1 is a ATTACH/],
      ['INSTALL httpfs', /statement 1 is a (LOAD|INSTALL)|Permission/],
      ['LOAD httpfs', /statement 1 is a LOAD|Permission/],
      ['SET enable_external_access = true', /statement 1 is a (SET|VARIABLE_SET)|locked/],
      ['SELECT 1; RESET lock_configuration', /statement 2 is a (SET|VARIABLE_SET)|locked/],
      [`EXPORT DATABASE '${path.join(s.dataDir, 'exp')}'`, /statement 1 is a EXPORT|Permission Error/],
    ];
    for (const [sql, why] of cases) {
      const run = await transform('globex', { sql });
      expect(run.status, sql).toBe('failed');
      expect(run.tasks.transform.error, sql).toMatch(why);
    }
    await expect(stat(target)).rejects.toThrow();
    expect((await readdir(s.dataDir)).filter((f) => /pwned|evil|exp/.test(f))).toEqual([]);
  });

  it("a dataset task reads only the versions it names: not another tenant's files by path, not its own by path", async () => {
    const acmeFile = (await s.listObjects('acme/silver/default/orders/data/'))[0];
    const r = await s.runPipeline('globex', {
      id: 'peek',
      tasks: [
        {
          id: 'by_uri',
          kind: 'sql',
          layer: 'silver',
          output: 'silver.peek',
          sql: `SELECT * FROM read_parquet('${s.lakeRoot}/${acmeFile}')`,
        },
        {
          id: 'by_path',
          kind: 'sql',
          layer: 'silver',
          output: 'silver.peek2',
          sql: `SELECT * FROM read_parquet('${acmeFile}')`,
        },
        {
          id: 'smuggle',
          kind: 'sql',
          layer: 'silver',
          output: 'silver.peek3',
          sql: "SELECT 1 AS x) TO '/tmp/strata-smuggled.csv' (FORMAT csv); SELECT (1",
        },
      ],
    });
    for (const t of ['by_uri', 'by_path', 'smuggle']) expect(r.run.tasks[t].status, t).toBe('failed');
    expect(r.run.tasks.by_uri.error).toMatch(/Permission Error|disabled/);
    await expect(stat('/tmp/strata-smuggled.csv')).rejects.toThrow();
    // And acme's own silver task still reads its bronze dataset by name, as before.
    const ok = await s.runPipeline('acme', {
      id: 'acme_gold',
      tasks: [
        {
          id: 'g',
          kind: 'sql',
          layer: 'gold',
          output: 'gold.total',
          sql: 'SELECT sum(amount) AS total FROM silver.orders',
        },
      ],
    });
    expect(ok.run.status).toBe('success');
    expect(ok.run.tasks.g.output.rowCount).toBe(1);
  });

  it('a check predicate cannot smuggle statements', async () => {
    const r = await s.runPipeline('globex', {
      id: 'checky',
      // Closes the check's query, runs a COPY, and reopens a query for the rest of the text.
      tasks: [
        {
          id: 'c',
          kind: 'sql',
          layer: 'silver',
          output: 'silver.checky',
          sql: 'SELECT 1 AS x',
          checks: [
            {
              expect:
                "true), false)) AS c0 FROM __out; COPY (SELECT 'owned' AS x) TO '/tmp/strata-check.csv'; SELECT count(*) AS n, count(*) FILTER (WHERE NOT coalesce((true",
            },
          ],
        },
      ],
    });
    expect(r.run.tasks.c.status).toBe('failed');
    expect(r.run.tasks.c.error).toMatch(
      /a check \(its "expect" predicate is an expression, not statements\) must be one SELECT statement, found 3/,
    );
    await expect(stat('/tmp/strata-check.csv')).rejects.toThrow();
  });
});

describe("reconciliation reads only the tenant's own files", () => {
  it("refuses absolute and file:// paths outside the tenant's folder, and shows none of their lines", async () => {
    for (const left of [
      '/proc/self/environ',
      'file:///proc/self/environ',
      '../../../../../../proc/self/environ',
      `file://${s.dataDir}/admin-key`,
    ]) {
      const r = await s.call('POST', '/api/v1/reconciliations', s.keys.globex.operator, {
        left,
        right: 'x.csv',
        options: { key: ['id'] },
      });
      expect(r.status, left).toBe(202);
      let st: any;
      for (let i = 0; i < 300; i++) {
        st = (await s.call('GET', `/api/v1/reconciliations/${encodeURIComponent(r.json.id)}`, s.keys.globex.viewer))
          .json;
        if (st.status !== 'running') break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(st.status, left).toBe('failed');
      expect(JSON.stringify(st), left).toMatch(/outside your lake folder/);
      expect(JSON.stringify(st)).not.toMatch(/PATH=|HOME=|AWS_|STRATA_[A-Z_]+=/);
      noSecrets(JSON.stringify(st));
    }
  });
});

describe('connections belong to tenants', () => {
  it("globex cannot use acme's connection, and is not told which connections exist", async () => {
    await s.pg.query(
      'CREATE TABLE IF NOT EXISTS sec_accounts (id int); TRUNCATE sec_accounts; INSERT INTO sec_accounts VALUES (1), (2)',
    );
    const run = await transform('globex', {
      sql: 'DELETE FROM sec_accounts',
      engine: 'postgres',
      connection: 'warehouse',
    });
    expect(run.status).toBe('failed');
    expect(run.tasks.transform.error).toBe(
      'unknown connection "warehouse" for tenant globex: this tenant has no connections, or ask the platform operator to add it (STRATA_CONN_WAREHOUSE and STRATA_CONN_…_TENANTS on the worker)',
    );
    expect((await s.pg.query('SELECT count(*)::int AS n FROM sec_accounts')).rows[0].n).toBe(2);
    // acme, its owner, may.
    const mine = await transform('acme', {
      sql: 'SELECT * FROM sec_accounts',
      engine: 'postgres',
      connection: 'warehouse',
    });
    expect(mine.status).toBe('success');
    expect(mine.tasks.transform.output.rowCount).toBe(2);
    noSecrets(JSON.stringify(run) + JSON.stringify(mine));
  });
});
