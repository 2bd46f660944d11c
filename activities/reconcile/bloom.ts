/**
 * method: bloom — a quick approximate comparison in fixed memory (about 10 bits per row
 * and filter at 1%), three streaming passes and no disk:
 *
 * 1. the right side's rows (normalised key + compared values) and keys go into Bloom filters;
 * 2. each left row is looked up: a row the right filter has not got certainly differs —
 *    `changed` when its key is in the right's key filter, else `onlyLeft`; the left side's
 *    rows and keys go into filters of their own;
 * 3. each right row whose row is not in the left filter and whose key is not either is
 *    `onlyRight`.
 *
 * A reported difference is always real; a real one is missed when its row hits a false
 * positive, at the filter's rate. The filters are sized from an upper bound on the rows
 * (newlines in a CSV, Parquet's row count), so their rate for the rows they really hold is
 * at most the declared one; the result gives that rate and the expected number of
 * differences missed. Duplicate keys and per-column mismatches are not computed (they need
 * the rows themselves); tolerance is refused (hashes see exact values only).
 *
 * Built on the bloom-filters package (its filter and sizing), with a faster 2×32-bit string
 * hash for the double hashing than its default XXH64 (≈40× faster on rows of text).
 */
import { DuckDBInstance } from '@duckdb/node-api';
import bloom from 'bloom-filters';
import { open } from 'node:fs/promises';
import type { ReconcileOptions } from '../../schemas/reconcile.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { quoteLiteral } from '../sql/quote.js';
import { emptyResult, keyOf, normalizer, type Layout, type Partial } from './compare.js';
import type { Row, RowSource } from './read.js';
import type { ReconcileContext } from './client.js';
import { duckKeyUnsupported, duckUnsupported, keyExprs, sourceSql, withDuck } from './duck.js';

const { BloomFilter, Hashing } = bloom;
type Filter = InstanceType<typeof BloomFilter>;

const fmix = (x: number) => {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
};

/** Two independent 32-bit hashes of a string (FNV-1a and a multiply-xorshift), finalised with murmur3's mix. */
class FastHashing extends Hashing {
  override getIndexes(e: string | ArrayBuffer | Buffer, size: number, k: number): number[] {
    const s = typeof e === 'string' ? e : Buffer.isBuffer(e) ? e.toString() : Buffer.from(e).toString();
    let h1 = 0x811c9dc5;
    let h2 = 0x9747b28c;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    const a = fmix(h1 ^ s.length);
    const b = (fmix(h2 + 0x9e3779b9) | 1) >>> 0;
    const out = new Array<number>(k);
    for (let i = 0; i < k; i++) out[i] = (a + i * b) % size;
    return out;
  }
}

function filter(rows: number, rate: number): Filter {
  // The package rounds the number of hashes, which can put the rate a little above the one
  // asked for: ask for a little less until the filter holds `rows` at the declared rate.
  let f!: Filter;
  for (let asked = rate, i = 0; i < 20; i++, asked *= 0.97) {
    f = BloomFilter.create(Math.max(1, rows), asked);
    if (filterRate(f, rows) <= rate) break;
  }
  f._hashing = new FastHashing();
  return f;
}

/** The filter's false-positive rate holding `n` items: (1 − e^(−kn/m))^k. */
export function filterRate(f: Filter, n: number): number {
  const k = f._nbHashes;
  return Math.pow(1 - Math.exp((-k * n) / f.size), k);
}

/** An upper bound on a source's rows: a CSV's line ends + 1, a Parquet file's row count. */
async function rowBound(src: RowSource): Promise<number> {
  if (src.format === 'parquet') {
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    try {
      const r = await c.runAndReadAll(`SELECT count(*) FROM read_parquet(${quoteLiteral(src.file)})`);
      return Number(r.getRows()[0][0]);
    } finally {
      c.closeSync();
      db.closeSync();
    }
  }
  const fh = await open(src.file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    let n = 1;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (!bytesRead) return n;
      for (let at = buf.indexOf(10, 0); at >= 0 && at < bytesRead; at = buf.indexOf(10, at + 1)) n++;
    }
  } finally {
    await fh.close();
  }
}

/** A filter fed 64-bit hashes computed elsewhere (DuckDB's hash()): the two halves drive the double hashing. */
function indexes(f: Filter, lo: number, hi: number): number[] {
  const a = lo;
  const b = (hi | 1) >>> 0;
  const size = f.size;
  const out = new Array<number>(f._nbHashes);
  for (let i = 0; i < out.length; i++) out[i] = (a + i * b) % size;
  return out;
}
const bitsOf = (f: Filter) => f._filter;
/** A 64-bit hash arrives as its two 32-bit halves (numbers, not BigInts: no allocation per row). */
type H = [number, number];
function addHash(f: Filter, h: H) {
  const bits = bitsOf(f);
  for (const i of indexes(f, h[0], h[1])) bits.add(i);
}
function hasHash(f: Filter, h: H): boolean {
  const bits = bitsOf(f);
  for (const i of indexes(f, h[0], h[1])) if (!bits.has(i)) return false;
  return true;
}

/** The hash halves as DuckDB gives them (UINTEGER columns: JavaScript numbers). */
function allNumbers(rows: unknown[][]): rows is number[][] {
  for (const r of rows) for (const v of r) if (typeof v !== 'number') return false;
  return true;
}

/**
 * Each row's key hash and row hash, computed by DuckDB (its parallel reader on both cores,
 * the same normalisation as the exact DuckDB path), in chunks.
 */
async function* duckHashes(
  ctx: ReconcileContext,
  src: RowSource,
  key: number[],
  cols: number[],
  o: ReconcileOptions,
): AsyncGenerator<number[][]> {
  const k = keyExprs(key, o);
  const v = keyExprs(cols, o);
  const kh = k.length ? `hash(row(${k.join(', ')}))` : '0::UBIGINT';
  const rh = `hash(row(${[...k, "'\u0002'", ...v].join(', ')}))`;
  const queue: number[][][] = [];
  let done = false;
  let error: Error | undefined;
  let wake: (() => void) | undefined;
  // DuckDB streams into a small queue the generator drains (bounded: it waits when full).
  const producer = withDuck(ctx, [src.file], async (d) => {
    const halves = (e: string) => `(${e} & 4294967295::UBIGINT)::UINTEGER, (${e} >> 32)::UINTEGER`;
    const res = await d.conn.stream(
      `SELECT ${halves('kh')}, ${halves('rh')} FROM (SELECT ${kh} AS kh, ${rh} AS rh FROM (${sourceSql(src)}) s) h`,
    );
    for (;;) {
      const chunk = await res.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      const rows = chunk.getRows();
      if (!allNumbers(rows)) throw new Error('DuckDB gave a hash that is not a 32-bit number');
      queue.push(rows);
      wake?.();
      while (queue.length > 8) await new Promise<void>((r) => setTimeout(r, 1));
    }
  })
    .catch((e: unknown) => (error = e instanceof Error ? e : new Error(String(e))))
    .finally(() => {
      done = true;
      wake?.();
    });
  for (;;) {
    if (queue.length) {
      const next = queue.shift();
      if (next) yield next;
      continue;
    }
    if (error) throw error;
    if (done) break;
    await new Promise<void>((r) => (wake = r));
    wake = undefined;
  }
  await producer;
  // Set by the producer's catch, which control-flow analysis does not see.
  const failed: unknown = error;
  if (failed instanceof Error) throw failed;
}

export interface BloomOutcome extends Partial {
  approximate: NonNullable<import('../../schemas/reconcile.js').ReconcileResult['approximate']>;
}

export async function bloomCompare(
  left: RowSource,
  right: RowSource,
  l: Layout,
  o: ReconcileOptions,
  ctx: ReconcileContext,
): Promise<BloomOutcome> {
  if (o.tolerance > 0)
    throw new NonRetryableError(
      'method bloom compares exact values (hashes): remove tolerance, or use method exact',
      'BadInput',
    );
  const norm = normalizer(o);
  const keyed = l.keyNames.length > 0;
  const fp = (row: Row, key: number[], cols: number[]) => keyOf(row, key, norm) + '\u0002' + keyOf(row, cols, norm);
  const [nL, nR] = await Promise.all([rowBound(left), rowBound(right)]);
  const rate = o.falsePositiveRate;
  const rRows = filter(nR, rate);
  const rKeys = keyed ? filter(nR, rate) : undefined;
  // A right-only row is missed when either left filter answers falsely: half the rate each.
  const lRows = filter(nL, keyed ? rate / 2 : rate);
  const lKeys = keyed ? filter(nL, rate / 2) : undefined;
  const r = emptyResult();
  r.exact = false;
  const c = r.counts;
  // Hashes from DuckDB when it reads the inputs exactly as Strata does (as on the exact
  // DuckDB path); else rows through Strata's readers, hashed here.
  const hashed =
    !duckKeyUnsupported(o) && !(await duckUnsupported(left)) && !(await duckUnsupported(right)) && ctx.workDir;
  if (hashed) {
    const lk = keyed ? l.left.key : l.left.cols;
    const rk = keyed ? l.right.key : l.right.cols;
    for await (const chunk of duckHashes(ctx, right, rk, l.right.cols, o))
      for (const [k0, k1, r0, r1] of chunk) {
        const kh: H = [k0, k1];
        const rh: H = [r0, r1];
        addHash(rRows, rh);
        if (rKeys) addHash(rKeys, kh);
        c.right++;
      }
    ctx.onProgress?.({ phase: 'partition-right', rows: c.right, bytes: right.size });
    for await (const chunk of duckHashes(ctx, left, lk, l.left.cols, o))
      for (const [k0, k1, r0, r1] of chunk) {
        const kh: H = [k0, k1];
        const rh: H = [r0, r1];
        addHash(lRows, rh);
        if (lKeys) addHash(lKeys, kh);
        c.left++;
        if (hasHash(rRows, rh)) c.matched++;
        else if (rKeys && hasHash(rKeys, kh)) c.changed++;
        else c.onlyLeft++;
      }
    ctx.onProgress?.({ phase: 'partition-left', rows: c.left + c.right, bytes: right.size + left.size });
    for await (const chunk of duckHashes(ctx, right, rk, l.right.cols, o))
      for (const [k0, k1, r0, r1] of chunk) {
        if (hasHash(lRows, [r0, r1]) || (lKeys && hasHash(lKeys, [k0, k1]))) continue;
        c.onlyRight++;
      }
    if (ctx.signal?.aborted) throw ctx.signal.reason ?? new Error('cancelled');
    return finish();
  }
  let seen = 0;
  const tick = (phase: 'partition-left' | 'partition-right' | 'compare', bytes: number) => {
    if (++seen % 100_000 !== 0) return;
    if (ctx.signal?.aborted) throw ctx.signal.reason ?? new Error('cancelled');
    ctx.onProgress?.({ phase, rows: seen, bytes });
  };
  const sample = (kind: 'onlyLeft' | 'onlyRight', row: Row, side: 'left' | 'right') => {
    const s = r.samples[kind];
    if (s.length >= o.sampleLimit) return;
    const h = l[side].header;
    s.push({
      key: Object.fromEntries(l.keyNames.map((n, i) => [n, row[l[side].key[i]] ?? null])),
      row: Object.fromEntries(h.map((n, i) => [n, row[i] ?? null])),
    });
  };
  // 1. The right side into its filters.
  for await (const row of right.rows()) {
    rRows.add(fp(row, l.right.key, l.right.cols));
    if (rKeys) rKeys.add(keyOf(row, l.right.key, norm));
    c.right++;
    tick('partition-right', right.bytesRead());
  }
  // 2. The left side against them, and into its own.
  for await (const row of left.rows()) {
    const f = fp(row, l.left.key, l.left.cols);
    lRows.add(f);
    const k = keyed ? keyOf(row, l.left.key, norm) : '';
    if (lKeys) lKeys.add(k);
    c.left++;
    if (rRows.has(f)) c.matched++;
    else if (rKeys?.has(k)) c.changed++;
    else {
      c.onlyLeft++;
      sample('onlyLeft', row, 'left');
    }
    tick('partition-left', right.size + left.bytesRead());
  }
  // 3. The right side against the left's filters: rows whose key the left has not got.
  for await (const row of right.rows()) {
    tick('compare', right.size + left.size + right.bytesRead());
    if (lRows.has(fp(row, l.right.key, l.right.cols))) continue;
    if (lKeys?.has(keyOf(row, l.right.key, norm))) continue;
    c.onlyRight++;
    sample('onlyRight', row, 'right');
  }
  return finish();

  function finish(): BloomOutcome {
    const rateR = filterRate(rRows, c.right);
    const rateL = 1 - (1 - filterRate(lRows, c.left)) * (lKeys ? 1 - filterRate(lKeys, c.left) : 1);
    // A left difference slips through the right filter at rateR (and a right-only row through
    // the left's two at rateL): of D real ones, D·(1−rate) are seen, so ≈ seen·rate/(1−rate) are missed.
    const missed = ((c.changed + c.onlyLeft) * rateR) / (1 - rateR) + (c.onlyRight * rateL) / (1 - rateL);
    return {
      ...r,
      approximate: {
        declaredRate: rate,
        falsePositiveRate: Number(Math.max(rateL, rateR).toPrecision(3)),
        expectedMissed: Math.round(missed * 10) / 10,
        notComputed: hashed
          ? ['duplicates', 'columnMismatches', 'samples']
          : ['duplicates', 'columnMismatches', 'samples.changed'],
      },
    };
  }
}
