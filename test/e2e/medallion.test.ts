/**
 * The demo pipeline at small scale on the harness's MinIO, checked against an
 * independent computation in plain TypeScript over the generator's files.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, LANDING, type Defects } from '../../examples/generate.js';
import { parseSpecText } from '../../schemas/spec-file.js';
import type { PipelineSpec } from '../../schemas/pipeline.js';
import { datasetRows } from '../harness/duck.js';
import { ROOT } from '../harness/processes.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack('medallion', { lake: 's3' });
});
afterAll(async () => stack?.close());

async function demoSpec(): Promise<PipelineSpec> {
  const r = parseSpecText(await readFile(path.join(ROOT, 'examples', 'medallion.yaml'), 'utf8'));
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  const wait = r.spec.tasks.find((t) => t.id === 'wait_landing')!;
  wait.pollInterval = '250ms';
  return r.spec;
}

function readDataset(name: string): Promise<Record<string, unknown>[]> {
  const [layer, n] = name.split('.') as ['gold', string];
  return datasetRows(stack, { layer, name: n });
}

// ---- the independent computation: the cleaning and gold rules, written out in TS ----
const csvRows = (text: string) => {
  const [head, ...lines] = text.trim().split('\n');
  const cols = head.split(',');
  return lines.filter(Boolean).map((l) => {
    const cells: string[] = [];
    for (const m of l.matchAll(/("([^"]*)"|[^,]*)(,|$)/g)) {
      cells.push(m[2] ?? m[1]);
      if (m[3] === '') break;
    }
    return Object.fromEntries(cols.map((c, i) => [c, cells[i] ?? '']));
  });
};
const validDate = (s: string) =>
  /^\d{4}-\d{2}-\d{2}$/.test(s) && new Date(`${s}T00:00:00Z`).toISOString().slice(0, 10) === s;
const cents = (s: string) => (/^\d+\.\d{2}$/.test(s) ? Number(s.replace('.', '')) : undefined);
const money = (c: number) => `${Math.floor(c / 100)}.${String(c % 100).padStart(2, '0')}`;

function expected(files: Map<string, string>) {
  const of = (dir: string) =>
    [...files].filter(([k]) => k.startsWith(`${LANDING}/${dir}/`) && !k.endsWith('_SUCCESS')).map(([, v]) => v);
  const customers = of('customers').flatMap(csvRows);
  const goodCustomers = new Map<string, Record<string, string>>();
  let custQ = 0;
  for (const c of customers) {
    if (!c.customer_id || !validDate(c.signup_date)) custQ++;
    else goodCustomers.set(c.customer_id, c);
  }
  const orders = of('orders').flatMap(csvRows);
  let ordQ = 0;
  const bronzeOrders = orders.filter((o) => (o.customer_id ? true : (ordQ++, false)));
  const silverOrders = new Map<string, Record<string, string>>();
  const orphans = new Set<string>();
  for (const o of bronzeOrders) {
    if (goodCustomers.has(o.customer_id)) silverOrders.set(o.order_id, o);
    else orphans.add(o.order_id);
  }
  const items = of('order_items').flatMap(csvRows);
  let itemQ = 0;
  const silverItems = new Map<string, { order_id: string; amount: number }>();
  for (const i of items) {
    const c = cents(i.unit_price);
    if (c === undefined) {
      itemQ++;
      continue;
    }
    if (silverOrders.has(i.order_id))
      silverItems.set(`${i.order_id}/${i.line_no}`, { order_id: i.order_id, amount: c * Number(i.quantity) });
  }
  let clickQ = 0;
  const views = new Map<string, number>();
  const seenEvents = new Set<string>();
  for (const line of of('clickstream').flatMap((t) => t.split('\n').filter((l) => l.trim()))) {
    let e: { event_id: string; customer_id: string | null; event_type: string };
    try {
      e = JSON.parse(line);
    } catch {
      clickQ++;
      continue;
    }
    if (seenEvents.has(e.event_id)) continue;
    seenEvents.add(e.event_id);
    if (e.event_type === 'page_view' && e.customer_id) views.set(e.customer_id, (views.get(e.customer_id) ?? 0) + 1);
  }
  // gold
  const orderAmount = new Map<string, number>();
  for (const it of silverItems.values()) orderAmount.set(it.order_id, (orderAmount.get(it.order_id) ?? 0) + it.amount);
  const daily = new Map<string, { orders: number; customers: Set<string>; revenue: number }>();
  const perCustomer = new Map<string, { n: number; total: number; last: string }>();
  for (const [id, amount] of orderAmount) {
    const o = silverOrders.get(id)!;
    if (o.status !== 'completed') continue;
    const day = o.order_ts.slice(0, 10);
    const d = daily.get(day) ?? { orders: 0, customers: new Set(), revenue: 0 };
    d.orders++;
    d.customers.add(o.customer_id);
    d.revenue += amount;
    daily.set(day, d);
    const p = perCustomer.get(o.customer_id) ?? { n: 0, total: 0, last: '' };
    p.n++;
    p.total += amount;
    if (day > p.last) p.last = day;
    perCustomer.set(o.customer_id, p);
  }
  const maxDay = [...silverOrders.values()]
    .map((o) => o.order_ts.slice(0, 10))
    .sort()
    .at(-1)!;
  const asOf = Date.parse(`${maxDay}T00:00:00Z`) + 86_400_000;
  const c360 = [...goodCustomers.values()].map((c) => {
    const p = perCustomer.get(c.customer_id);
    const recency = p ? Math.round((asOf - Date.parse(`${p.last}T00:00:00Z`)) / 86_400_000) : null;
    const r = recency === null ? 0 : recency <= 7 ? 5 : recency <= 14 ? 4 : recency <= 30 ? 3 : recency <= 45 ? 2 : 1;
    const n = p?.n ?? 0;
    const f = n === 0 ? 0 : n >= 12 ? 5 : n >= 9 ? 4 : n >= 6 ? 3 : n >= 3 ? 2 : 1;
    const m$ = (p?.total ?? 0) / 100;
    const m = m$ <= 0 ? 0 : m$ >= 2000 ? 5 : m$ >= 1200 ? 4 : m$ >= 600 ? 3 : m$ >= 200 ? 2 : 1;
    const segment =
      n === 0
        ? 'no_purchase'
        : r >= 4 && f >= 4
          ? 'champion'
          : r >= 3 && f >= 3
            ? 'loyal'
            : r >= 4 && f <= 1
              ? 'new'
              : r <= 2 && f >= 3
                ? 'at_risk'
                : r <= 2
                  ? 'hibernating'
                  : 'regular';
    return {
      customer_id: c.customer_id,
      orders: n,
      lifetime_value: money(p?.total ?? 0),
      recency_days: recency,
      page_views: views.get(c.customer_id) ?? 0,
      r_score: r,
      f_score: f,
      m_score: m,
      segment,
    };
  });
  return {
    quarantine: { customers: custQ, orders: ordQ, order_items: itemQ, clickstream: clickQ },
    orphans: orphans.size,
    daily: [...daily]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([day, d]) => ({ day, orders: d.orders, customers: d.customers.size, revenue: money(d.revenue) })),
    c360: c360.sort((a, b) => (a.customer_id < b.customer_id ? -1 : 1)),
  };
}

describe('the medallion demo on S3', () => {
  it('lands, cleans and builds gold equal to an independent computation; quarantine counts equal the injected defects', async () => {
    const files = new Map<string, string>();
    let defects!: Defects;
    const st = await stack.withWorker(async () => {
      const h = await stack.runs.start({ spec: await demoSpec(), tenant: stack.tenant, trigger: 'manual' });
      // The landing batch arrives after the run started: the sensor polls on timers until _SUCCESS.
      await new Promise((r) => setTimeout(r, 600));
      ({ defects } = await generate(
        { seed: 7, customers: 150, products: 30, orders: 1500, days: 40 },
        async (key, content) => {
          files.set(key, content);
          await stack.store!.putBytes(key, content);
        },
      ));
      return stack.runs.wait(h.runId);
    });
    expect(st.status, JSON.stringify(st.tasks, null, 1)).toBe('success');
    expect(Number(st.tasks.wait_landing.output!.polls)).toBeGreaterThan(1);
    // every defect kind was generated at this size, so the counts below are not vacuous
    for (const [k, v] of Object.entries(defects)) expect(v, k).toBeGreaterThan(0);

    const exp = expected(files);
    const q = (id: string) => st.tasks[id].output!.quarantined;
    expect(q('bronze_customers')).toBe(defects.badSignupDates);
    expect(q('bronze_orders')).toBe(defects.nullCustomerOrders);
    expect(q('bronze_order_items')).toBe(defects.badAmountItems);
    expect(q('bronze_clickstream')).toBe(defects.malformedClicks);
    expect({
      customers: q('bronze_customers'),
      orders: q('bronze_orders'),
      order_items: q('bronze_order_items'),
      clickstream: q('bronze_clickstream'),
    }).toEqual(exp.quarantine);
    expect(st.tasks.silver_orders_rejected.output!.rowCount).toBe(
      defects.orphanOrders + defects.ordersOfQuarantinedCustomers,
    );
    expect(st.tasks.silver_orders_rejected.output!.rowCount).toBe(exp.orphans);

    const daily = (await readDataset('gold.daily_revenue'))
      .map((r) => ({ day: r.day, orders: Number(r.orders), customers: Number(r.customers), revenue: r.revenue }))
      .sort((a, b) => (String(a.day) < String(b.day) ? -1 : 1));
    expect(daily).toEqual(exp.daily);
    const c360 = (await readDataset('gold.customer_360'))
      .map((r) => ({
        customer_id: r.customer_id,
        orders: Number(r.orders),
        lifetime_value: String(r.lifetime_value).includes('.')
          ? String(r.lifetime_value)
          : `${String(r.lifetime_value)}.00`,
        recency_days: r.recency_days === null ? null : Number(r.recency_days),
        page_views: Number(r.page_views),
        r_score: Number(r.r_score),
        f_score: Number(r.f_score),
        m_score: Number(r.m_score),
        segment: r.segment,
      }))
      .sort((a, b) => (String(a.customer_id) < String(b.customer_id) ? -1 : 1));
    expect(c360).toEqual(exp.c360);
    // the segments are varied, so the comparison pins real logic
    expect(new Set(c360.map((c) => c.segment)).size).toBeGreaterThanOrEqual(4);

    const lineage = await stack.lake!.catalog.lineage(
      stack.tenant,
      { layer: 'gold', namespace: 'default', name: 'customer_360' },
      3,
    );
    expect(lineage.edges).toEqual(
      expect.arrayContaining([
        { from: 'silver.orders', to: 'gold.customer_360' },
        { from: 'bronze.orders', to: 'silver.orders' },
      ]),
    );
  });
});
