/**
 * Reconciliation reaches any input, inside its tenant: the lake on S3 (MinIO) by path and
 * s3:// URI, catalog datasets by name and version, tables and queries on the tenant's
 * Postgres and MariaDB connections, another task's output in the run. Another tenant's
 * dataset, connection or path is refused with the answer an unknown one gets.
 */
import { parse } from 'csv-parse/sync';
import mysql from 'mysql2/promise';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { ReconciliationsService } from '../../client/reconciliations.js';
import { listReconciliations } from '../../store/reconciliations.js';
import { validateSpec } from '../../schemas/pipeline.js';
import { createKey } from '../../store/keys.js';
import { runCli } from '../harness/processes.js';
import { COLUMNS, generatePair, truthCounts, type Truth } from '../fakes/reconcile-data.js';
import { lakeQuery } from '../harness/duck.js';
import { stackApi } from '../harness/api.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let recs: ReconciliationsService;
let truth: Truth;
let rows: { left: string[][]; right: string[][] };
const other = 'intruder';
/** Test seam: runs after each compared partition (see ReconcileDeps.faults). */
let afterPartition: ((done: number) => void | Promise<void>) | undefined;
const table = (side: string) => `recon_${side}_${stack.tenant}`;

beforeAll(async () => {
  stack = await testStack('recon-inputs', {
    lake: 's3',
    reconcileFaults: { afterPartition: (n) => afterPartition?.(n) },
  });
  recs = new ReconciliationsService(stack.client, stack.taskQueue);
  const l = path.join(stack.tenantRoot, 'gen-l.csv');
  const r = path.join(stack.tenantRoot, 'gen-r.csv');
  truth = await generatePair(l, r, { rows: 2000, rate: 0.02, seed: 7, awkward: true });
  await stack.store!.putFile('landing/legacy.csv', l);
  await stack.store!.putFile('landing/migrated.csv', r);
  const leftRows: string[][] = parse(await readFile(l));
  const rightRows: string[][] = parse(await readFile(r));
  rows = { left: leftRows.slice(1), right: rightRows.slice(1) };
  // The same rows in Postgres (left) and MariaDB (right).
  const dbs = inject('databases');
  const p = new pg.Client({ connectionString: dbs.postgresUrl });
  await p.connect();
  const m = await mysql.createConnection({ uri: dbs.mysqlUrl });
  try {
    const cols = COLUMNS.map((c) => `${c} TEXT`).join(', ');
    await p.query(`CREATE TABLE ${table('l')} (${cols})`);
    await m.query(`CREATE TABLE ${table('r')} (${cols})`);
    for (let i = 0; i < rows.left.length; i += 500) {
      const chunk = rows.left.slice(i, i + 500);
      await p.query(
        `INSERT INTO ${table('l')} VALUES ${chunk.map((_, j) => `(${COLUMNS.map((__, k) => `$${j * COLUMNS.length + k + 1}`).join(',')})`).join(',')}`,
        chunk.flat(),
      );
    }
    for (let i = 0; i < rows.right.length; i += 500) {
      const chunk = rows.right.slice(i, i + 500);
      await m.query(`INSERT INTO ${table('r')} VALUES ?`, [chunk]);
    }
  } finally {
    await p.end();
    await m.end();
  }
}, 120_000);
afterAll(async () => stack?.close());

const counts = () => truthCounts(truth);

async function standalone(tenant: string, left: unknown, right: unknown, options: object = { key: ['id'] }) {
  const { id } = await recs.start(tenant, { left, right, options });
  let st = await recs.get(id);
  await waitFor(async () => (st = await recs.get(id)).status !== 'running', 120_000);
  return st;
}

const LANDING = `
  - id: land_left
    kind: ingest.file
    source: landing/legacy.csv
    format: csv
    columns: { id: string, name: string, city: string, amount: string, qty: string, status: string, note: string, ts: string }
    output: bronze.legacy
  - id: land_right
    kind: ingest.file
    source: landing/migrated.csv
    format: csv
    columns: { id: string, name: string, city: string, amount: string, qty: string, status: string, note: string, ts: string }
    output: bronze.migrated
`;

describe('reconcile inputs on the lake (MinIO), the catalog, and the tenant connections', () => {
  it('compares lake paths and s3:// URIs on S3, and other tasks’ outputs in a pipeline, exactly', async () => {
    const s3uri = stack.store!.uri('landing/migrated.csv');
    expect(s3uri).toMatch(/^s3:\/\//);
    const s = spec(`
id: recon_inputs
tasks:
${LANDING}
  - { id: by_path, kind: reconcile, left: landing/legacy.csv, right: "${s3uri}", key: [id] }
  - { id: by_task, kind: reconcile, needs: [land_left, land_right], left: { task: land_left }, right: { task: land_right }, key: [id], ignore: [_source_file, _line] }
`);
    const st = await stack.withWorker(() => stack.runToEnd(s));
    expect(st.status, JSON.stringify(st.tasks)).toBe('success');
    expect(st.tasks.by_path.output).toMatchObject({ counts: counts(), columnMismatches: truth.columnMismatches });
    expect(st.tasks.by_task.output).toMatchObject({
      counts: counts(),
      columnMismatches: truth.columnMismatches,
      inputs: {
        left: { input: 'task:land_left', dataset: 'bronze.legacy', version: 1 },
        right: { input: 'task:land_right', dataset: 'bronze.migrated', version: 1 },
      },
    });
  });

  it('compares catalog datasets by name and version, and a Postgres table against a MariaDB query', async () => {
    await stack.withWorker(async () => {
      // Ingestion adds where each row came from; that is not part of the comparison.
      const ignore = { key: ['id'], ignore: ['_source_file', '_line'] };
      const a = await standalone(stack.tenant, 'bronze.legacy@1', { dataset: 'bronze.migrated' }, ignore);
      expect(a.status, a.error).toBe('completed');
      expect(a.result).toMatchObject({ counts: counts(), inputs: { left: { dataset: 'bronze.legacy', version: 1 } } });

      const b = await standalone(
        stack.tenant,
        { connection: 'warehouse', table: table('l') },
        { connection: 'mart', query: `SELECT * FROM ${table('r')}` },
      );
      expect(b.status, b.error).toBe('completed');
      expect(b.result).toMatchObject({ counts: counts(), columnMismatches: truth.columnMismatches });

      // Mixed: a dataset against a table.
      const c = await standalone(stack.tenant, 'bronze.legacy', { connection: 'mart', table: table('r') }, ignore);
      expect(c.result).toMatchObject({ counts: counts() });
    });
  });

  it('refuses another tenant’s dataset, connection and objects with the answer an unknown one gets', async () => {
    await stack.withWorker(async () => {
      const err = async (tenant: string, left: unknown) =>
        (await standalone(tenant, left, 'bronze.legacy')).error ?? 'no error';
      // Datasets: the intruder's catalog has no bronze.legacy; its message is the unknown one's.
      const foreignDs = await err(other, 'bronze.legacy');
      const unknownDs = await err(stack.tenant, 'bronze.nothing_here');
      expect(foreignDs).toContain('bronze.legacy has no current version (tenant intruder)');
      expect(unknownDs).toContain('bronze.nothing_here has no current version');
      expect(foreignDs.replace('legacy', 'X')).toBe(
        unknownDs.replace('nothing_here', 'X').replace(stack.tenant, other),
      );
      // Connections: the stack's tenant owns warehouse; for the intruder it does not exist.
      const foreignConn = await err(other, { connection: 'warehouse', table: table('l') });
      const unknownConn = await err(other, { connection: 'nosuch', table: table('l') });
      expect(foreignConn).toMatch(/unknown connection "warehouse" for tenant intruder/);
      expect(foreignConn.replace('"warehouse"', '"X"').replace(/STRATA_CONN_WAREHOUSE/, 'STRATA_CONN_X')).toBe(
        unknownConn.replace('"nosuch"', '"X"').replace(/STRATA_CONN_NOSUCH/, 'STRATA_CONN_X'),
      );
      expect(foreignConn).not.toContain('postgres://');
      // Objects: the stack tenant's key by URI, and climbing out of the intruder's prefix.
      const uri = stack.store!.uri('landing/legacy.csv');
      expect(await err(other, uri)).toMatch(/is outside your lake/);
      expect(await err(other, `../${stack.tenant}/landing/legacy.csv`)).toMatch(/is outside your lake/);
      expect(await err(other, 'landing/legacy.csv')).toBe('dataset not found: landing/legacy.csv');
    });
  });

  it('reads connections read-only: writing statements are refused before they run and the table is unchanged', async () => {
    await stack.withWorker(async () => {
      const del = await standalone(
        stack.tenant,
        { connection: 'warehouse', query: `DELETE FROM ${table('l')}` },
        'x.csv',
      );
      expect(del.error).toMatch(/read-only/);
      // A comparison that failed for good leaves nothing of the tenant's on the worker's disk.
      const work = path.join(
        os.tmpdir(),
        'strata-reconcile',
        createHash('sha256').update(`${del.id}/reconcile`).digest('hex').slice(0, 16),
      );
      expect(existsSync(`${work}-in`) || existsSync(work)).toBe(false);
      const multi = await standalone(
        stack.tenant,
        { connection: 'warehouse', query: `SELECT 1; DELETE FROM ${table('l')}` },
        'bronze.legacy',
      );
      expect(multi.status).toBe('failed');
      const cte = await standalone(
        stack.tenant,
        { connection: 'warehouse', query: `WITH d AS (DELETE FROM ${table('l')} RETURNING *) SELECT * FROM d` },
        'bronze.legacy',
      );
      expect(cte.error).toMatch(/data-modifying|read-only/);
      const my = await standalone(
        stack.tenant,
        { connection: 'mart', query: `SELECT * FROM ${table('r')} INTO OUTFILE '/tmp/x'` },
        'bronze.legacy',
      );
      expect(my.error).toMatch(/read-only/);
    });
    const dbs = inject('databases');
    const p = new pg.Client({ connectionString: dbs.postgresUrl });
    await p.connect();
    try {
      expect(Number((await p.query(`SELECT count(*) AS n FROM ${table('l')}`)).rows[0].n)).toBe(rows.left.length);
    } finally {
      await p.end();
    }
  });

  it('writes the full lists of differences as a catalogued dataset the query engine reads, the same on every path', async () => {
    const l = path.join(stack.tenantRoot, 'dup-l.csv');
    const r = path.join(stack.tenantRoot, 'dup-r.csv');
    const t = await generatePair(l, r, { rows: 30_000, rate: 0.01, seed: 21, duplicates: true, awkward: true });
    await stack.store!.putFile('landing/dup-l.csv', l);
    await stack.store!.putFile('landing/dup-r.csv', r);
    const s = spec(`
id: recon_diffs
tasks:
  - { id: mem, kind: reconcile, left: landing/dup-l.csv, right: landing/dup-r.csv, key: [id], differences: silver.diffs_mem }
  - { id: duck, kind: reconcile, left: landing/dup-l.csv, right: landing/dup-r.csv, key: [id], differences: silver.diffs_duck, memoryLimitBytes: 100000 }
  - { id: part, kind: reconcile, left: landing/dup-l.csv, right: landing/dup-r.csv, key: [id], differences: silver.diffs_part, memoryLimitBytes: 100000, engine: stream }
  - { id: gate, kind: reconcile, left: landing/dup-l.csv, right: landing/dup-r.csv, key: [id], differences: silver.diffs_gate, failOnDifference: true }
`);
    const st = await stack.withWorker(() => stack.runToEnd(s));
    expect(st.tasks.duck.output?.method).toBe('duckdb');
    expect(st.tasks.part.output?.method).toBe('partitioned');
    // A failing gate still leaves its lists to look at.
    expect(st.tasks.gate.status).toBe('failed');
    const query = (sql: string) => lakeQuery(stack, sql);
    const changedCells = Object.values(t.columnMismatches).reduce((a, b) => a + b, 0);
    const lists: string[] = [];
    for (const task of ['mem', 'duck', 'part', 'gate']) {
      expect(st.tasks[task].status === 'success' || task === 'gate').toBe(true);
      const kinds = Object.fromEntries(
        (await query(`SELECT kind, count(*)::INTEGER FROM silver.diffs_${task} GROUP BY kind`)) as [string, number][],
      );
      expect(kinds, task).toEqual({
        changed: changedCells,
        only_left: t.onlyLeft,
        only_right: t.onlyRight,
        duplicate_left: t.duplicateKeysLeft,
        duplicate_right: t.duplicateKeysRight,
      });
      lists.push(JSON.stringify(await query(`SELECT * FROM silver.diffs_${task} ORDER BY ALL`)));
    }
    // The same lists whichever path compared.
    expect(new Set(lists).size).toBe(1);
    // A changed row names its column and both values; a one-sided row carries the whole row.
    const [changed] = (await query(
      `SELECT key, "column", left_value, right_value FROM silver.diffs_mem WHERE kind = 'changed' ORDER BY key LIMIT 1`,
    )) as string[][];
    const id = JSON.parse(changed[0]).id as string;
    expect(COLUMNS).toContain(changed[1]);
    expect(changed[2]).not.toBe(changed[3]);
    expect(id).toMatch(/^\d+$/);
    const [only] = (await query(`SELECT "row" FROM silver.diffs_mem WHERE kind = 'only_left' LIMIT 1`)) as string[][];
    expect(Object.keys(JSON.parse(only[0]))).toEqual(COLUMNS);
    expect(st.tasks.mem.output).toMatchObject({ differencesDataset: { dataset: 'silver.diffs_mem', version: 1 } });
  });

  it('runs a pipeline’s named reconciliations after the tasks they read, every run, with their policy, and lists them over time', async () => {
    const yaml = `
id: recon_mappings
tasks:
${LANDING}
reconciliations:
  - { name: orders_mig, left: { task: land_left }, right: { task: land_right }, key: [id], ignore: [_source_file, _line], policy: warn }
  - { name: orders_gate, left: bronze.legacy, right: bronze.migrated, key: [id], ignore: [_source_file, _line], policy: fail }
`;
    const s = spec(yaml);
    const gate = s.tasks.find((t) => t.id === 'reconcile-orders_gate')!;
    // A dataset another task of the pipeline writes: the mapping waits for that task.
    expect(gate.needs).toEqual(['land_left', 'land_right']);
    const runOnce = () => stack.withWorker(() => stack.runToEnd(s));
    const first = await runOnce();
    const diffs = truth.changed + truth.onlyLeft + truth.onlyRight;
    expect(first.tasks['reconcile-orders_mig']).toMatchObject({ status: 'success' });
    expect(first.tasks['reconcile-orders_mig'].output).toMatchObject({
      differences: diffs,
      warning: expect.stringMatching(/datasets differ/),
    });
    expect(first.tasks['reconcile-orders_gate']).toMatchObject({ status: 'failed', errorType: 'DatasetsDiffer' });
    expect(first.status).toBe('failed');
    // The migration is fixed: the next run finds nothing.
    await stack.store!.putFile('landing/migrated.csv', path.join(stack.tenantRoot, 'gen-l.csv'));
    const second = await runOnce();
    expect(second.status, JSON.stringify(second.tasks)).toBe('success');
    const listed = await listReconciliations(stack.db, stack.tenant, { mapping: 'orders_mig', limit: 10 });
    expect(listed.map((r) => [r.runId, r.differences, r.policy])).toEqual([
      [second.runId, 0, 'warn'],
      [first.runId, diffs, 'warn'],
    ]);
    expect(listed[0]).toMatchObject({ pipeline: 'recon_mappings', mapping: 'orders_mig', left: 'task:land_left' });
    // Another tenant sees none of them.
    expect(await listReconciliations(stack.db, other, { mapping: 'orders_mig', limit: 10 })).toEqual([]);
    // Through the API and the CLI.
    const { app, base } = await stackApi(stack);
    try {
      const mine = (await createKey(stack.db, stack.tenant, 'viewer')).secret;
      const theirs = (await createKey(stack.db, other, 'viewer')).secret;
      const get = async (q: string, k = mine) => {
        const r = await fetch(`${base}/api/v1/reconciliations${q}`, { headers: { authorization: `Bearer ${k}` } });
        return {
          status: r.status,
          body: (await r.json()) as { reconciliations?: { differences: number }[]; error?: string },
        };
      };
      const ok = await get('?mapping=orders_mig');
      expect(ok.status).toBe(200);
      expect(ok.body.reconciliations!.map((r) => r.differences)).toEqual([0, diffs]);
      expect((await get('?mapping=orders_mig', theirs)).body.reconciliations).toEqual([]);
      for (const [q, msg] of [
        ['?limit=0', /limit is 1 to 200/],
        ['?mapping=a%20b', /mapping is a mapping name/],
        ['?bogus=1', /bogus/],
      ] as const) {
        const r = await get(q);
        expect(r.status, q).toBe(400);
        expect(r.body.error).toMatch(msg);
      }
      const cli = await runCli(['reconciliations', 'orders_mig'], { STRATA_API_URL: base, STRATA_API_KEY: mine });
      expect(cli.code, cli.out).toBe(0);
      expect(cli.out).toContain('identical');
      expect(cli.out).toMatch(new RegExp(`trend \\(oldest → newest, 2 runs\\): .. +${diffs} 0 ↓`));
    } finally {
      await app.close();
    }
    // Mapping mistakes are reported with their path.
    const bad = validateSpec({
      id: 'bad_mappings',
      tasks: [{ id: 'a', kind: 'noop' }],
      reconciliations: [
        { name: 'm', left: { task: 'nope' }, right: 'x.csv', policy: 'shout' },
        { name: 'm', left: 'a.csv', right: { connection: 'w' } },
      ],
    });
    expect(bad.ok).toBe(false);
    const problems = !bad.ok ? bad.problems.map((p) => `${p.path}: ${p.message}`) : [];
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^reconciliations\[0\]\.policy: /),
        expect.stringMatching(/^reconciliations\[1\]\.name: duplicate mapping "m"/),
        expect.stringMatching(/^reconciliations\[1\]\.right: give exactly one of "table" or "query"/),
      ]),
    );
    const bad2 = validateSpec({
      id: 'bad2',
      tasks: [{ id: 'a', kind: 'noop' }],
      reconciliations: [{ name: 'm', left: { task: 'nope' }, right: 'x.csv' }],
    });
    expect(!bad2.ok && bad2.problems).toEqual([
      { path: 'reconciliations[0].left.task', message: 'no task "nope" in this pipeline: name one of its tasks' },
    ]);
  });

  it('a comparison resumed after a failure reads the table it extracted before, not the table as it is now', async () => {
    const dbs = inject('databases');
    const copy = `${table('l')}_copy`;
    const p = new pg.Client({ connectionString: dbs.postgresUrl });
    await p.connect();
    try {
      await p.query(`CREATE TABLE ${copy} AS SELECT * FROM ${table('l')}`);
      let failed = false;
      afterPartition = async (done) => {
        if (done !== 1 || failed) return;
        failed = true;
        // The table changes under the comparison, then the attempt dies.
        await p.query(`DELETE FROM ${copy}`);
        throw new Error('injected failure after the first compared partition');
      };
      const st = await stack.withWorker(() =>
        standalone(
          stack.tenant,
          { connection: 'warehouse', table: copy },
          { connection: 'mart', table: table('r') },
          // One partition at a time: with two, the other carried on while the table was emptied
          // and could finish every partition before the failure (seen under load).
          { key: ['id'], memoryLimitBytes: 10_000, partitions: 8, engine: 'stream', parallelism: 1 },
        ),
      );
      expect(failed).toBe(true);
      expect(st.status, st.error).toBe('completed');
      // Every row the table had when the comparison started (re-reading it would find none).
      expect(st.result).toMatchObject({ counts: counts() });
      const resumed = (st.result as { resumedFrom?: { compared: number } }).resumedFrom;
      expect(resumed?.compared).toBeGreaterThanOrEqual(1);
      expect(resumed?.compared).toBeLessThan(8);
    } finally {
      afterPartition = undefined;
      await p.query(`DROP TABLE IF EXISTS ${copy}`);
      await p.end();
    }
  });

  it('a pipeline reading a task it does not need is invalid, and {task} is refused outside a pipeline', async () => {
    expect(() =>
      spec(`
id: bad
tasks:
  - { id: a, kind: noop }
  - { id: c, kind: reconcile, left: { task: a }, right: x.csv }
`),
    ).toThrow(/add \\"a\\" to needs/);
    await expect(recs.start(stack.tenant, { left: { task: 'a' }, right: 'x.csv' })).rejects.toMatchObject({
      status: 400,
      message: expect.stringMatching(/exists only in a pipeline/),
    });
    await expect(
      recs.start(stack.tenant, { left: { connection: 'warehouse' }, right: { dataset: 'platinum.x' } }),
    ).rejects.toMatchObject({
      status: 400,
      message: expect.stringMatching(
        /left: give exactly one of "table" or "query".*right.dataset: a dataset is layer.name/s,
      ),
    });
  });
});
