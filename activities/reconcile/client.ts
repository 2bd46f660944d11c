/**
 * Exact reconciliation of two datasets with bounded memory.
 * - Small inputs: both sides grouped by key in memory.
 * - Large inputs: both sides are streamed once into N partition files by key hash, then
 *   compared partition by partition; memory is bounded by the largest partition.
 * Either way every row is compared exactly. The partitioned path checkpoints after each
 * partitioning pass and each compared partition, and resumes from a checkpoint.
 */
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DatasetRef, ReconcileOptions, ReconcileProgress, ReconcileResult } from '../../schemas/reconcile.js';
import { emptyResult, keyOf, layout, mergeInto, normalizer, Tally, type Layout, type Partial } from './compare.js';
import { openSource, type Row, type RowSource } from './read.js';
import {
  OnePassOutOfMemory,
  duckKeyUnsupported,
  duckOnePass,
  duckPartitioned,
  duckUnsupported,
  estimateRows,
} from './duck.js';
import { bloomCompare } from './bloom.js';
import type { DiffWriter } from './diffs.js';
import { isRecord } from '../../schemas/guards.js';

/** What the reconcile activity heartbeats: where to resume, and progress for the API. */
export interface ReconcileHeartbeat {
  checkpoint?: Checkpoint;
  progress?: ReconcileProgress;
  resumedFrom?: { compared: number; leftDone: boolean; rightDone: boolean };
  /** The dataset versions the comparison read, so a resumed attempt reads the same ones. */
  pinned?: { left?: string; right?: string; namespace?: { left?: string; right?: string } };
}

/**
 * What a previous attempt heartbeated, checked: its checkpoint's fields are looked at (a
 * malformed one is not resumed from), the partial result is the attempt's own.
 */
export function isReconcileHeartbeat(v: unknown): v is ReconcileHeartbeat {
  if (!isRecord(v)) return false;
  const c = v.checkpoint;
  return (
    c === undefined ||
    (isRecord(c) &&
      (c.version === 3 || c.version === 4) &&
      typeof c.workDir === 'string' &&
      typeof c.partitions === 'number' &&
      typeof c.leftDone === 'boolean' &&
      typeof c.rightDone === 'boolean' &&
      Array.isArray(c.compared) &&
      c.compared.every((p) => typeof p === 'number') &&
      isRecord(c.partial) &&
      isRecord(c.partial.counts))
  );
}

export interface Checkpoint {
  /**
   * 3: the streaming partitioner's (partition lines carry their group key: `key GS row` or
   * `key FS raw line`); 4: DuckDB's partitioned path's (CSV partition files). Each path
   * resumes only its own version.
   */
  version: 3 | 4;
  workDir: string;
  partitions: number;
  leftDone: boolean;
  rightDone: boolean;
  compared: number[];
  partial: Partial;
}

export interface ReconcileContext {
  /** The folder relative inputs resolve in (a tenant's own), and the only one readable besides `allowed`. */
  lakeRoot: string;
  /** file:// locations outside it the tenant may read. */
  allowed?: readonly string[];
  /** Where partition files go; the same folder must be given to resume. */
  workDir: string;
  checkpoint?: Checkpoint;
  onProgress?: (p: ReconcileProgress) => void;
  onCheckpoint?: (c: Checkpoint) => void;
  signal?: AbortSignal;
  /**
   * Where the full lists of differences go, one writer per compared partition (0 in
   * memory); a partition's writer is closed before its checkpoint, so a resumed comparison
   * keeps the lists of partitions already compared.
   */
  diffs?: (partition: number) => DiffWriter;
  /**
   * Test seam (like the lake's `faults`): awaited after each compared partition is
   * checkpointed (on DuckDB's one-pass path, once, after the settled keys are counted).
   */
  afterPartition?: (partitionsDone: number) => void | Promise<void>;
}

// Live memory while comparing is roughly parallelism × 8 × this (rows as JS strings).
const TARGET_PARTITION_BYTES = 4 * 1024 * 1024;
// The DuckDB path holds one partition of each side in DuckDB (within its memory limit): at
// most this much input, and at most this many rows (a join's memory grows with its rows, and
// Parquet's bytes on disk say little about them).
const DUCK_PARTITION_BYTES = 32 * 1024 * 1024;
const DUCK_PARTITION_ROWS = 480_000;

/** DuckDB's strict reader refusing a malformed CSV (the streaming path then reads it and reports the exact line). */
const DUCK_CSV_ERROR = /CSV Error|state machine|Invalid Input Error: .*CSV/i;

export async function reconcile(
  leftRef: DatasetRef,
  rightRef: DatasetRef,
  options: ReconcileOptions,
  ctx: ReconcileContext,
): Promise<ReconcileResult> {
  const [left, right] = await Promise.all([
    openSource(leftRef, ctx.lakeRoot, ctx.allowed),
    openSource(rightRef, ctx.lakeRoot, ctx.allowed),
  ]);
  const l = layout(left.header, right.header, options);
  const total = left.size + right.size;
  const columns = { compared: l.compared, onlyLeft: l.onlyLeft, onlyRight: l.onlyRight };
  if (options.method === 'bloom') {
    const r = await bloomCompare(left, right, l, options, ctx);
    return {
      method: 'bloom',
      reason: `method bloom asked for: approximate, each difference missed at a rate of at most ${options.falsePositiveRate} (filters' rate for these rows ${r.approximate.falsePositiveRate}); reported differences are real`,
      columns,
      ...r,
    };
  }
  if (total <= options.memoryLimitBytes && !options.partitions && !ctx.checkpoint) {
    const r = await inMemory(left, right, l, options, ctx);
    return {
      method: 'memory',
      reason: `inputs total ${total} bytes, within the in-memory limit of ${options.memoryLimitBytes}`,
      columns,
      ...r,
    };
  }
  // The DuckDB path when both inputs and the options allow it (and a checkpoint, if any, is its own).
  const cpVersion = ctx.checkpoint?.version;
  const notDuck =
    options.engine === 'stream'
      ? 'engine stream requested'
      : (duckKeyUnsupported(options) ?? (await duckUnsupported(left)) ?? (await duckUnsupported(right)));
  let fallback = notDuck;
  let onePassOut: string | undefined;
  if (!notDuck && !options.partitions && !ctx.checkpoint) {
    const r = await duckOnePass(left, right, l, options, ctx).catch(async (e: Error) => {
      // A malformed CSV goes to the streaming reader (below); running out of DuckDB's memory
      // (its spill has limits) to the partitioned path, whose partitions are small.
      const oom = e instanceof OnePassOutOfMemory;
      if (!oom && !DUCK_CSV_ERROR.test(e.message)) throw e;
      await rm(ctx.workDir, { recursive: true, force: true });
      return oom ? ('oom' as const) : undefined;
    });
    if (r === 'oom') onePassOut = "DuckDB's one pass ran out of memory";
    else if (!r) fallback = 'DuckDB refused an input as malformed CSV';
    else
      return {
        method: 'duckdb',
        reason:
          `inputs total ${total} bytes` +
          `${total > options.memoryLimitBytes ? `, above the in-memory limit of ${options.memoryLimitBytes}` : ''}: ` +
          `DuckDB counted each key's rows on both sides and settled the keys with one row a side whose compared values have ` +
          `the same digest (MD5 under a key drawn for this comparison), in bounded memory; the rows of every other key were compared exactly in Strata`,
        columns,
        ...r,
      };
  }
  if (!notDuck && !fallback && cpVersion !== 3) {
    const rows = (await estimateRows(left)) + (await estimateRows(right));
    const partitions =
      ctx.checkpoint?.partitions ??
      options.partitions ??
      Math.max(2, Math.ceil(total / DUCK_PARTITION_BYTES), Math.ceil(rows / DUCK_PARTITION_ROWS));
    const r = await duckPartitioned(left, right, l, options, ctx, partitions).catch(async (e: Error) => {
      // DuckDB's strict reader refuses a malformed file (ragged rows, text after a closing
      // quote, …): the streaming path reads it and reports the exact line, as it always has.
      if (!DUCK_CSV_ERROR.test(e.message)) throw e;
      await rm(ctx.workDir, { recursive: true, force: true });
      return undefined;
    });
    if (!r) {
      fallback = 'DuckDB refused an input as malformed CSV';
      ctx.checkpoint = undefined;
    } else
      return {
        method: 'duckdb',
        reason:
          `inputs total ${total} bytes` +
          `${total > options.memoryLimitBytes ? `, above the in-memory limit of ${options.memoryLimitBytes}` : ''}: ` +
          `DuckDB hashed both sides into ${partitions} partitions on disk and compared them one by one in bounded memory; ` +
          `rows not byte-for-byte equal were compared exactly in Strata` +
          (onePassOut ? ` (${onePassOut})` : ''),
        columns,
        partitions,
        ...r,
      };
  }
  const partitions =
    ctx.checkpoint?.partitions ?? options.partitions ?? Math.max(2, Math.ceil(total / TARGET_PARTITION_BYTES));
  const r = await partitioned(left, right, l, options, ctx, partitions);
  return {
    method: 'partitioned',
    reason:
      (options.partitions && total <= options.memoryLimitBytes
        ? `${options.partitions} partitions requested`
        : `inputs total ${total} bytes, above the in-memory limit of ${options.memoryLimitBytes}: ` +
          `hashed into ${partitions} partitions on disk`) +
      (fallback ? ` by the streaming partitioner (${fallback})` : ''),
    columns,
    partitions,
    ...r,
  };
}

function check(signal?: AbortSignal) {
  if (signal?.aborted) throw signal.reason ?? new Error('cancelled');
}

async function inMemory(
  left: RowSource,
  right: RowSource,
  l: Layout,
  o: ReconcileOptions,
  ctx: ReconcileContext,
): Promise<Partial> {
  const norm = normalizer(o);
  const groups = new Map<string, { l: Row[]; r: Row[] }>();
  const keyL = l.keyNames.length ? l.left.key : l.left.cols;
  const keyR = l.keyNames.length ? l.right.key : l.right.cols;
  let rows = 0;
  for await (const row of left.rows()) {
    const k = keyOf(row, keyL, norm);
    const g = groups.get(k);
    if (g) g.l.push(row);
    else groups.set(k, { l: [row], r: [] });
    if (++rows % 50_000 === 0) {
      check(ctx.signal);
      ctx.onProgress?.({ phase: 'reading', rows, bytes: left.bytesRead() });
    }
  }
  for await (const row of right.rows()) {
    const k = keyOf(row, keyR, norm);
    const g = groups.get(k);
    if (g) g.r.push(row);
    else groups.set(k, { l: [], r: [row] });
    if (++rows % 50_000 === 0) {
      check(ctx.signal);
      ctx.onProgress?.({ phase: 'reading', rows, bytes: left.size + right.bytesRead() });
    }
  }
  const t = new Tally(l, o);
  const w = ctx.diffs?.(0);
  if (w) t.sink = w.write;
  for (const g of groups.values()) t.group(g.l, g.r);
  await w?.close();
  ctx.onProgress?.({ phase: 'done', rows, bytes: left.size + right.size });
  return t.r;
}

/** FNV-1a over the key string: fast, stable, well spread. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const partFile = (dir: string, side: 'l' | 'r', p: number) => path.join(dir, `${side}-${p}.jsonl`);

async function partitionSide(
  src: RowSource,
  side: 'l' | 'r',
  keyIdx: number[],
  o: ReconcileOptions,
  n: number,
  ctx: ReconcileContext,
  base: number,
) {
  const norm = normalizer(o);
  const outs: WriteStream[] = [];
  const bufs: string[][] = [];
  const sizes: number[] = [];
  for (let p = 0; p < n; p++) {
    outs.push(createWriteStream(partFile(ctx.workDir, side, p), { flags: 'w' }));
    bufs.push([]);
    sizes.push(0);
  }
  const flush = async (p: number) => {
    const data = bufs[p].join('');
    bufs[p] = [];
    sizes[p] = 0;
    if (!outs[p].write(data)) await new Promise<void>((r) => outs[p].once('drain', () => r()));
  };
  // All partitions' buffers together stay under ~8 MB, however many partitions there are.
  const flushAt = Math.max(8 * 1024, Math.min(256 * 1024, Math.floor((8 * 1024 * 1024) / n)));
  let rows = 0;
  // Quote-free CSV records arrive as raw lines: only the key fields are cut out, and the
  // line goes to its partition as it is.
  const d = src.delimiter ?? ',';
  const keyOfLine = keyFromLine(keyIdx, d, norm);
  const batches: AsyncIterable<(string | Row)[]> = src.lines ? src.lines() : inBatches(src.rows());
  for await (const batch of batches) {
    for (const rec of batch) {
      let key: string;
      let line: string;
      if (typeof rec === 'string') {
        key = keyOfLine(rec);
        line = NEEDS_JSON_RAW.test(rec) || NEEDS_JSON.test(key) ? encodeLine(key, rec.split(d)) : key + FS + rec + '\n';
      } else {
        key = keyOf(rec, keyIdx, norm);
        line = encodeLine(key, rec);
      }
      const p = hash(key) % n;
      bufs[p].push(line);
      sizes[p] += line.length;
      if (sizes[p] > flushAt) await flush(p);
      if (++rows % 100_000 === 0) {
        check(ctx.signal);
        ctx.onProgress?.({
          phase: side === 'l' ? 'partition-left' : 'partition-right',
          rows,
          bytes: base + src.bytesRead(),
          partitions: n,
        });
      }
    }
  }
  for (let p = 0; p < n; p++) await flush(p);
  await Promise.all(
    outs.map((s) => new Promise<void>((res, rej) => s.end((e?: Error | null) => (e ? rej(e) : res())))),
  );
}

/**
 * Partition lines: the row's group key, then U+001D and its fields joined by U+001F (the
 * cheapest form to split again), or U+001C and the raw CSV line when it had no quote
 * (split by the file's delimiter). A line whose key or values hold a newline, a
 * separator or a null is written as U+001E + JSON [key, row]. Keeping the key in front
 * lets the compare phase group rows without splitting them, and pass a one-to-one pair
 * whose lines are identical (same columns on both sides) as matched without splitting.
 */
const US = '\u001f';
const RS = '\u001e';
const GS = '\u001d';
const FS = '\u001c';
// eslint-disable-next-line no-control-regex -- the ASCII separators are this encoding's delimiters
const NEEDS_JSON = /[\n\u001c\u001d\u001e\u001f]/;
// eslint-disable-next-line no-control-regex -- as above
const NEEDS_JSON_RAW = /[\u001c\u001d\u001e\u001f]/;
function encodeLine(key: string, row: Row): string {
  if (isStrings(row) && !NEEDS_JSON.test(key) && !NEEDS_JSON.test(row.join(''))) return key + GS + row.join(US) + '\n';
  return RS + JSON.stringify([key, row]) + '\n';
}

function isStrings(row: Row): row is string[] {
  return !row.includes(null);
}

/** A U+001E partition line's JSON: [key, row]. */
function isKeyRow(v: unknown): v is [string, Row] {
  return (
    Array.isArray(v) &&
    v.length === 2 &&
    typeof v[0] === 'string' &&
    Array.isArray(v[1]) &&
    v[1].every((x: unknown) => x === null || typeof x === 'string')
  );
}

async function* inBatches(rows: AsyncIterable<Row>): AsyncGenerator<Row[]> {
  for await (const r of rows) yield [r];
}

/** keyOf for a raw line: cuts out only the key fields. */
function keyFromLine(keyIdx: number[], d: string, norm: ReturnType<typeof normalizer>): (line: string) => string {
  const want = Math.max(-1, ...keyIdx);
  const starts: number[] = [];
  const ends: number[] = [];
  return (line) => {
    let s = 0;
    for (let f = 0; f <= want; f++) {
      const e = line.indexOf(d, s);
      starts[f] = s;
      ends[f] = e < 0 ? line.length : e;
      s = ends[f] + d.length;
    }
    const row: Row = [];
    for (const i of keyIdx) row[i] = line.slice(starts[i], ends[i]);
    return keyOf(row, keyIdx, norm);
  };
}

/** A partition file read back: group keys, and each line's body (decoded to a row on demand). */
interface Part {
  keys: string[];
  /** From the separator on: U+001D + fields joined by U+001F, U+001C + the raw CSV line, or U+001E (see decoded). */
  bodies: string[];
  /** The file's delimiter, for raw lines. */
  delimiter: string;
  /** Rows of JSON lines, decoded while reading. */
  decoded: Map<number, Row>;
}

async function readPart(file: string, delimiter: string): Promise<Part> {
  const part: Part = { keys: [], bodies: [], delimiter, decoded: new Map() };
  if (!existsSync(file)) return part;
  // A partition is small by construction (see TARGET_PARTITION_BYTES): read it whole.
  const text = await readFile(file, 'utf8');
  let at = 0;
  for (let nl = text.indexOf('\n', at); nl >= 0; at = nl + 1, nl = text.indexOf('\n', at)) {
    if (text.charCodeAt(at) === 0x1e) {
      const decoded: unknown = JSON.parse(text.slice(at + 1, nl));
      if (!isKeyRow(decoded))
        throw new Error(`${path.basename(file)}: a partition line that is not [key, row] (the work folder is damaged)`);
      const [key, row] = decoded;
      part.decoded.set(part.keys.length, row);
      part.keys.push(key);
      part.bodies.push(RS);
    } else {
      let sep = at;
      for (let c = text.charCodeAt(sep); c !== 0x1c && c !== 0x1d; c = text.charCodeAt(++sep))
        if (sep >= nl)
          throw new Error(`${path.basename(file)}: a partition line without a separator (the work folder is damaged)`);
      part.keys.push(text.slice(at, sep));
      part.bodies.push(text.slice(sep, nl));
    }
  }
  return part;
}

function rowOf(part: Part, i: number): Row {
  const json = part.decoded.get(i);
  if (json) return json;
  const b = part.bodies[i];
  return b.slice(1).split(b.charCodeAt(0) === 0x1c ? part.delimiter : US);
}

/**
 * Compares one partition: rows grouped by key, each group through the Tally. With the same
 * columns in the same order on both sides, a one-to-one pair of identical lines is equal
 * under any normalisation, so it counts as matched without being split.
 */
function comparePart(t: Tally, lp: Part, rp: Part, sameColumns: boolean) {
  const index = (p: Part) => {
    const m = new Map<string, number | number[]>();
    for (let i = 0; i < p.keys.length; i++) {
      const prev = m.get(p.keys[i]);
      if (prev === undefined) m.set(p.keys[i], i);
      else if (typeof prev === 'number') m.set(p.keys[i], [prev, i]);
      else prev.push(i);
    }
    return m;
  };
  const li = index(lp);
  const ri = index(rp);
  const rows = (p: Part, x: number | number[] | undefined): Row[] =>
    x === undefined ? [] : typeof x === 'number' ? [rowOf(p, x)] : x.map((i) => rowOf(p, i));
  for (const [key, l] of li) {
    const r = ri.get(key);
    if (r !== undefined) ri.delete(key);
    if (
      sameColumns &&
      typeof l === 'number' &&
      typeof r === 'number' &&
      lp.bodies[l] !== RS &&
      lp.bodies[l] === rp.bodies[r] &&
      (lp.bodies[l].charCodeAt(0) !== 0x1c || lp.delimiter === rp.delimiter)
    )
      t.matchedPair();
    else t.group(rows(lp, l), rows(rp, r));
  }
  for (const r of ri.values()) t.group([], rows(rp, r));
}

async function partitioned(
  left: RowSource,
  right: RowSource,
  l: Layout,
  o: ReconcileOptions,
  ctx: ReconcileContext,
  n: number,
): Promise<Partial> {
  const cp: Checkpoint =
    ctx.checkpoint &&
    ctx.checkpoint.version === 3 &&
    ctx.checkpoint.workDir === ctx.workDir &&
    partsExist(ctx.workDir, ctx.checkpoint)
      ? structuredClone(ctx.checkpoint)
      : {
          version: 3,
          workDir: ctx.workDir,
          partitions: n,
          leftDone: false,
          rightDone: false,
          compared: [],
          partial: emptyResult(),
        };
  await mkdir(ctx.workDir, { recursive: true });
  const keyL = l.keyNames.length ? l.left.key : l.left.cols;
  const keyR = l.keyNames.length ? l.right.key : l.right.cols;
  if (!cp.leftDone) {
    await partitionSide(left, 'l', keyL, o, cp.partitions, ctx, 0);
    cp.leftDone = true;
    ctx.onCheckpoint?.(structuredClone(cp));
  }
  if (!cp.rightDone) {
    await partitionSide(right, 'r', keyR, o, cp.partitions, ctx, left.size);
    cp.rightDone = true;
    ctx.onCheckpoint?.(structuredClone(cp));
  }
  const sameColumns =
    l.left.header.length === l.right.header.length && l.left.header.every((h, i) => h === l.right.header[i]);
  const done = new Set(cp.compared);
  const todo = Array.from({ length: cp.partitions }, (_, p) => p).filter((p) => !done.has(p));
  // Compare up to `parallelism` partitions at once (reads overlap; memory is bounded by
  // parallelism × the largest partition).
  let next = 0;
  const workerLoop = async () => {
    while (next < todo.length) {
      const p = todo[next++];
      check(ctx.signal);
      const [lp, rp] = await Promise.all([
        readPart(partFile(ctx.workDir, 'l', p), left.delimiter ?? ','),
        readPart(partFile(ctx.workDir, 'r', p), right.delimiter ?? ','),
      ]);
      const t = new Tally(l, o);
      const w = ctx.diffs?.(p);
      if (w) t.sink = w.write;
      comparePart(t, lp, rp, sameColumns);
      await w?.close();
      mergeInto(cp.partial, t.r, o.sampleLimit);
      cp.compared.push(p);
      ctx.onCheckpoint?.(structuredClone(cp));
      ctx.onProgress?.({
        phase: 'compare',
        rows: cp.partial.counts.left + cp.partial.counts.right,
        bytes: left.size + right.size,
        partitionsDone: cp.compared.length,
        partitions: cp.partitions,
      });
      await ctx.afterPartition?.(cp.compared.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.parallelism, todo.length) }, workerLoop));
  await rm(ctx.workDir, { recursive: true, force: true });
  ctx.onProgress?.({
    phase: 'done',
    rows: cp.partial.counts.left + cp.partial.counts.right,
    bytes: left.size + right.size,
    partitions: cp.partitions,
    partitionsDone: cp.partitions,
  });
  return cp.partial;
}

function partsExist(dir: string, cp: Checkpoint): boolean {
  if (!cp.leftDone) return true; // nothing to reuse yet; partitioning restarts anyway
  for (let p = 0; p < cp.partitions; p++)
    if (!existsSync(partFile(dir, 'l', p)) || (cp.rightDone && !existsSync(partFile(dir, 'r', p)))) return false;
  return true;
}
