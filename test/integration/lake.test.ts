import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { RunState } from '../../schemas/run.js';
import { datasetRows } from '../harness/duck.js';
import { spec } from '../harness/specs.js';
import { decodedHistoryText, testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let crashNext = false;
const lineageFile = () => path.join(inject('scratchDir'), 'lake-lineage.jsonl');
beforeAll(async () => {
  stack = await testStack('lake', {
    lake: 's3',
    lineageFile: lineageFile(),
    faults: {
      beforeCommit: () => {
        if (crashNext) {
          crashNext = false;
          throw new Error('simulated crash between upload and commit');
        }
      },
    },
  });
});
afterAll(async () => stack?.close());

const run = (s: ReturnType<typeof spec>, params?: Record<string, string>): Promise<RunState> =>
  stack.withWorker(() => stack.runToEnd(s, { params }));

function readDataset(name: string, at?: number): Promise<Record<string, unknown>[]> {
  const [layer, n] = name.split('.') as ['silver', string];
  return datasetRows(stack, { layer, name: n }, at || undefined, 'ORDER BY ALL');
}

/** The required parts of an OpenLineage 2-0-2 RunEvent (spec/OpenLineage.json: BaseEvent, RunEvent, Run, Job, Dataset, facets). */
function openLineageProblems(e: Record<string, any>): string[] {
  const p: string[] = [];
  const uri = (v: unknown) => typeof v === 'string' && /^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(v);
  if (
    typeof e.eventTime !== 'string' ||
    Number.isNaN(Date.parse(e.eventTime)) ||
    !/T.*(Z|[+-]\d\d:\d\d)$/.test(e.eventTime)
  )
    p.push('eventTime: date-time');
  if (!uri(e.producer)) p.push('producer: uri');
  if (!uri(e.schemaURL)) p.push('schemaURL: uri');
  if (!['START', 'RUNNING', 'COMPLETE', 'ABORT', 'FAIL', 'OTHER'].includes(e.eventType)) p.push('eventType');
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(e.run?.runId)) p.push('run.runId: uuid');
  if (typeof e.job?.namespace !== 'string' || typeof e.job?.name !== 'string') p.push('job: namespace and name');
  const facets = (f: Record<string, any> | undefined, where: string) => {
    for (const [k, v] of Object.entries(f ?? {}))
      if (!uri(v._producer) || !uri(v._schemaURL)) p.push(`${where}.facets.${k}: _producer and _schemaURL URIs`);
  };
  facets(e.run?.facets, 'run');
  for (const [side, list] of [
    ['inputs', e.inputs],
    ['outputs', e.outputs],
  ] as const)
    for (const d of list ?? []) {
      if (typeof d.namespace !== 'string' || typeof d.name !== 'string') p.push(`${side}: namespace and name`);
      facets(d.facets, side);
    }
  return p;
}

const ORDERS_V1 =
  'order_id,customer_id,amount,ordered_at\n1,c1,10.50,2026-01-01\n2,c2,abc,2026-01-01\n3,,5,2026-01-02\n4,c1,7.25,2026-01-02\n4,c1,7.25,2026-01-02\n5,c9,1,not-a-date\n';

const pipeline = (extraChecks = '') =>
  spec(`
id: lake_orders
tasks:
  - id: land
    kind: ingest.file
    source: landing/orders/
    format: csv
    columns:
      order_id: { type: int, nullable: false }
      customer_id: { type: string, nullable: false }
      amount: { type: decimal, precision: 12, scale: 2 }
      ordered_at: date
    output: bronze.orders
  - id: silver_orders
    kind: sql
    layer: silver
    needs: [land]
    sql: SELECT DISTINCT order_id, customer_id, amount, ordered_at FROM bronze.orders
    output: silver.orders
    checks:
      - unique: order_id
      - not_null: [order_id, customer_id]
      - range: { column: amount, min: 0 }
      - row_count: { min: 1 }
${extraChecks}
  - id: daily
    kind: sql
    layer: gold
    needs: [silver_orders]
    sql: SELECT ordered_at, sum(amount) AS revenue, count(*) AS orders FROM silver.orders GROUP BY 1
    output: gold.daily_revenue
`);

describe('lake on S3 (MinIO)', () => {
  it('ingests with quarantine, transforms with checks, records catalog, lineage and OpenLineage events', async () => {
    await stack.store!.putBytes('landing/orders/day1.csv', ORDERS_V1);
    await stack.store!.putBytes('landing/orders/_SUCCESS', '');
    const st = await run(pipeline());
    expect(st.status, JSON.stringify(st.tasks)).toBe('success');
    expect(st.tasks.land.output).toMatchObject({ rowCount: 3, quarantined: 3, dataset: 'bronze.orders', version: 1 });
    expect(String(st.tasks.land.output!.location)).toMatch(/^s3:\/\/lake\//);
    const q = await readDataset('bronze.orders_quarantine');
    expect(q.map((r) => r._reason).sort()).toEqual([
      'amount: abc is not a valid decimal',
      'customer_id: missing (not nullable)',
      'ordered_at: not-a-date is not a valid date',
    ]);
    expect(q.every((r) => r._source_file === 'landing/orders/day1.csv')).toBe(true);
    expect(st.tasks.silver_orders.output).toMatchObject({ rowCount: 2, version: 1, checks: { passed: 4, warned: [] } });
    // Where the task's time went (bench:medallion prints it): every phase in whole milliseconds,
    // the phases inside the body within its total.
    const timings = st.tasks.silver_orders.output!.timings as Record<string, number>;
    for (const k of ['pre', 'inputs', 'attach', 'refs', 'lock', 'bind', 'write', 'copy', 'checks', 'commit', 'total'])
      expect(Number.isInteger(timings[k]) && timings[k] >= 0, `timings.${k} = ${timings[k]}`).toBe(true);
    expect(timings.inputs + timings.write + timings.commit).toBeLessThanOrEqual(timings.total + 3);
    const gold = await readDataset('gold.daily_revenue');
    expect(gold).toEqual([
      { ordered_at: '2026-01-01', revenue: '10.50', orders: '1' },
      { ordered_at: '2026-01-02', revenue: '7.25', orders: '1' },
    ]);
    const cat = stack.lake!.catalog;
    const silver = await cat.current(stack.tenant, { layer: 'silver', namespace: 'default', name: 'orders' });
    expect(silver!.schema.map((c) => c.name)).toEqual(['order_id', 'customer_id', 'amount', 'ordered_at']);
    expect(silver!.inputs).toEqual([{ layer: 'bronze', namespace: 'default', name: 'orders', version: 1 }]);
    const lin = await cat.lineage(stack.tenant, { layer: 'silver', namespace: 'default', name: 'orders' }, 5);
    expect(lin.edges).toEqual(
      expect.arrayContaining([
        { from: 'bronze.orders', to: 'silver.orders' },
        { from: 'silver.orders', to: 'gold.daily_revenue' },
      ]),
    );
    const events = (await readFile(lineageFile(), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const silverEvents = events.filter((e) => e.job.name === 'lake_orders.silver_orders');
    expect(silverEvents.map((e) => e.eventType)).toEqual(['START', 'COMPLETE']);
    for (const e of events) expect(openLineageProblems(e), JSON.stringify(e)).toEqual([]);
    expect(silverEvents[1].inputs[0].name).toBe('bronze/default/orders');
    expect(silverEvents[1].outputs[0].facets.schema.fields[0]).toEqual({ name: 'order_id', type: 'INTEGER' });
    expect(silverEvents[1].run.runId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(JSON.stringify(events)).not.toContain(stack.s3!.secretAccessKey);
    // S3 credentials never reach workflow history
    const history = await decodedHistoryText(stack, st.workflowId);
    expect(history).toContain('bronze.orders');
    expect(history).not.toContain(stack.s3!.secretAccessKey);
    expect(history).not.toContain(stack.s3!.accessKeyId);
  });

  it('an error check blocks promotion and its downstream; a warn check records and continues; time travel reads the old version', async () => {
    await stack.store!.putBytes(
      'landing/orders/day2.csv',
      'order_id,customer_id,amount,ordered_at\n9,c3,-4,2026-01-03\n',
    );
    const st = await run(
      pipeline(`      - accepted_values: { column: customer_id, values: [c1, c2] }\n        severity: warn`),
    );
    expect(st.tasks.silver_orders.status).toBe('failed');
    expect(st.tasks.silver_orders.errorType).toBe('QualityGateFailed');
    expect(st.tasks.silver_orders.error).toMatch(/range\(amount\): 1 rows have amount outside \[0, ∞\]/);
    expect(st.tasks.daily.status).toBe('upstream_failed');
    const failEvent = (await readFile(lineageFile(), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((e) => e.eventType === 'FAIL');
    expect(failEvent.length).toBe(1);
    expect(failEvent[0].run.facets.errorMessage.message).toMatch(/quality gate failed/);
    expect(openLineageProblems(failEvent[0])).toEqual([]);
    const cat = stack.lake!.catalog;
    const versions = await cat.versions(stack.tenant, { layer: 'silver', namespace: 'default', name: 'orders' });
    expect(versions.map((v) => [v.version, v.status, v.current])).toEqual([
      [2, 'rejected', false],
      [1, 'committed', true],
    ]);
    const failed = versions[0].checks.find((c) => c.name === 'range(amount)')!;
    expect(failed.sample).toEqual([{ order_id: 9, customer_id: 'c3', amount: '-4.00', ordered_at: '2026-01-03' }]);
    expect(versions[0].checks.find((c) => c.kind === 'accepted_values')).toMatchObject({
      severity: 'warn',
      passed: false,
      failing: 1,
    });
    // bronze moved on (v2 has both files); gold still reads silver v1
    expect((await cat.current(stack.tenant, { layer: 'bronze', namespace: 'default', name: 'orders' }))!.version).toBe(
      2,
    );

    // fix the file; silver v3 becomes current, and @1 still reads the first version
    await stack.store!.putBytes(
      'landing/orders/day2.csv',
      'order_id,customer_id,amount,ordered_at\n9,c3,4,2026-01-03\n',
    );
    const ok = await run(pipeline());
    expect(ok.status, JSON.stringify(ok.tasks)).toBe('success');
    expect(ok.tasks.silver_orders.output).toMatchObject({ version: 3, rowCount: 3 });
    const tt = await run(
      spec(`
id: time_travel
tasks:
  - id: diff
    kind: sql
    layer: gold
    sql: SELECT (SELECT count(*) FROM silver.orders) AS now_rows, (SELECT count(*) FROM silver.orders@1) AS v1_rows
    output: gold.tt
`),
    );
    expect(tt.status).toBe('success');
    expect(await readDataset('gold.tt')).toEqual([{ now_rows: '3', v1_rows: '2' }]);
    const ttv = await cat.current(stack.tenant, { layer: 'gold', namespace: 'default', name: 'tt' });
    expect(ttv!.inputs.map((i) => i.version).sort()).toEqual([1, 3]);
  });

  it('a crash between writing files and committing leaves no partial version; the retry commits once', async () => {
    const cat = stack.lake!.catalog;
    const before = await cat.current(stack.tenant, { layer: 'gold', namespace: 'default', name: 'daily_revenue' });
    crashNext = true;
    const st = await run(
      spec(`
id: lake_orders
tasks:
  - id: daily
    kind: sql
    layer: gold
    sql: SELECT ordered_at, sum(amount) AS revenue, count(*) AS orders FROM silver.orders GROUP BY 1
    output: gold.daily_revenue
    retry: { attempts: 2, initialInterval: 50ms }
`),
    );
    expect(st.tasks.daily).toMatchObject({ status: 'success', attempts: 2 });
    const versions = await cat.versions(stack.tenant, { layer: 'gold', namespace: 'default', name: 'daily_revenue' });
    expect(versions[0].version).toBe(before!.version + 1);
    expect(versions.length).toBe(before!.version + 1);
    // the crashed attempt's files exist but no version points at them
    const files = (await stack.store!.list('gold/default/daily_revenue/data/')).map((o) => o.key);
    const live = await cat.liveFiles(stack.tenant, { layer: 'gold', namespace: 'default', name: 'daily_revenue' });
    const orphans = files.filter((f) => !live.has(f));
    expect(orphans.length).toBe(1);
    expect(orphans[0]).toMatch(/-a1\/part-00000\.parquet$/);
  });
});
