/**
 * The exact comparison of rows grouped by key. Both paths (in memory, and partition by
 * partition) feed groups through the same Tally, so they cannot disagree.
 */
import type { ReconcileOptions, ReconcileResult } from '../../schemas/reconcile.js';
import { NonRetryableError } from '../../schemas/errors.js';
import type { Row } from './read.js';

export interface Layout {
  keyNames: string[];
  compared: string[];
  left: { key: number[]; cols: number[]; header: string[] };
  right: { key: number[]; cols: number[]; header: string[] };
  onlyLeft: string[];
  onlyRight: string[];
}

export function layout(leftHeader: string[], rightHeader: string[], o: ReconcileOptions): Layout {
  const idx = (h: string[], side: string) => (name: string) => {
    const i = h.indexOf(name);
    if (i < 0)
      throw new NonRetryableError(`column "${name}" is not in the ${side} dataset: it has ${h.join(', ')}`, 'BadInput');
    return i;
  };
  const both = leftHeader.filter((c) => rightHeader.includes(c));
  const ignore = new Set([...o.ignore, ...o.key]);
  const compared = (o.columns ?? both).filter((c) => !ignore.has(c));
  return {
    keyNames: o.key,
    compared,
    left: { key: o.key.map(idx(leftHeader, 'left')), cols: compared.map(idx(leftHeader, 'left')), header: leftHeader },
    right: {
      key: o.key.map(idx(rightHeader, 'right')),
      cols: compared.map(idx(rightHeader, 'right')),
      header: rightHeader,
    },
    onlyLeft: leftHeader.filter((c) => !rightHeader.includes(c)),
    onlyRight: rightHeader.filter((c) => !leftHeader.includes(c)),
  };
}

export type Normalize = (v: string | null | undefined) => string | null;

export function normalizer(o: ReconcileOptions): Normalize {
  const nulls = new Set(o.nullValues);
  return (v) => {
    if (v === null || v === undefined) return null;
    let s = o.trim ? v.trim() : v;
    if (nulls.has(s)) return null;
    if (o.caseInsensitive) s = s.toLowerCase();
    return s;
  };
}

const SEP = '\u0000';
const NULL = '\u0001';

/** The grouping key of a row: its normalised key values, or the whole compared row. */
export function keyOf(row: Row, idx: number[], norm: Normalize): string {
  let k = '';
  for (let i = 0; i < idx.length; i++) {
    const v = norm(row[idx[i]]);
    k += (i ? SEP : '') + (v === null ? NULL : v);
  }
  return k;
}

export function emptyResult(): Omit<ReconcileResult, 'method' | 'reason' | 'columns'> {
  return {
    exact: true,
    counts: { left: 0, right: 0, matched: 0, changed: 0, onlyLeft: 0, onlyRight: 0 },
    columnMismatches: {},
    duplicates: { left: { keys: 0, rows: 0, samples: [] }, right: { keys: 0, rows: 0, samples: [] } },
    samples: { onlyLeft: [], onlyRight: [], changed: [] },
  };
}
export type Partial = ReturnType<typeof emptyResult>;

/**
 * One difference, as the differences dataset holds it: a changed key gives one record per
 * differing column (`column`, `left`, `right`), a one-sided row its whole `row`, a
 * duplicated key its `count` of rows on that side.
 */
export interface DiffRecord {
  kind: 'changed' | 'only_left' | 'only_right' | 'duplicate_left' | 'duplicate_right';
  key: Record<string, string | null>;
  column?: string;
  left?: string | null;
  right?: string | null;
  row?: Record<string, string | null>;
  count?: number;
}

export class Tally {
  readonly r: Partial;
  /** Receives every difference (the full lists), when the comparison writes them. */
  sink?: (d: DiffRecord) => void;
  private readonly norm: Normalize;
  private readonly wholeRow: boolean;
  constructor(
    private readonly l: Layout,
    private readonly o: ReconcileOptions,
    initial?: Partial,
  ) {
    this.r = initial ?? emptyResult();
    this.norm = normalizer(o);
    this.wholeRow = l.keyNames.length === 0;
  }

  /** One row on each side, known equal (identical lines): what group() would conclude, without comparing. */
  matchedPair() {
    this.matchedPairs(1);
  }

  /** `n` keys with one row a side, known equal. */
  matchedPairs(n: number) {
    this.r.counts.left += n;
    this.r.counts.right += n;
    this.r.counts.matched += n;
  }

  /** Rows of one key on each side (either may be empty). */
  group(left: Row[], right: Row[]) {
    const c = this.r.counts;
    c.left += left.length;
    c.right += right.length;
    if (!this.wholeRow) {
      this.dup('left', left);
      this.dup('right', right);
    }
    if (left.length === 1 && right.length === 1) {
      const diffs = this.diff(left[0], right[0]);
      if (!diffs) c.matched++;
      else this.changed(left[0], diffs);
      return;
    }
    // Duplicates (or whole-row multisets): pair equal rows first, then the rest, in a
    // canonical order (by content), so the answer does not depend on the order rows are
    // read in — which differs between the paths.
    const restR = canonical(right);
    const restL: Row[] = [];
    for (const lr of canonical(left)) {
      const j = restR.findIndex((rr) => !this.diff(lr, rr, true));
      if (j >= 0) {
        restR.splice(j, 1);
        c.matched++;
      } else restL.push(lr);
    }
    const pairs = this.wholeRow ? 0 : Math.min(restL.length, restR.length);
    for (let i = 0; i < pairs; i++) {
      // Not equal (equal rows were paired above), so diff finds a differing column.
      const d = this.diff(restL[i], restR[i]);
      if (d) this.changed(restL[i], d);
      else c.matched++;
    }
    for (const lr of restL.slice(pairs)) this.only('onlyLeft', lr, 'left');
    for (const rr of restR.slice(pairs)) this.only('onlyRight', rr, 'right');
  }

  private dup(side: 'left' | 'right', rows: Row[]) {
    if (rows.length < 2) return;
    const d = this.r.duplicates[side];
    d.keys++;
    d.rows += rows.length - 1;
    if (d.samples.length >= this.o.sampleLimit && !this.sink) return;
    // The key as the key's canonically first row writes it (rows of one key may differ in case or spaces).
    const key = this.keyRecord(canonical(rows)[0], side);
    if (d.samples.length < this.o.sampleLimit) d.samples.push(key);
    this.sink?.({ kind: side === 'left' ? 'duplicate_left' : 'duplicate_right', key, count: rows.length });
  }

  private keyRecord(row: Row, side: 'left' | 'right'): Record<string, string | null> {
    const s = this.l[side];
    const out: Record<string, string | null> = {};
    this.l.keyNames.forEach((n, i) => (out[n] = row[s.key[i]] ?? null));
    return out;
  }

  private only(kind: 'onlyLeft' | 'onlyRight', row: Row, side: 'left' | 'right') {
    this.r.counts[kind]++;
    const samples = this.r.samples[kind];
    if (samples.length < this.o.sampleLimit || this.sink) {
      const h = this.l[side].header;
      const rec = { key: this.keyRecord(row, side), row: Object.fromEntries(h.map((n, i) => [n, row[i] ?? null])) };
      if (samples.length < this.o.sampleLimit) samples.push(rec);
      this.sink?.({ kind: kind === 'onlyLeft' ? 'only_left' : 'only_right', ...rec });
    }
  }

  private changed(left: Row, diffs: Record<string, { left: string | null; right: string | null }>) {
    this.r.counts.changed++;
    for (const col of Object.keys(diffs)) this.r.columnMismatches[col] = (this.r.columnMismatches[col] ?? 0) + 1;
    if (this.r.samples.changed.length < this.o.sampleLimit)
      this.r.samples.changed.push({ key: this.keyRecord(left, 'left'), diffs });
    if (this.sink) {
      const key = this.keyRecord(left, 'left');
      for (const [column, d] of Object.entries(diffs)) this.sink({ kind: 'changed', key, column, ...d });
    }
  }

  /** Differing compared columns, or null when the rows are equal. */
  private diff(
    a: Row,
    b: Row,
    firstOnly = false,
  ): Record<string, { left: string | null; right: string | null }> | null {
    let out: Record<string, { left: string | null; right: string | null }> | null = null;
    const L = this.l.left.cols;
    const R = this.l.right.cols;
    for (let i = 0; i < L.length; i++) {
      const x = this.norm(a[L[i]]);
      const y = this.norm(b[R[i]]);
      if (x === y) continue;
      if (x !== null && y !== null && this.o.tolerance > 0) {
        const nx = Number(x);
        const ny = Number(y);
        if (
          x.trim() !== '' &&
          y.trim() !== '' &&
          Number.isFinite(nx) &&
          Number.isFinite(ny) &&
          Math.abs(nx - ny) <= this.o.tolerance + 1e-12
        )
          continue;
      }
      out ??= {};
      out[this.l.compared[i]] = { left: a[L[i]] ?? null, right: b[R[i]] ?? null };
      if (firstOnly) return out;
    }
    return out;
  }
}

/**
 * Rows in the canonical order: by their raw values joined by U+001F (a missing value as
 * U+0001), compared as UTF-8 bytes, which is how Spark and DuckDB order text: the SQL of
 * `engine: spark` (spark-sql.ts) orders rows the same way, so both pair the same rows.
 */
function canonical(rows: Row[]): Row[] {
  if (rows.length < 2) return [...rows];
  return rows
    .map((r) => [Buffer.from(r.map((v) => v ?? '\u0001').join('\u001f')), r] as const)
    .sort((a, b) => Buffer.compare(a[0], b[0]))
    .map((x) => x[1]);
}

/** Adds a partition's partial result into the running total (samples stay bounded). */
export function mergeInto(total: Partial, part: Partial, limit: number) {
  for (const k of ['left', 'right', 'matched', 'changed', 'onlyLeft', 'onlyRight'] as const)
    total.counts[k] += part.counts[k];
  for (const [c, n] of Object.entries(part.columnMismatches))
    total.columnMismatches[c] = (total.columnMismatches[c] ?? 0) + n;
  for (const side of ['left', 'right'] as const) {
    total.duplicates[side].keys += part.duplicates[side].keys;
    total.duplicates[side].rows += part.duplicates[side].rows;
    total.duplicates[side].samples.push(
      ...part.duplicates[side].samples.slice(0, limit - total.duplicates[side].samples.length),
    );
  }
  const s = total.samples;
  s.onlyLeft.push(...part.samples.onlyLeft.slice(0, limit - s.onlyLeft.length));
  s.onlyRight.push(...part.samples.onlyRight.slice(0, limit - s.onlyRight.length));
  s.changed.push(...part.samples.changed.slice(0, limit - s.changed.length));
}
