/**
 * Table maintenance on by default: compaction rewrites small files into a `replace`
 * snapshot with exactly the same rows; snapshot expiry keeps what branches, tags and pinned
 * versions need and makes time travel to what it removed a clear error; orphan removal
 * stays inside the table's own prefix and leaves young files alone; all of it as
 * `tableMaintenance` workflows (one per table, started by the sweep) and as task kinds.
 * An independent Iceberg reader (iceberg-go, through Strata's REST catalog) reads the
 * tables afterwards. And the migration: datasets written before Iceberg become tables and
 * snapshots with one command, nothing lost, a second run changing nothing.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import type { FastifyInstance } from 'fastify';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { auditOutputs, issueCatalogAccess } from '../../activities/iceberg/audit.js';
import type { TableMetadata } from '../../activities/iceberg/metadata.js';
import { removeOrphans, type MaintenanceDeps } from '../../activities/iceberg/maintenance.js';
import { keyOf } from '../../activities/iceberg/writer.js';
import { forTenant } from '../../activities/lake/open.js';
import { DatasetsService } from '../../client/datasets.js';
import { ensureMaintenanceSchedule, maintainTableNow } from '../../client/table-maintenance.js';
import { parseJson, stringifyJson } from '../../schemas/json64.js';
import type { RunContext, RunState } from '../../schemas/run.js';
import { AuditStore } from '../../store/iceberg-audit.js';
import { Catalog } from '../../store/catalog.js';
import { IcebergStore } from '../../store/iceberg.js';
import { createKey } from '../../store/keys.js';
import { registerPipeline } from '../../store/pipelines.js';
import { stackApi } from '../harness/api.js';
import { canon, datasetRows } from '../harness/duck.js';
import { jsonLines, readStackIceberg } from '../harness/iceberg-reader.js';
import { runCli } from '../harness/processes.js';
import { spec } from '../harness/specs.js';
import { lakeEnv, testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let app: FastifyInstance;
let uri: string;
let key: string;
let pgc: pg.Client;
let deps: MaintenanceDeps;

beforeAll(async () => {
  // Orphan removal's safety floor is the worker's (1 h by default); these workers take the tables' own ages.
  stack = await testStack('iceberg-maint', { lake: 's3', orphanFloorMs: 0 });
  let base: string;
  ({ app, base } = await stackApi(stack));
  uri = `${base}/iceberg`;
  key = (await createKey(stack.db, stack.tenant, 'operator', 'maint')).secret;
  pgc = new pg.Client({ connectionString: stack.connections.warehouse.url });
  await pgc.connect();
  const scoped = forTenant(stack.lake!, stack.tenant);
  deps = { db: stack.db, store: scoped.store, cacheDir: scoped.cacheDir };
}, 600_000);
afterAll(async () => {
  await pgc?.end();
  await app?.close();
  await stack?.close();
});

const run = (s: ReturnType<typeof spec>): Promise<RunState> => stack.withWorker(() => stack.runToEnd(s));

const maintain = (
  namespace: string[],
  name: string,
  operations?: ('compact' | 'expire_snapshots' | 'remove_orphans')[],
) =>
  stack.withWorker(() =>
    maintainTableNow(stack.client, {
      taskQueue: stack.taskQueue,
      input: { tenant: stack.tenant, namespace, name, operations },
    }),
  );

const scan = async (table: string, snapshot?: number | string) =>
  jsonLines(
    (
      await readStackIceberg(stack, uri, key, [
        'scan',
        '-table',
        table,
        ...(snapshot === undefined ? [] : ['-snapshot', String(snapshot)]),
      ])
    ).stdout,
  );

/** A dataset version's rows, read by DuckDB straight from the files the catalog names. */
const versionRows = (layer: 'bronze' | 'silver', name: string, version: number) =>
  datasetRows(stack, { layer, name }, version);

async function tableMeta(ns: string[], name: string): Promise<{ meta: TableMetadata; location: string }> {
  const row = await new IcebergStore(stack.db).table(stack.tenant, ns, name);
  expect(row, `${ns.join('.')}.${name} is a table`).toBeDefined();
  return { meta: row!.metadata as unknown as TableMetadata, location: row!.metadataLocation };
}

const catalogApi = (method: string, p: string, body?: unknown) =>
  app
    .inject({
      method: method as 'POST',
      url: `/iceberg/v1/${stack.tenant}${p}`,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      payload: body ? stringifyJson(body) : undefined,
    })
    .then((r) => Object.assign(r, { json: () => parseJson<any>(r.body) }));

describe('compaction', () => {
  it('rewrites the small files of an incremental table into one file: a replace snapshot and a new version with exactly the same rows', async () => {
    const table = `events_${stack.tenant}`;
    await pgc.query(`DROP TABLE IF EXISTS ${table}`);
    await pgc.query(`CREATE TABLE ${table} (id int primary key, kind text, amount numeric(10,2))`);
    const ingest = spec(`
id: maint_ingest
tasks:
  - id: events
    kind: ingest.table
    connection: warehouse
    table: ${table}
    mode: incremental
    cursor: id
    output: bronze.events
`);
    // Six increments: six small files in the current snapshot.
    for (let b = 0; b < 6; b++) {
      const vals = Array.from({ length: 5 }, (_, i) => {
        const id = b * 5 + i + 1;
        return `(${id}, '${id % 2 ? 'odd' : 'even'}', ${id}.25)`;
      });
      await pgc.query(`INSERT INTO ${table} VALUES ${vals.join(',')}`);
      expect((await run(ingest)).status).toBe('success');
    }
    const before = await stack.lake!.catalog.current(stack.tenant, {
      layer: 'bronze',
      namespace: 'default',
      name: 'events',
    });
    expect(before).toMatchObject({ version: 6, rowCount: 30 });
    expect(before!.files).toHaveLength(6);
    const rowsBefore = await scan('bronze.events');
    expect(rowsBefore).toHaveLength(30);

    // An identical schema is found again, whatever order its keys come back from the metastore in: one schema.
    expect((await tableMeta(['bronze'], 'events')).meta.schemas).toHaveLength(1);
    const r = await maintain(['bronze'], 'events', ['compact']);
    expect(r.results.compact, JSON.stringify(r.results.compact)).toMatchObject({
      rewritten: 6,
      written: 1,
      rows: 30,
      version: 7,
    });

    // The dataset: version 7, one file, the same rows; its producer is the maintenance run.
    const after = await stack.lake!.catalog.current(stack.tenant, {
      layer: 'bronze',
      namespace: 'default',
      name: 'events',
    });
    expect(after).toMatchObject({ version: 7, rowCount: 30, pipelineId: 'strata:maintenance', taskId: 'compact' });
    expect(after!.runId).toMatch(new RegExp(`^maintenance/${stack.tenant}/bronze/events@`));
    expect(after!.files).toHaveLength(1);
    expect(canon(await versionRows('bronze', 'events', 7))).toEqual(canon(await versionRows('bronze', 'events', 6)));

    // The Iceberg table: a replace snapshot on main whose parent is 6; iceberg-go reads the same rows, and still reads 6.
    const { meta } = await tableMeta(['bronze'], 'events');
    const snap = meta.snapshots.find((s) => s['snapshot-id'] === meta['current-snapshot-id'])!;
    expect(snap.summary).toMatchObject({
      operation: 'replace',
      'added-data-files': '1',
      'deleted-data-files': '6',
      'total-records': '30',
      'total-data-files': '1',
      'strata.version': '7',
    });
    expect(snap['parent-snapshot-id']).toBe(6);
    expect(canon(await scan('bronze.events'))).toEqual(canon(rowsBefore));
    expect(canon(await scan('bronze.events', 6))).toEqual(canon(rowsBefore));

    // Strata's own SQL reads the compacted version, and a further increment appends to it.
    await pgc.query(`INSERT INTO ${table} VALUES (31, 'odd', 31.25)`);
    expect((await run(ingest)).status).toBe('success');
    expect(
      await stack.lake!.catalog.current(stack.tenant, { layer: 'bronze', namespace: 'default', name: 'events' }),
    ).toMatchObject({
      version: 8,
      rowCount: 31,
    });
    expect(await scan('bronze.events')).toHaveLength(31);

    // Run again: two files are fewer than the policy's five: nothing to do.
    const again = await maintain(['bronze'], 'events', ['compact']);
    expect(again.results.compact).toMatchObject({
      rewritten: 0,
      skipped: expect.stringMatching(/fewer than 5 small files/),
    });
  });
});

describe('snapshot expiry', () => {
  it("expires by the table's policy but keeps the current version, a tag, an audit branch and a version a pipeline pins; time travel to an expired one says so", async () => {
    const orders = (n: number) =>
      spec(`
id: maint_orders
tasks:
  - id: orders
    kind: sql
    layer: silver
    sql: SELECT i::BIGINT AS id, ${n} AS batch FROM range(1, ${n + 2}) t(i)
    output: silver.orders
`);
    for (let n = 1; n <= 5; n++) expect((await run(orders(n))).status).toBe('success');
    const id = { layer: 'silver' as const, namespace: 'default', name: 'orders' };
    const v1 = await stack.lake!.catalog.version(stack.tenant, id, 1);
    const v2 = await stack.lake!.catalog.version(stack.tenant, id, 2);

    // A tag on 2 and an audit branch on 4 (as write-audit-publish makes them), through the catalog.
    const refs = await catalogApi('POST', '/namespaces/silver/tables/orders', {
      requirements: [],
      updates: [
        { action: 'set-snapshot-ref', 'ref-name': 'keep', type: 'tag', 'snapshot-id': 2 },
        { action: 'set-snapshot-ref', 'ref-name': 'audit-run-x', type: 'branch', 'snapshot-id': 4 },
      ],
    });
    expect(refs.statusCode, refs.body).toBe(200);
    // A registered pipeline reads version 3 by number.
    await registerPipeline(
      stack.db,
      stack.tenant,
      spec(`
id: maint_pinned
tasks:
  - id: report
    kind: sql
    layer: gold
    sql: SELECT count(*) AS n FROM silver.orders@3
    output: gold.report
`),
    );
    // The policy: keep snapshots 1 ms after they were replaced (set as a person would, through the CLI).
    const env = { ...lakeEnv(stack), STRATA_TENANT: stack.tenant };
    const bad = await runCli(['tables', 'policy', 'silver.orders', '--max-snapshot-age', 'soon'], env);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('--max-snapshot-age takes a duration like 90m, 48h or 7d (got "soon")');
    const pol = await runCli(['tables', 'policy', 'silver.orders', '--max-snapshot-age', '1ms'], env);
    expect(pol.code, pol.out).toBe(0);
    expect(pol.out).toMatch(/maxSnapshotAgeMs\s+1\n/);
    expect(pol.out).toMatch(/minSnapshotsToKeep\s+1\n/);
    expect((await tableMeta(['silver'], 'orders')).meta.properties['history.expire.max-snapshot-age-ms']).toBe('1');
    await new Promise((r) => setTimeout(r, 20));

    const r = await maintain(['silver'], 'orders', ['expire_snapshots']);
    expect(r.results.expire_snapshots).toMatchObject({ expired: ['1'], versions: [1] });
    const { meta } = await tableMeta(['silver'], 'orders');
    expect(meta.snapshots.map((s) => s['snapshot-id'])).toEqual([2, 3, 4, 5]);
    expect(meta['snapshot-log'].map((e) => e['snapshot-id'])).toEqual([2, 3, 4, 5]);
    expect(meta['current-snapshot-id']).toBe(5);

    // Version 1's file is gone, version 2's (tagged) is not.
    expect(await stack.store!.head(v1!.files[0])).toBeUndefined();
    expect(await stack.store!.head(v2!.files[0])).toBeDefined();
    // Strata's time travel to it: a clear 410; by time, to when it was current, too.
    const svc = new DatasetsService(stack.lake!);
    await expect(svc.preview(stack.tenant, 'silver.orders@1', 1)).rejects.toMatchObject({
      status: 410,
      message: expect.stringMatching(/silver\.orders@1 was expired by table maintenance/),
    });
    await expect(svc.preview(stack.tenant, `silver.orders@${v1!.promotedAt}`, 1)).rejects.toMatchObject({
      status: 410,
    });
    expect((await svc.preview(stack.tenant, 'silver.orders@3', 10)).rows).toHaveLength(4);
    // iceberg-go: the current snapshot and the kept ones read; snapshot 1 is not there.
    expect(canon(await scan('silver.orders'))).toEqual(canon(await versionRows('silver', 'orders', 5)));
    expect(canon(await scan('silver.orders', 2))).toEqual(canon(await versionRows('silver', 'orders', 2)));
    await expect(scan('silver.orders', 1)).rejects.toThrow(/snapshot/i);

    // A task of a pipeline reading the expired version fails with the same words.
    const late = await run(
      spec(`
id: maint_late
tasks:
  - id: old
    kind: sql
    layer: silver
    sql: SELECT * FROM silver.orders@1
    output: silver.old_orders
`),
    );
    expect(late.tasks.old).toMatchObject({ status: 'failed', attempts: 1 });
    expect(late.tasks.old.error).toMatch(/silver\.orders@1 was expired by table maintenance/);

    // Idempotent: nothing more to expire.
    const again = await maintain(['silver'], 'orders', ['expire_snapshots']);
    expect(again.results.expire_snapshots).toMatchObject({ expired: [], filesDeleted: 0 });
  });
});

describe('audit branch expiry', () => {
  it("removes write-audit-publish branches older than strata.audit.max-ref-age-ms before snapshot expiry, so a rejected audit's snapshot and file go; main, a tag and an audit in progress stay", async () => {
    const write = (sql: string, checks = '[]') =>
      spec(`
id: maint_audited
tasks:
  - id: audited
    kind: sql
    layer: silver
    sql: ${JSON.stringify(sql)}
    output: silver.audited
    checks: ${checks}
`);
    const id = { layer: 'silver' as const, namespace: 'default', name: 'audited' };
    expect((await run(write(`SELECT i::BIGINT AS id, 'n' || i AS name FROM range(1, 4) t(i)`))).status).toBe('success');
    // A rejected write: Strata's writer keeps it staged on the task's audit branch (version 2, snapshot 2).
    const rejected = await run(write(`SELECT NULL::BIGINT AS id, 'bad' AS name`, '[{ not_null: id }]'));
    expect(rejected.tasks.audited).toMatchObject({ status: 'failed', errorType: 'QualityGateFailed' });
    const v2 = await stack.lake!.catalog.version(stack.tenant, id, 2);
    expect(v2).toMatchObject({ status: 'rejected' });
    let meta = (await tableMeta(['silver'], 'audited')).meta;
    const rejectedBranch = Object.keys(meta.refs).find((n) => n.startsWith('audit-'))!;
    expect(rejectedBranch, JSON.stringify(meta.refs)).toBeDefined();
    expect(meta.refs[rejectedBranch]['snapshot-id']).toBe(2);
    expect((await run(write(`SELECT i::BIGINT AS id, 'm' || i AS name FROM range(1, 3) t(i)`))).status).toBe('success');
    // A tag anyone may make, kept whatever its age (Iceberg's default for refs without max-ref-age-ms).
    const tag = await catalogApi('POST', '/namespaces/silver/tables/audited', {
      requirements: [],
      updates: [{ action: 'set-snapshot-ref', 'ref-name': 'release', type: 'tag', 'snapshot-id': 1 }],
    });
    expect(tag.statusCode, tag.body).toBe(200);
    // An external job's audit in progress: its run credential is live and it staged a snapshot (iceberg-go as the job).
    const ctx: RunContext = {
      runId: 'job1',
      workflowId: `pipeline/${stack.tenant}/maint_job/job1`,
      pipelineId: 'maint_job',
      tenant: stack.tenant,
      trigger: 'manual',
      logicalDate: '2026-01-01',
    };
    const jobTask = { id: 'load', outputs: [{ dataset: 'silver.audited', checks: [] }] };
    const access = (await issueCatalogAccess(stack.lake!, { uri, run: ctx, task: jobTask, ttlMs: 600_000 }))!;
    const staged = await readStackIceberg(stack, uri, access.token, [
      'append',
      '-table',
      'silver.audited',
      '-rows',
      JSON.stringify([{ id: 100, name: 'job' }]),
    ]);
    // Read as text: a snapshot id is a 64-bit integer, past what JSON.parse keeps exactly.
    const stagedId = /"snapshot-id":\s*(\d+)/.exec(staged.stdout)?.[1];
    expect(stagedId, staged.stdout).toBeDefined();
    meta = (await tableMeta(['silver'], 'audited')).meta;
    expect(String(meta.refs[access.branch]['snapshot-id'])).toBe(stagedId);
    expect(meta['current-snapshot-id']).toBe(3);

    // The policy, as a person sets it: audit branches and snapshots kept 1 ms.
    const env = { ...lakeEnv(stack), STRATA_TENANT: stack.tenant };
    const bad = await runCli(['tables', 'policy', 'silver.audited', '--audit-branch-age', 'a week'], env);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('--audit-branch-age takes a duration like 90m, 48h or 7d (got "a week")');
    const pol = await runCli(
      ['tables', 'policy', 'silver.audited', '--audit-branch-age', '1ms', '--max-snapshot-age', '1ms'],
      env,
    );
    expect(pol.code, pol.out).toBe(0);
    expect(pol.out).toMatch(/maxAuditRefAgeMs\s+1\n/);
    expect((await tableMeta(['silver'], 'audited')).meta.properties['strata.audit.max-ref-age-ms']).toBe('1');
    await new Promise((r) => setTimeout(r, 20));

    const r = await maintain(['silver'], 'audited', ['expire_snapshots']);
    // The rejected audit's branch went first, then its snapshot (version 2) with it; version 1 stays for the tag.
    expect(r.results.expire_snapshots, JSON.stringify(r.results.expire_snapshots)).toMatchObject({
      refsRemoved: [rejectedBranch],
      expired: ['2'],
      versions: [2],
    });
    meta = (await tableMeta(['silver'], 'audited')).meta;
    expect(Object.keys(meta.refs).sort()).toEqual([access.branch, 'main', 'release'].sort());
    expect(meta.refs.main['snapshot-id']).toBe(3);
    expect(meta.snapshots.map((s) => String(s['snapshot-id'])).sort()).toEqual(['1', '3', stagedId].sort());
    expect(await stack.store!.head(v2!.files[0])).toBeUndefined();
    expect(await stack.lake!.catalog.version(stack.tenant, id, 2)).toMatchObject({ status: 'vacuumed' });
    expect(canon(await scan('silver.audited'))).toEqual(canon(await versionRows('silver', 'audited', 3)));

    // The job's audit publishes; its branch is no longer in progress and goes on the next run, main stays on it.
    const audited = await auditOutputs(forTenant(stack.lake!, stack.tenant), {
      run: ctx,
      task: jobTask,
      scratch: `${inject('scratchDir')}/maint-audit`,
    });
    expect(audited.versions.map((v) => v.status)).toEqual(['committed']);
    expect(
      (await new AuditStore(stack.db).audit(stack.tenant, { namespace: ['silver'], name: 'audited' }, access.branch))
        ?.status,
    ).toBe('published');
    await new Promise((r) => setTimeout(r, 20));
    const again = await maintain(['silver'], 'audited', ['expire_snapshots']);
    expect(again.results.expire_snapshots).toMatchObject({ refsRemoved: [access.branch] });
    meta = (await tableMeta(['silver'], 'audited')).meta;
    expect(Object.keys(meta.refs).sort()).toEqual(['main', 'release']);
    expect(String(meta.refs.main['snapshot-id'])).toBe(stagedId);
    expect((await scan('silver.audited')).map((x) => (x as { id: number }).id).sort((a, b) => a - b)).toEqual([
      1, 2, 100,
    ]);
    // Nothing left to remove.
    const third = await maintain(['silver'], 'audited', ['expire_snapshots']);
    expect(third.results.expire_snapshots).toMatchObject({ refsRemoved: [] });
  });
});

describe('orphan removal', () => {
  it("deletes unreferenced files of the table's own prefix once old enough; referenced, young, neighbouring and other tenants' files stay", async () => {
    const s = spec(`
id: maint_items
tasks:
  - id: items
    kind: sql
    layer: silver
    sql: SELECT i::BIGINT AS id FROM range(1, 4) t(i)
    output: silver.items
`);
    expect((await run(s)).status).toBe('success');
    const store = stack.store!;
    const root = stack.lake!.store;
    const other = `t${randomBytes(3).toString('hex')}`;
    await store.putBytes('silver/default/items/data/crashed-attempt/part-00000.parquet', 'old orphan');
    await store.putBytes('silver/default/items/metadata/stale.avro', 'old orphan');
    await store.putBytes('silver/default/items_archive/keep.parquet', 'a neighbour, not the table');
    await root.putBytes(`${other}/silver/default/items/data/x/part-00000.parquet`, "another tenant's");
    // The table's own safety age: 5 s.
    const props = await catalogApi('POST', '/namespaces/silver/tables/items', {
      requirements: [],
      updates: [{ action: 'set-properties', updates: { 'strata.maintenance.orphan-older-than-ms': '5000' } }],
    });
    expect(props.statusCode, props.body).toBe(200);
    // What the table references now (data file, manifest, list, both metadata files): all must stay.
    const referenced = (await store.list('silver/default/items/'))
      .map((o) => o.key)
      .filter((k) => !/crashed|stale/.test(k));
    expect(referenced.length).toBeGreaterThanOrEqual(5);
    await new Promise((r) => setTimeout(r, 6000));
    const r = await stack.withWorker(async () => {
      // Written just before the run: younger than 5 s when the run looks.
      await store.putBytes('silver/default/items/data/in-flight/part-00000.parquet', 'a write in flight');
      // The platform's floor wins over a table's shorter age: with the worker's default (1 h) nothing goes.
      const floored = await removeOrphans(
        deps,
        { tenant: stack.tenant, namespace: ['silver'], name: 'items' },
        { now: Date.now(), floorMs: 3_600_000 },
      );
      expect(floored).toMatchObject({ filesDeleted: 0, tooYoung: 3 });
      return maintainTableNow(stack.client, {
        taskQueue: stack.taskQueue,
        input: { tenant: stack.tenant, namespace: ['silver'], name: 'items', operations: ['remove_orphans'] },
      });
    });
    expect(r.results.remove_orphans).toMatchObject({ filesDeleted: 2, tooYoung: 1 });
    const left = (await store.list('silver/default/items/')).map((o) => o.key);
    expect(left).not.toContain('silver/default/items/data/crashed-attempt/part-00000.parquet');
    expect(left).not.toContain('silver/default/items/metadata/stale.avro');
    expect(left).toContain('silver/default/items/data/in-flight/part-00000.parquet');
    for (const k of referenced) expect(left, k).toContain(k);
    expect(await store.head('silver/default/items_archive/keep.parquet')).toBeDefined();
    expect(await root.head(`${other}/silver/default/items/data/x/part-00000.parquet`)).toBeDefined();
    expect(await scan('silver.items')).toHaveLength(3);
    // The old metadata file the metadata log names is referenced too: only the planted ones went.
    const { meta, location } = await tableMeta(['silver'], 'items');
    expect(left).toContain(keyOf(store, location));
    for (const e of meta['metadata-log']) expect(left).toContain(keyOf(store, e['metadata-file']));
  });
});

describe('as task kinds, and on every table by schedule', () => {
  it('table.compact, table.expire_snapshots and table.remove_orphans run in a pipeline with their own policy values', async () => {
    for (let n = 1; n <= 3; n++)
      expect(
        (
          await run(
            spec(`
id: maint_kinds_src
tasks:
  - id: w
    kind: sql
    layer: silver
    sql: SELECT ${n} AS n
    output: silver.kinds
`),
          )
        ).status,
      ).toBe('success');
    const r = await run(
      spec(`
id: maint_kinds
tasks:
  - id: compact
    kind: table.compact
    table: silver.kinds
  - id: expire
    kind: table.expire_snapshots
    table: silver.kinds
    maxSnapshotAge: 1ms
    needs: [compact]
  - id: orphans
    kind: table.remove_orphans
    table: silver.kinds
    olderThan: 1h
    dryRun: true
    needs: [expire]
  - id: missing
    kind: table.compact
    table: silver.nowhere
`),
    );
    expect(r.tasks.compact).toMatchObject({ status: 'success' });
    expect(r.tasks.compact.output).toMatchObject({ operation: 'compact', rewritten: 0 });
    expect(r.tasks.expire.output).toMatchObject({ operation: 'expire_snapshots', versions: [1, 2] });
    expect(r.tasks.orphans.output).toMatchObject({ operation: 'remove_orphans', dryRun: true, filesDeleted: 0 });
    expect(r.tasks.missing).toMatchObject({ status: 'failed', attempts: 1, errorType: 'TableNotFound' });
    expect(r.tasks.missing.error).toMatch(/no table silver\.nowhere/);
    // A table that is not a dataset name is refused when the spec is checked.
    expect(() => spec({ id: 'x', tasks: [{ id: 'a', kind: 'table.compact', table: 'orders' }] })).toThrow(
      /write the table as layer\.name/,
    );
  });

  it('the sweep maintains every table as a child workflow of its own, leaving out tables whose policy turns it off; the schedule is ensured idempotently', async () => {
    await catalogApi('POST', '/namespaces/silver/tables/kinds', {
      requirements: [],
      updates: [{ action: 'set-properties', updates: { 'strata.maintenance.enabled': 'false' } }],
    });
    const tables = await new IcebergStore(stack.db).listTables(stack.tenant, ['silver']);
    const totals = await stack.withWorker(() =>
      stack.client.workflow.execute('tableMaintenanceSweep', {
        taskQueue: stack.taskQueue,
        workflowId: `sweep-test-${stack.tenant}`,
        args: [{}],
      }),
    );
    const all = (await new IcebergStore(stack.db).listTables(stack.tenant, ['bronze'])).length + tables.length;
    expect(totals).toMatchObject({ maintained: all, failed: 0 });
    const off = await stack.client.workflow.getHandle(`maintenance/${stack.tenant}/silver/kinds`).result();
    expect(off).toMatchObject({ skipped: 'strata.maintenance.enabled is false' });
    const on = await stack.client.workflow.getHandle(`maintenance/${stack.tenant}/silver/orders`).result();
    expect(Object.keys((on as { results: object }).results)).toEqual(['compact', 'expire_snapshots', 'remove_orphans']);

    const id = `strata-table-maintenance-${stack.tenant}`;
    const o = { taskQueue: stack.taskQueue, scheduleId: id };
    expect(await ensureMaintenanceSchedule(stack.client, { ...o, interval: '1h' })).toBe('created');
    expect(await ensureMaintenanceSchedule(stack.client, { ...o, interval: '60m' })).toBe('unchanged');
    expect(await ensureMaintenanceSchedule(stack.client, { ...o, interval: '6h' })).toBe('updated');
    const d = await stack.client.schedule.getHandle(id).describe();
    expect((d.action as { workflowType: string }).workflowType).toBe('tableMaintenanceSweep');
    expect(await ensureMaintenanceSchedule(stack.client, { ...o, interval: 'off' })).toBe('deleted');
  });
});

describe('strata tables migrate', () => {
  it('makes datasets written before Iceberg into tables with a snapshot per version; nothing lost, a second run changes nothing', async () => {
    const catalog = new Catalog(stack.db);
    const store = stack.store!;
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'strata-migrate-'));
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    /** Writes a Parquet file the way Strata did before Iceberg (no field ids) and puts it in the lake. */
    const file = async (key: string, select: string) => {
      const local = path.join(tmp, key.replace(/\//g, '_'));
      await c.run(`COPY (${select}) TO '${local}' (FORMAT parquet)`);
      await store.putFile(key, local);
      return key;
    };
    const legacy = { layer: 'bronze' as const, namespace: 'default', name: 'legacy' };
    const commit = (version: string, files: string[], rows: number, promote = true) =>
      catalog.commit({ tenant: stack.tenant, runId: `old-${version}`, pipelineId: 'old', taskId: 't' }, [
        {
          id: legacy,
          location: `bronze/default/legacy/data/${version}`,
          files,
          schema: [
            { name: 'id', type: 'BIGINT', nullable: true },
            { name: 'name', type: 'VARCHAR', nullable: true },
          ],
          rowCount: rows,
          bytes: 100,
          inputs: [],
          checks: [],
          promote,
        },
      ]);
    const f1 = await file(
      'bronze/default/legacy/data/a1/part-00000.parquet',
      `SELECT i::BIGINT AS id, 'n' || i AS name FROM range(1, 4) t(i)`,
    );
    await commit('a1', [f1], 3);
    // An incremental version: the previous file plus one.
    const f2 = await file(
      'bronze/default/legacy/data/a2/part-00000.parquet',
      `SELECT i::BIGINT AS id, 'n' || i AS name FROM range(4, 6) t(i)`,
    );
    await commit('a2', [f1, f2], 5);
    // A rejected version, then an overwrite.
    const f3 = await file('bronze/default/legacy/data/a3/part-00000.parquet', `SELECT -1::BIGINT AS id, 'bad' AS name`);
    await commit('a3', [f3], 1, false);
    const f4 = await file(
      'bronze/default/legacy/data/a4/part-00000.parquet',
      `SELECT i::BIGINT AS id, 'm' || i AS name FROM range(10, 12) t(i)`,
    );
    await commit('a4', [f4], 2);
    c.closeSync();
    db.closeSync();
    // A dataset half written before Iceberg: version 1 old, version 2 by a task of today.
    const half = { layer: 'bronze' as const, namespace: 'default', name: 'half' };
    const h1Local = await mkdtemp(path.join(os.tmpdir(), 'strata-half-'));
    {
      const d2 = await DuckDBInstance.create(':memory:');
      const c2 = await d2.connect();
      await c2.run(`COPY (SELECT 7::BIGINT AS id) TO '${h1Local}/h1.parquet' (FORMAT parquet)`);
      await store.putFile('bronze/default/half/data/h1/part-00000.parquet', `${h1Local}/h1.parquet`);
      c2.closeSync();
      d2.closeSync();
    }
    await catalog.commit({ tenant: stack.tenant, runId: 'old-h1', pipelineId: 'old', taskId: 't' }, [
      {
        id: half,
        location: 'bronze/default/half/data/h1',
        files: ['bronze/default/half/data/h1/part-00000.parquet'],
        schema: [{ name: 'id', type: 'BIGINT', nullable: true }],
        rowCount: 1,
        bytes: 10,
        inputs: [],
        checks: [],
        promote: true,
      },
    ]);
    expect(
      (
        await run(
          spec(`
id: maint_half
tasks:
  - id: h
    kind: sql
    layer: bronze
    sql: SELECT 8::BIGINT AS id
    output: bronze.half
`),
        )
      ).status,
    ).toBe('success');
    expect((await tableMeta(['bronze'], 'half')).meta.snapshots.map((s) => s['snapshot-id'])).toEqual([2]);
    expect(await new IcebergStore(stack.db).table(stack.tenant, ['bronze'], 'legacy')).toBeUndefined();

    const env = lakeEnv(stack);
    const dry = await runCli(['tables', 'migrate', '--tenant', stack.tenant, '--dry-run'], env);
    expect(dry.code, dry.out).toBe(0);
    expect(dry.out).toContain(
      `${stack.tenant} bronze.legacy: would add snapshot(s) for version(s) 1, 2, 3, 4 (new table)`,
    );
    expect(dry.out).toContain(`${stack.tenant} bronze.half: would add snapshot(s) for version(s) 1`);
    expect(await new IcebergStore(stack.db).table(stack.tenant, ['bronze'], 'legacy')).toBeUndefined();

    const real = await runCli(['tables', 'migrate', '--tenant', stack.tenant], env);
    expect(real.code, real.out).toBe(0);
    expect(real.out).toMatch(/5 version\(s\) became Iceberg snapshots/);
    const { meta } = await tableMeta(['bronze'], 'legacy');
    expect(meta['current-snapshot-id']).toBe(4);
    expect(
      meta.snapshots.map((s) => [
        s['snapshot-id'],
        s['parent-snapshot-id'],
        s.summary.operation,
        s.summary['strata.status'],
      ]),
    ).toEqual([
      [1, undefined, 'append', 'published'],
      [2, 1, 'append', 'published'],
      [3, 2, 'overwrite', 'rejected'],
      [4, 2, 'overwrite', 'published'],
    ]);
    expect(meta['snapshot-log'].map((e) => e['snapshot-id'])).toEqual([1, 2, 4]);
    // Every version reads the same through iceberg-go as from its files; the rejected one is off main but readable by id.
    for (const v of [1, 2, 3, 4])
      expect(canon(await scan('bronze.legacy', v)), `version ${v}`).toEqual(
        canon(await versionRows('bronze', 'legacy', v)),
      );
    expect(canon(await scan('bronze.legacy'))).toEqual(canon(await versionRows('bronze', 'legacy', 4)));
    // The half-migrated dataset got its early snapshot; main stays on 2.
    const halfMeta = (await tableMeta(['bronze'], 'half')).meta;
    expect(halfMeta.snapshots.map((s) => s['snapshot-id']).sort()).toEqual([1, 2]);
    expect(halfMeta['current-snapshot-id']).toBe(2);
    expect(halfMeta['snapshot-log'].map((e) => e['snapshot-id'])).toEqual([1, 2]);
    expect(canon(await scan('bronze.half', 1))).toEqual(canon([{ id: 7 }]));
    expect(canon(await scan('bronze.half'))).toEqual(canon([{ id: 8 }]));

    // Nothing moved: every old file is where it was, and Strata reads version 2 as before.
    for (const f of [f1, f2, f3, f4]) expect(await store.head(f), f).toBeDefined();
    expect(await versionRows('bronze', 'legacy', 2)).toHaveLength(5);

    const before = (await tableMeta(['bronze'], 'legacy')).location;
    const again = await runCli(['tables', 'migrate', '--tenant', stack.tenant], env);
    expect(again.code, again.out).toBe(0);
    expect(again.out).toMatch(/0 version\(s\) became Iceberg snapshots/);
    expect((await tableMeta(['bronze'], 'legacy')).location).toBe(before);
    await rm(tmp, { recursive: true, force: true });
    await rm(h1Local, { recursive: true, force: true });
  });
});
