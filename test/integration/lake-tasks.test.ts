import type mysql from 'mysql2/promise';
import type pg from 'pg';
import { decodePayload } from '../../client/data-converter.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetsService } from '../../client/datasets.js';
import type { RunState } from '../../schemas/run.js';
import { spec, waitFor } from '../harness/specs.js';
import { connectWarehouses, type Warehouses } from '../harness/databases.js';
import { testStack, type TestStack } from '../harness/temporal.js';
import { tempDir } from '../harness/tmp.js';

let stack: TestStack;
let pgc: pg.Client;
let my: mysql.Connection;
let wh: Warehouses;
beforeAll(async () => {
  stack = await testStack('lake-tasks', { lake: 's3' });
  wh = await connectWarehouses(stack.connections);
  ({ pg: pgc, mysql: my } = wh);
});
afterAll(async () => {
  await wh?.close();
  await stack?.close();
});

/** How many checks a run's running sensor has made, as its last heartbeat told the server. */
async function sensorChecks(runId: string): Promise<number> {
  const d = await stack.client.workflow.getHandle(runId).describe();
  const p = d.raw.pendingActivities?.find((a) => a.activityType?.name === 's3Check')?.heartbeatDetails?.payloads?.[0];
  return p ? ((await decodePayload<{ polls?: number }>(stack.client.options.loadedDataConverter, p)).polls ?? 0) : 0;
}

const run = (s: ReturnType<typeof spec>): Promise<RunState> => stack.withWorker(() => stack.runToEnd(s));

const ingest = (connection: string, table: string) =>
  spec(`
id: extract_${connection}
tasks:
  - id: extract
    kind: ingest.table
    connection: ${connection}
    table: ${table}
    mode: incremental
    cursor: id
    batchSize: 2
    output: bronze.${table}
  - id: snapshot
    kind: ingest.table
    connection: ${connection}
    query: SELECT kind, count(*) AS n FROM ${table} GROUP BY kind
    output: bronze.${table}_kinds
`);

describe('ingest.table', () => {
  it.each([
    ['warehouse', 'pg_sales'],
    ['mart', 'my_sales'],
  ])(
    'extracts %s incrementally by a cursor: re-runs add only new rows, the high-water mark lives in the metastore',
    async (conn, table) => {
      const exec = (sql: string) => (conn === 'warehouse' ? pgc.query(sql) : my.query(sql));
      await exec(`DROP TABLE IF EXISTS ${table}`);
      await exec(`CREATE TABLE ${table} (id int primary key, kind varchar(10), amount decimal(10,2), sold_on date)`);
      await exec(
        `INSERT INTO ${table} VALUES (1,'a',1.50,'2026-01-01'),(2,'b',2.25,'2026-01-02'),(3,'a',3.00,'2026-01-03')`,
      );
      const first = await run(ingest(conn, table));
      expect(first.status, JSON.stringify(first.tasks)).toBe('success');
      expect(first.tasks.extract.output).toMatchObject({ rowCount: 3, newRows: 3, watermark: '3', version: 1 });
      expect(first.tasks.snapshot.output).toMatchObject({ rowCount: 2 });
      const again = await run(ingest(conn, table));
      expect(again.tasks.extract.output).toMatchObject({ rowCount: 3, newRows: 0, version: 1 });
      await exec(`INSERT INTO ${table} VALUES (4,'c',4.75,'2026-01-04'),(5,'a',5.00,'2026-01-05')`);
      const third = await run(ingest(conn, table));
      expect(third.tasks.extract.output).toMatchObject({ rowCount: 5, newRows: 2, watermark: '5', version: 2 });
      const svc = new DatasetsService(stack.lake!);
      const rows = (await svc.preview(stack.tenant, `bronze.${table}`, 100)).rows.sort(
        (a, b) => Number(a.id) - Number(b.id),
      );
      expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
      expect(rows[3]).toMatchObject({ kind: 'c', sold_on: '2026-01-04' });
      expect(Number(rows[3].amount)).toBe(4.75);
      expect(await stack.lake!.catalog.watermark(stack.tenant, `extract_${conn}`, 'extract')).toBe('5');
    },
  );

  it('reports SQL errors without retrying, and never leaks the connection URL', async () => {
    const st = await run(
      spec(`
id: extract_bad
tasks:
  - id: extract
    kind: ingest.table
    connection: warehouse
    table: no_such_table
    output: bronze.nothing
    retry: { attempts: 3, initialInterval: 50ms }
`),
    );
    expect(st.tasks.extract).toMatchObject({ status: 'failed', attempts: 1, errorType: 'SqlError' });
    expect(st.tasks.extract.error).toMatch(/relation "no_such_table" does not exist/);
    expect(st.tasks.extract.error).not.toContain(stack.connections.warehouse.url);
  });
});

describe('ingest.file', () => {
  it('reads Parquet landing files, casting to the declared schema and quarantining what does not fit', async () => {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const dir = await tempDir('strata-pq-');
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    await c.run(
      `COPY (SELECT * FROM (VALUES ('1', '2026-01-01', 'x'), ('two', '2026-01-02', 'y'), ('3', NULL, 'z')) t(id, day, tag)) TO '${dir}/p.parquet' (FORMAT parquet)`,
    );
    c.closeSync();
    db.closeSync();
    await stack.store!.putFile('landing/pq/p.parquet', `${dir}/p.parquet`);
    const st = await run(
      spec(`
id: pq
tasks:
  - id: land
    kind: ingest.file
    source: landing/pq/*.parquet
    format: parquet
    columns: { id: bigint, day: { type: date, nullable: false }, tag: string }
    output: bronze.pq
    checks: [{ unique: id }]
`),
    );
    expect(st.tasks.land.output).toMatchObject({ rowCount: 1, quarantined: 2, checks: { passed: 1, warned: [] } });
    const q = await new DatasetsService(stack.lake!).preview(stack.tenant, 'bronze.pq_quarantine', 10);
    expect(q.rows.map((r) => [r.id, r._reason, r._source_file, Number(r._line)]).sort()).toEqual([
      ['3', 'day: missing (not nullable)', 'landing/pq/p.parquet', 3],
      ['two', 'id: two is not a valid bigint', 'landing/pq/p.parquet', 2],
    ]);
    const missing = await run(
      spec(`
id: pq_missing
tasks:
  - id: land
    kind: ingest.file
    source: landing/nothing-here/
    format: csv
    columns: { a: int }
    output: bronze.none
`),
    );
    expect(missing.tasks.land).toMatchObject({ status: 'failed', errorType: 'SourceError' });
    expect(missing.tasks.land.error).toMatch(
      /no landing files at s3:\/\/lake\/.*landing\/nothing-here: check "source"/,
    );
  });
});

describe('s3 tasks', () => {
  it('s3.wait checks until the marker and count are there, its poll loop one activity however many checks it takes', async () => {
    const s = spec(`
id: sensor
tasks:
  - id: wait
    kind: s3.wait
    path: incoming/batch1/
    marker: _SUCCESS
    minCount: 2
    pollInterval: 200ms
    waitTimeout: 30s
  - id: list
    kind: s3.list
    needs: [wait]
    prefix: incoming/batch1/
  - id: copy
    kind: s3.copy
    needs: [wait]
    from: incoming/batch1/
    to: archive/batch1/
`);
    const st = await stack.withWorker(async () => {
      // Heartbeats (which carry the check count) reach the server about every 0.8 s.
      const h = await stack.runs.start({
        spec: s,
        tenant: stack.tenant,
        trigger: 'manual',
        options: { heartbeatTimeoutMs: 1000 },
      });
      // Each file lands after the sensor has checked at least once more (as far as its last
      // heartbeat tells; past a few seconds the file lands anyway: the assertions below
      // check that the sensor saw every state and finished in one activity).
      const afterMoreChecks = async (n: number) => {
        const target = (await sensorChecks(h.runId)) + n;
        await waitFor(async () => (await sensorChecks(h.runId)) >= target, 5_000).catch(() => {});
      };
      await afterMoreChecks(1);
      await stack.store!.putBytes('incoming/batch1/a.csv', 'x\n1\n');
      await afterMoreChecks(1);
      await stack.store!.putBytes('incoming/batch1/_SUCCESS', '');
      await afterMoreChecks(1);
      await stack.store!.putBytes('incoming/batch1/b.csv', 'x\n2\n');
      return stack.runs.wait(h.runId);
    });
    expect(st.tasks.wait.status).toBe('success');
    expect(st.tasks.wait.output).toMatchObject({ done: true, count: 2 });
    expect(Number(st.tasks.wait.output!.polls)).toBeGreaterThan(3);
    expect(st.tasks.list.output).toMatchObject({
      count: 3,
      keys: ['incoming/batch1/_SUCCESS', 'incoming/batch1/a.csv', 'incoming/batch1/b.csv'],
    });
    expect(st.tasks.copy.output).toMatchObject({ count: 3 });
    expect((await stack.store!.getBytes('archive/batch1/b.csv')).toString()).toBe('x\n2\n');
    // However many checks: one activity in the run's history, no timers.
    const events = (await stack.client.workflow.getHandle(st.workflowId).fetchHistory()).events!;
    expect(events.filter((e) => e.timerStartedEventAttributes)).toHaveLength(0);
    expect(events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 's3Check')).toHaveLength(
      1,
    );
  });

  it('long waits are cheap: a 7-day sensor adds no history per check, and continue-as-new does not wait for sensors', async () => {
    const chain = Array.from(
      { length: 14 },
      (_, i) => `  - { id: step${i}, kind: noop, sleep: 150ms${i ? `, needs: [step${i - 1}]` : ''} }`,
    ).join('\n');
    const s = spec(`
id: long_waits
tasks:
  - { id: week, kind: s3.wait, path: incoming/week/_READY, pollInterval: 50ms, waitTimeout: 7d }
  - { id: never, kind: s3.wait, path: incoming/never.csv, pollInterval: 50ms, waitTimeout: 3s }
  - { id: after, kind: noop, needs: [week] }
${chain}
`);
    const executions = async (id: string) => {
      const out: string[] = [];
      for await (const ex of stack.client.workflow.list({ query: `WorkflowId = '${id}'` })) out.push(ex.runId);
      return out;
    };
    const { st, runId } = await stack.withWorker(async () => {
      const h = await stack.runs.start({
        spec: s,
        tenant: stack.tenant,
        trigger: 'manual',
        options: { continueAsNewAfterEvents: 30, heartbeatTimeoutMs: 1000 },
      });
      // The run continues as new (more than once) while the week-long sensor is still waiting…
      await waitFor(async () => (await executions(h.runId)).length >= 3, 60_000);
      expect((await stack.runs.state(h.runId)).tasks.week.status).not.toBe('success');
      await new Promise((r) => setTimeout(r, 1500)); // a few dozen more checks
      // …and the sensor, started again in the newer execution, sees the file.
      await stack.store!.putBytes('incoming/week/_READY', '');
      return { st: await stack.runs.wait(h.runId), runId: h.runId };
    });
    expect(st.status).toBe('failed'); // `never` gave up, as it should
    expect(st.tasks.week).toMatchObject({ status: 'success', output: { done: true } });
    expect(st.tasks.after.status).toBe('success');
    expect(st.tasks.step13.status).toBe('success');
    expect(st.continuations).toBeGreaterThanOrEqual(2);
    // A sensor's deadline holds across continue-as-new: `never` gave up about 3 s after it first started.
    expect(st.tasks.never).toMatchObject({ status: 'failed', errorType: 'SensorTimeout' });
    expect(st.tasks.never.error).toMatch(
      /gave up after \d+ checks: s3:\/\/lake\/.*\/incoming\/never\.csv does not exist yet/,
    );
    expect(Date.parse(st.tasks.never.endedAt!) - Date.parse(st.startedAt)).toBeLessThan(3000 + 15_000);
    // Per execution: a bounded number of events, no timers, and at most one activity per sensor,
    // although the sensors made well over a hundred checks between them.
    const ids = await executions(runId);
    expect(ids.length).toBeGreaterThanOrEqual(3);
    for (const r of ids) {
      const events = (await stack.client.workflow.getHandle(runId, r).fetchHistory()).events!;
      expect(events.length, `execution ${r}`).toBeLessThan(80);
      expect(events.filter((e) => e.timerStartedEventAttributes)).toHaveLength(0);
      expect(
        events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 's3Check').length,
      ).toBeLessThanOrEqual(2);
    }
  });

  it("s3.delete removes inside the tenant's lake and refuses any location outside it, whatever the spec says", async () => {
    await stack.store!.putBytes('tmp/x/1.csv', '1');
    await stack.store!.putBytes('tmp/x/2.csv', '2');
    const st = await run(
      spec(`
id: deleter
tasks:
  - id: inside
    kind: s3.delete
    path: tmp/x/
    recursive: true
  - id: outside
    kind: s3.delete
    path: s3://lake/somebody-else/data.csv
`),
    );
    expect(st.tasks.inside.output).toMatchObject({ count: 2 });
    expect(await stack.store!.list('tmp/x/')).toEqual([]);
    expect(st.tasks.outside).toMatchObject({ status: 'failed', attempts: 1, errorType: 'LocationError' });
    expect(st.tasks.outside.error).toMatch(
      /"s3:\/\/lake\/somebody-else\/data\.csv" is outside your lake \(s3:\/\/lake\/test-lake-tasks-\w+\/t\w+\): use a path inside the lake, or ask the platform operator/,
    );
  });
});
