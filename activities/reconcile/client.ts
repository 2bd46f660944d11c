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

export interface Checkpoint {
  version: 1;
  workDir: string;
  partitions: number;
  leftDone: boolean;
  rightDone: boolean;
  compared: number[];
  partial: Partial;
}

export interface ReconcileContext {
  lakeRoot: string;
  /** Where partition files go; the same folder must be given to resume. */
  workDir: string;
  checkpoint?: Checkpoint;
  onProgress?: (p: ReconcileProgress) => void;
  onCheckpoint?: (c: Checkpoint) => void;
  signal?: AbortSignal;
  /** Test seam (like the lake's `faults`): awaited after each compared partition is checkpointed. */
  afterPartition?: (partitionsDone: number) => void | Promise<void>;
}

// Live memory while comparing is roughly parallelism × 8 × this (rows as JS strings).
const TARGET_PARTITION_BYTES = 4 * 1024 * 1024;

export async function reconcile(leftRef: DatasetRef, rightRef: DatasetRef, options: ReconcileOptions, ctx: ReconcileContext): Promise<ReconcileResult> {
  const [left, right] = await Promise.all([openSource(leftRef, ctx.lakeRoot), openSource(rightRef, ctx.lakeRoot)]);
  const l = layout(left.header, right.header, options);
  const total = left.size + right.size;
  const columns = { compared: l.compared, onlyLeft: l.onlyLeft, onlyRight: l.onlyRight };
  if (total <= options.memoryLimitBytes && !options.partitions && !ctx.checkpoint) {
    const r = await inMemory(left, right, l, options, ctx);
    return { method: 'memory', reason: `inputs total ${total} bytes, within the in-memory limit of ${options.memoryLimitBytes}`, columns, ...r };
  }
  const partitions = ctx.checkpoint?.partitions ?? options.partitions ?? Math.max(2, Math.ceil(total / TARGET_PARTITION_BYTES));
  const r = await partitioned(left, right, l, options, ctx, partitions);
  return {
    method: 'partitioned',
    reason: options.partitions && total <= options.memoryLimitBytes ? `${options.partitions} partitions requested` : `inputs total ${total} bytes, above the in-memory limit of ${options.memoryLimitBytes}: hashed into ${partitions} partitions on disk`,
    columns,
    partitions,
    ...r,
  };
}

function check(signal?: AbortSignal) {
  if (signal?.aborted) throw signal.reason ?? new Error('cancelled');
}

async function inMemory(left: RowSource, right: RowSource, l: Layout, o: ReconcileOptions, ctx: ReconcileContext): Promise<Partial> {
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
    if (++rows % 50_000 === 0) (check(ctx.signal), ctx.onProgress?.({ phase: 'reading', rows, bytes: left.bytesRead() }));
  }
  for await (const row of right.rows()) {
    const k = keyOf(row, keyR, norm);
    const g = groups.get(k);
    if (g) g.r.push(row);
    else groups.set(k, { l: [], r: [row] });
    if (++rows % 50_000 === 0) (check(ctx.signal), ctx.onProgress?.({ phase: 'reading', rows, bytes: left.size + right.bytesRead() }));
  }
  const t = new Tally(l, o);
  for (const g of groups.values()) t.group(g.l, g.r);
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

async function partitionSide(src: RowSource, side: 'l' | 'r', keyIdx: number[], o: ReconcileOptions, n: number, ctx: ReconcileContext, base: number) {
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
  for await (const row of src.rows()) {
    const p = hash(keyOf(row, keyIdx, norm)) % n;
    const line = encodeRow(row);
    bufs[p].push(line);
    sizes[p] += line.length;
    if (sizes[p] > flushAt) await flush(p);
    if (++rows % 100_000 === 0) {
      check(ctx.signal);
      ctx.onProgress?.({ phase: side === 'l' ? 'partition-left' : 'partition-right', rows, bytes: base + src.bytesRead(), partitions: n });
    }
  }
  for (let p = 0; p < n; p++) await flush(p);
  await Promise.all(outs.map((s) => new Promise<void>((res, rej) => s.end((e?: Error | null) => (e ? rej(e) : res())))));
}

/**
 * Partition lines: fields joined by U+001F, the cheapest form to split again. A row with
 * a null, a newline or a separator character in a value is written as U+001E + JSON.
 */
const US = '\u001f';
const RS = '\u001e';
const NEEDS_JSON = /[\n\u001e\u001f]/;
function encodeRow(row: Row): string {
  if (row.includes(null)) return RS + JSON.stringify(row) + '\n';
  const joined = (row as string[]).join(US);
  if (NEEDS_JSON.test((row as string[]).join(''))) return RS + JSON.stringify(row) + '\n';
  return joined + '\n';
}

async function readPart(file: string): Promise<Row[]> {
  if (!existsSync(file)) return [];
  // A partition is small by construction (see TARGET_PARTITION_BYTES): read it whole.
  const text = await readFile(file, 'utf8');
  const lines = text.split('\n');
  lines.pop();
  return lines.map((l) => (l.charCodeAt(0) === 0x1e ? (JSON.parse(l.slice(1)) as Row) : l.split(US)));
}

async function partitioned(left: RowSource, right: RowSource, l: Layout, o: ReconcileOptions, ctx: ReconcileContext, n: number): Promise<Partial> {
  const cp: Checkpoint =
    ctx.checkpoint && ctx.checkpoint.workDir === ctx.workDir && partsExist(ctx.workDir, ctx.checkpoint)
      ? structuredClone(ctx.checkpoint)
      : { version: 1, workDir: ctx.workDir, partitions: n, leftDone: false, rightDone: false, compared: [], partial: emptyResult() };
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
  const norm = normalizer(o);
  const done = new Set(cp.compared);
  const todo = Array.from({ length: cp.partitions }, (_, p) => p).filter((p) => !done.has(p));
  // Compare up to `parallelism` partitions at once (reads overlap; memory is bounded by
  // parallelism × the largest partition).
  let next = 0;
  const workerLoop = async () => {
    while (next < todo.length) {
      const p = todo[next++];
      check(ctx.signal);
      const [lr, rr] = await Promise.all([readPart(partFile(ctx.workDir, 'l', p)), readPart(partFile(ctx.workDir, 'r', p))]);
      const groups = new Map<string, { l: Row[]; r: Row[] }>();
      for (const row of lr) {
        const k = keyOf(row, keyL, norm);
        const g = groups.get(k);
        if (g) g.l.push(row);
        else groups.set(k, { l: [row], r: [] });
      }
      for (const row of rr) {
        const k = keyOf(row, keyR, norm);
        const g = groups.get(k);
        if (g) g.r.push(row);
        else groups.set(k, { l: [], r: [row] });
      }
      const t = new Tally(l, o);
      for (const g of groups.values()) t.group(g.l, g.r);
      mergeInto(cp.partial, t.r, o.sampleLimit);
      cp.compared.push(p);
      ctx.onCheckpoint?.(structuredClone(cp));
      ctx.onProgress?.({ phase: 'compare', rows: cp.partial.counts.left + cp.partial.counts.right, bytes: left.size + right.size, partitionsDone: cp.compared.length, partitions: cp.partitions });
      await ctx.afterPartition?.(cp.compared.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.parallelism, todo.length) }, workerLoop));
  await rm(ctx.workDir, { recursive: true, force: true });
  ctx.onProgress?.({ phase: 'done', rows: cp.partial.counts.left + cp.partial.counts.right, bytes: left.size + right.size, partitions: cp.partitions, partitionsDone: cp.partitions });
  return cp.partial;
}

function partsExist(dir: string, cp: Checkpoint): boolean {
  if (!cp.leftDone) return true; // nothing to reuse yet; partitioning restarts anyway
  for (let p = 0; p < cp.partitions; p++) if (!existsSync(partFile(dir, 'l', p)) || (cp.rightDone && !existsSync(partFile(dir, 'r', p)))) return false;
  return true;
}
