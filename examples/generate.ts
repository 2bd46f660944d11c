/**
 * Seeded e-commerce sample data for the medallion demo: customers, products, orders with
 * line items, and a clickstream, as landing files (CSV and JSON lines), with realistic
 * defects whose exact counts are returned, so tests can check the pipeline against them:
 *   customers    bad signup dates (quarantined), exact duplicate rows (deduplicated)
 *   orders       missing customer ids (quarantined), re-sent duplicates (deduplicated),
 *                unknown customers (orphans, rejected in silver), a late file holding
 *                orders of an earlier day
 *   order_items  unparseable amounts (quarantined)
 *   clickstream  malformed JSON lines (quarantined), duplicate events (deduplicated)
 *
 *   npx tsx examples/generate.ts --out DIR [--seed N] [--orders N] [--customers N]
 */
export interface GenOptions {
  seed?: number;
  customers?: number;
  products?: number;
  orders?: number;
  /** Clickstream events per order. */
  clicksPerOrder?: number;
  days?: number;
  /** First order day, YYYY-MM-DD. */
  start?: string;
}

export interface Defects {
  badSignupDates: number;
  duplicateCustomers: number;
  nullCustomerOrders: number;
  duplicateOrders: number;
  orphanOrders: number;
  lateOrders: number;
  /** Orders of customers whose own row was quarantined: orphans in silver too. */
  ordersOfQuarantinedCustomers: number;
  badAmountItems: number;
  malformedClicks: number;
  duplicateClicks: number;
}

export type Emit = (key: string, content: string) => Promise<void> | void;

/** mulberry32: small, fast, seeded (shared by every data generator of the project). */
export function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COUNTRIES = ['DE', 'FR', 'NL', 'ES', 'IT', 'PL', 'SE', 'US'];
const CATEGORIES = ['books', 'games', 'garden', 'kitchen', 'outdoor', 'toys'];
const STATUSES = [
  'completed',
  'completed',
  'completed',
  'completed',
  'completed',
  'completed',
  'completed',
  'completed',
  'cancelled',
  'returned',
];
const EVENTS = ['page_view', 'page_view', 'page_view', 'add_to_cart', 'search'];

const pad = (n: number, w: number) => String(n).padStart(w, '0');
export const dayOf = (start: string, i: number) =>
  new Date(Date.parse(`${start}T00:00:00Z`) + i * 86_400_000).toISOString().slice(0, 10);
const ts = (day: string, sec: number) =>
  `${day} ${pad(Math.floor(sec / 3600), 2)}:${pad(Math.floor(sec / 60) % 60, 2)}:${pad(sec % 60, 2)}`;

export const LANDING = 'landing/shop';

/** Writes the landing files through emit, day by day (memory stays bounded), and returns the defect counts. */
export async function generate(
  o: GenOptions,
  emit: Emit,
): Promise<{ defects: Defects; options: Required<GenOptions> }> {
  const opt: Required<GenOptions> = {
    seed: 42,
    customers: 500,
    products: 50,
    orders: 5_000,
    clicksPerOrder: 2,
    days: 60,
    start: '2026-01-01',
    ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)),
  };
  const r = rng(opt.seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const d: Defects = {
    badSignupDates: 0,
    duplicateCustomers: 0,
    nullCustomerOrders: 0,
    duplicateOrders: 0,
    orphanOrders: 0,
    lateOrders: 0,
    ordersOfQuarantinedCustomers: 0,
    badAmountItems: 0,
    malformedClicks: 0,
    duplicateClicks: 0,
  };

  // customers
  const cust: string[] = ['customer_id,name,email,country,signup_date'];
  const quarantinedCustomers = new Set<string>();
  for (let i = 1; i <= opt.customers; i++) {
    let signup = dayOf('2024-01-01', int(0, 700));
    const bad = r() < 0.01;
    if (bad) {
      signup = pick(['2025-02-30', 'yesterday', '31/12/2024']);
      d.badSignupDates++;
    }
    const row = `C${pad(i, 6)},Customer ${i},c${i}@example.com,${pick(COUNTRIES)},${signup}`;
    if (bad) quarantinedCustomers.add(`C${pad(i, 6)}`);
    cust.push(row);
    // Only clean rows are re-sent, so each defect is counted once.
    if (!bad && r() < 0.01) {
      cust.push(row);
      d.duplicateCustomers++;
    }
  }
  await emit(`${LANDING}/customers/customers.csv`, cust.join('\n') + '\n');

  // products
  const prices: string[] = [];
  const prod: string[] = ['product_id,name,category,price'];
  for (let i = 1; i <= opt.products; i++) {
    const cents = int(299, 19_999);
    prices.push(`${Math.floor(cents / 100)}.${pad(cents % 100, 2)}`);
    prod.push(`P${pad(i, 5)},Product ${i},${pick(CATEGORIES)},${prices[i - 1]}`);
  }
  await emit(`${LANDING}/products/products.csv`, prod.join('\n') + '\n');

  // orders, items and clicks, one file of each per day; one late file for an earlier day
  const perDay = Math.ceil(opt.orders / opt.days);
  const lateDay = Math.max(0, opt.days - 3);
  const late: string[] = [];
  let orderNo = 0;
  let eventNo = 0;
  for (let day = 0; day < opt.days && orderNo < opt.orders; day++) {
    const date = dayOf(opt.start, day);
    const orders: string[] = ['order_id,customer_id,order_ts,status'];
    const items: string[] = ['order_id,line_no,product_id,quantity,unit_price'];
    const clicks: string[] = [];
    for (let k = 0; k < perDay && orderNo < opt.orders; k++) {
      const id = `O${pad(++orderNo, 8)}`;
      let customer = `C${pad(int(1, opt.customers), 6)}`;
      const x = r();
      if (x < 0.005) {
        customer = '';
        d.nullCustomerOrders++;
      } else if (x < 0.01) {
        customer = `C${pad(opt.customers + int(1, 1000), 6)}`;
        d.orphanOrders++;
      }
      if (quarantinedCustomers.has(customer)) d.ordersOfQuarantinedCustomers++;
      const row = `${id},${customer},${ts(date, int(0, 86_399))},${pick(STATUSES)}`;
      const isLate = day === lateDay && r() < 0.2;
      (isLate ? late : orders).push(row);
      if (isLate) d.lateOrders++;
      if (customer && r() < 0.01) {
        (isLate ? late : orders).push(row);
        d.duplicateOrders++;
      }
      const lines = int(1, 4);
      for (let l = 1; l <= lines; l++) {
        const p = int(1, opt.products);
        let price = prices[p - 1];
        if (r() < 0.005) {
          price = pick(['N/A', '"12,50"', '']);
          d.badAmountItems++;
        }
        items.push(`${id},${l},P${pad(p, 5)},${int(1, 3)},${price}`);
      }
      for (let c = 0; c < opt.clicksPerOrder; c++) {
        const ev = JSON.stringify({
          event_id: `E${pad(++eventNo, 9)}`,
          customer_id: customer || null,
          ts: `${date}T${ts(date, int(0, 86_399)).slice(11)}Z`,
          event_type: pick(EVENTS),
          product_id: `P${pad(int(1, opt.products), 5)}`,
        });
        if (r() < 0.005) {
          clicks.push(ev.slice(0, ev.length - int(2, 12)));
          d.malformedClicks++;
        } else {
          clicks.push(ev);
          if (r() < 0.01) {
            clicks.push(ev);
            d.duplicateClicks++;
          }
        }
      }
    }
    await emit(`${LANDING}/orders/orders-${date}.csv`, orders.join('\n') + '\n');
    await emit(`${LANDING}/order_items/items-${date}.csv`, items.join('\n') + '\n');
    await emit(`${LANDING}/clickstream/clicks-${date}.jsonl`, clicks.join('\n') + '\n');
  }
  if (late.length)
    await emit(
      `${LANDING}/orders/late-orders-${dayOf(opt.start, lateDay)}.csv`,
      ['order_id,customer_id,order_ts,status', ...late].join('\n') + '\n',
    );
  // Written last: the sensor waits for it.
  await emit(`${LANDING}/_SUCCESS`, '');
  return { defects: d, options: opt };
}

async function main() {
  const { parseArgs } = await import('node:util');
  const { mkdir, writeFile } = await import('node:fs/promises');
  const path = await import('node:path');
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: '.strata/lake' },
      seed: { type: 'string' },
      orders: { type: 'string' },
      customers: { type: 'string' },
      days: { type: 'string' },
    },
  });
  const num = (v?: string) => (v === undefined ? undefined : Number(v));
  const { defects } = await generate(
    { seed: num(values.seed), orders: num(values.orders), customers: num(values.customers), days: num(values.days) },
    async (key, content) => {
      const f = path.join(values.out, key);
      await mkdir(path.dirname(f), { recursive: true });
      await writeFile(f, content);
    },
  );
  console.log(JSON.stringify(defects, null, 2));
}

if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) await main();
