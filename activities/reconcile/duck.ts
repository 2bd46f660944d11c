/**
 * The exact comparison with DuckDB doing the heavy lifting, in bounded memory on both cores.
 *
 * 1. Each side is read once by DuckDB (its parallel CSV reader, or Parquet) and written into
 *    P partition files by the hash of its (normalised) key — one checkpoint per side.
 * 2. Partition by partition (one checkpoint each): one FULL OUTER JOIN of the two partition
 *    files on the key counts the rows it joins from each side and the pairs whose compared
 *    values are byte-for-byte equal (raw equality implies equality under any normalisation).
 *    When it joined no row twice (its row counts equal the partitions' own, so every key on
 *    both sides has one row a side), those pairs are matched keys, and a second pass of the
 *    same join streams every other row — changed, one-sided, or equal only after trim /
 *    case / tolerance — to JavaScript, where it goes through the same Tally as the other
 *    paths. A partition where a key has rows on both sides and more than one on either
 *    takes the general route: such keys come back whole. So the answer is the same exact one.
 *
 * Why this shape (measured with bench/reconcile.ts): reading a CSV is DuckDB's cheap part;
 * writing the partitions costs several times more, so each row is written once, the
 * partition files are CSV (DuckDB's partitioned Parquet writer costs twice as much), and
 * DuckDB buffers only PARTITION_FLUSH_ROWS rows per thread before writing (its default of
 * half a million overshoots the memory limit by far). Re-reading a partition costs less
 * than materialising it as a table.
 *
 * DuckDB runs in the sandbox (activities/sql/sandbox.ts): it may read exactly the two input
 * files and the comparison's own work folder, with a memory limit (spilling into that
 * folder) and two threads. Nothing in the SQL comes from the tenant but column positions
 * and quoted literals.
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ReconcileOptions, ReconcileProgress } from '../../schemas/reconcile.js';
import { quoteIdent, quoteLiteral as q } from '../sql/quote.js';
import { openDuck, type Duck } from '../sql/sandbox.js';
import { emptyResult, keyOf, mergeInto, normalizer, Tally, type Layout, type Partial } from './compare.js';
import type { Row, RowSource } from './read.js';
import type { Checkpoint, ReconcileContext } from './client.js';

const col = (i: number) => `c${i}`;

/** Rows the partitioning COPY buffers per thread before writing them out (see the top of this file). */
const PARTITION_FLUSH_ROWS = 50_000;

/** DuckDB memory for the comparison (the rest of the worker's budget is Node's own). */
export const DUCK_MEMORY = process.env.STRATA_RECONCILE_DUCK_MEMORY ?? '128MB';

/**
 * Why an input cannot take the DuckDB path (undefined: it can). DuckDB's CSV reader must
 * read exactly the records Strata's own reader reads: RFC 4180 with one-character
 * delimiter and quote, quotes escaped by doubling, UTF-8, "\n" line ends. A file with any
 * carriage return (CRLF line ends, or one inside a field) keeps to the streaming path,
 * whose reader defines how those are read.
 */
export async function duckUnsupported(src: RowSource): Promise<string | undefined> {
  if (src.format === 'parquet') return undefined;
  const o = src.csv;
  if (!o) return 'a CSV input without its dialect';
  if (o.delimiter.length !== 1 || o.quote.length !== 1 || o.escape !== o.quote)
    return 'a CSV dialect DuckDB reads differently (multi-character delimiter, no quote, or a separate escape)';
  if (o.encoding !== 'utf8' && o.encoding !== 'utf-8') return `CSV encoding ${o.encoding}`;
  if (await hasByte(src.file, 0x0d))
    return `${path.basename(src.file)} has carriage returns (CRLF line ends or a CR in a field)`;
  return undefined;
}

/**
 * About how many rows an input has, to size partitions: a Parquet file's own count, or a
 * CSV's size over the mean length of the lines in its first megabyte (an estimate: it only
 * picks a partition count).
 */
export async function estimateRows(src: RowSource): Promise<number> {
  if (src.rowCount !== undefined) return src.rowCount;
  const fh = await open(src.file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    let lines = 0;
    for (let at = buf.indexOf(0x0a); at >= 0 && at < bytesRead; at = buf.indexOf(0x0a, at + 1)) lines++;
    return bytesRead ? Math.ceil((src.size * Math.max(1, lines)) / bytesRead) : 0;
  } finally {
    await fh.close();
  }
}

async function hasByte(file: string, byte: number): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return false;
      const at = buf.indexOf(byte);
      if (at >= 0 && at < bytesRead) return true;
    }
  } finally {
    await fh.close();
  }
}

/** Key normalisation DuckDB reproduces exactly: only null values (no trim, no case folding). */
export function duckKeyUnsupported(o: ReconcileOptions): string | undefined {
  if (o.trim) return 'trim is on (JavaScript and DuckDB trim different white space)';
  if (o.caseInsensitive) return 'caseInsensitive is on (JavaScript and DuckDB fold case differently)';
  return undefined;
}

/** The SELECT reading one input as strings, columns c0…cN in header order, exactly as the streaming readers see them. */
export function sourceSql(src: RowSource): string {
  const n = src.header.length;
  if (src.format === 'parquet')
    return `SELECT ${src.header.map((h, i) => `CAST(${quoteIdent(h)} AS VARCHAR) AS ${col(i)}`).join(', ')} FROM read_parquet(${q(src.file)})`;
  const o = src.csv;
  if (!o) throw new Error(`${path.basename(src.file)}: a CSV input without its dialect`);
  const columns = `{${Array.from({ length: n }, (_, i) => `${q(col(i))}: 'VARCHAR'`).join(', ')}}`;
  // A CSV field is never null to Strata's reader ("" unquoted or quoted is the empty string).
  const read =
    `read_csv(${q(src.file)}, header = ${o.header}, auto_detect = false, delim = ${q(o.delimiter)}, ` +
    `quote = ${q(o.quote)}, escape = ${q(o.escape)}, new_line = '\\n', columns = ${columns}, ` +
    `strict_mode = true, allow_quoted_nulls = false, buffer_size = 4194304)`;
  return `SELECT ${Array.from({ length: n }, (_, i) => `coalesce(${col(i)}, '') AS ${col(i)}`).join(', ')} FROM ${read}`;
}

/** The normalised key of a side as DuckDB expressions (null values become NULL), matching keyOf. */
export function keyExprs(idx: number[], o: ReconcileOptions, prefix = ''): string[] {
  const nulls = o.nullValues.length ? `IN (${o.nullValues.map(q).join(', ')})` : undefined;
  return idx.map((i) =>
    nulls ? `CASE WHEN ${prefix}${col(i)} ${nulls} THEN NULL ELSE ${prefix}${col(i)} END` : `${prefix}${col(i)}`,
  );
}

const partDir = (dir: string, side: 'l' | 'r') => path.join(dir, `duck-${side}`);

export function duckPartsExist(dir: string, cp: { leftDone: boolean; rightDone: boolean }): boolean {
  return (!cp.leftDone || existsSync(partDir(dir, 'l'))) && (!cp.rightDone || existsSync(partDir(dir, 'r')));
}

export async function withDuck<T>(
  ctx: ReconcileContext,
  files: string[],
  fn: (d: Duck) => Promise<T>,
  { settings = [], memory = DUCK_MEMORY }: { settings?: string[]; memory?: string } = {},
): Promise<T> {
  const duck = await openDuck();
  try {
    for (const s of [
      'SET preserve_insertion_order = false',
      "SET allocator_flush_threshold = '8MB'",
      'SET allocator_background_threads = true',
      `SET partitioned_write_flush_threshold = ${PARTITION_FLUSH_ROWS}`,
      ...settings,
    ])
      await duck.conn.run(s);
    await duck.lock({
      files,
      dirs: [ctx.workDir],
      scratch: ctx.workDir,
      limits: { memory, threads: 2, temp: '64GB' },
    });
    return await fn(duck);
  } finally {
    await duck.close();
  }
}

export async function duckPartitioned(
  left: RowSource,
  right: RowSource,
  l: Layout,
  o: ReconcileOptions,
  ctx: ReconcileContext,
  n: number,
): Promise<Partial> {
  const prior = ctx.checkpoint;
  const cp: Checkpoint =
    prior &&
    prior.version === 4 &&
    prior.workDir === ctx.workDir &&
    prior.partitions === n &&
    duckPartsExist(ctx.workDir, prior)
      ? structuredClone(prior)
      : {
          version: 4,
          workDir: ctx.workDir,
          partitions: n,
          leftDone: false,
          rightDone: false,
          compared: [],
          partial: emptyResult(),
        };
  await mkdir(ctx.workDir, { recursive: true });
  // DuckDB statements run long without yielding progress: repeat the last progress (a
  // heartbeat) while they run, so the activity is not taken for dead.
  // A resumed comparison starts where its checkpoint left off (not in a partitioning phase it skips).
  let last: ReconcileProgress = {
    phase: !cp.leftDone ? 'partition-left' : !cp.rightDone ? 'partition-right' : 'compare',
    rows: cp.partial.counts.left + cp.partial.counts.right,
    bytes: cp.leftDone && cp.rightDone ? left.size + right.size : cp.leftDone ? left.size : 0,
    partitions: cp.partitions,
    ...(cp.leftDone && cp.rightDone ? { partitionsDone: cp.compared.length } : {}),
  };
  const progress = (p: ReconcileProgress) => ctx.onProgress?.((last = p));
  const beat = setInterval(() => ctx.onProgress?.(last), 500);
  try {
    return await run();
  } finally {
    clearInterval(beat);
  }
  async function run(): Promise<Partial> {
    const keyL = l.keyNames.length ? l.left.key : l.left.cols;
    const keyR = l.keyNames.length ? l.right.key : l.right.cols;
    const sides = [
      {
        src: left,
        side: 'l' as const,
        key: keyL,
        done: () => cp.leftDone,
        mark: () => (cp.leftDone = true),
        phase: 'partition-left' as const,
        base: 0,
      },
      {
        src: right,
        side: 'r' as const,
        key: keyR,
        done: () => cp.rightDone,
        mark: () => (cp.rightDone = true),
        phase: 'partition-right' as const,
        base: left.size,
      },
    ];
    const files = [left.file, right.file];
    await withDuck(ctx, files, async ({ conn }) => {
      for (const s of sides) {
        if (s.done()) continue;
        progress({ phase: s.phase, rows: 0, bytes: s.base, partitions: n });
        const dir = partDir(ctx.workDir, s.side);
        await rm(dir, { recursive: true, force: true });
        const cols = s.src.header.map((_, i) => col(i)).join(', ');
        await conn.run(
          `COPY (SELECT hash(${keyExprs(s.key, o).join(', ')}) % ${n} AS p, ${cols} FROM (${sourceSql(s.src)})) TO ${q(dir)} (FORMAT csv, HEADER false, PARTITION_BY (p))`,
        );
        s.mark();
        ctx.onCheckpoint?.(structuredClone(cp));
        check(ctx.signal);
      }
    });
    // Compare partition by partition: each is small (bounded by the partition count), so it runs in memory.
    const done = new Set(cp.compared);
    const norm = normalizer(o);
    const nk = keyL.length;
    const kcols = Array.from({ length: nk }, (_, i) => `k${i}`);
    const on = (a: string, b: string) => kcols.map((k) => `${a}.${k} IS NOT DISTINCT FROM ${b}.${k}`).join(' AND ');
    const eq =
      l.compared
        .map((_, i) => `l.${col(l.left.cols[i])} IS NOT DISTINCT FROM r.${col(l.right.cols[i])}`)
        .join(' AND ') || 'true';
    /** One side's partition as a relation: the normalised key k0…, a presence flag x, and the row c0…. */
    const partRel = (s: (typeof sides)[number], p: number) => {
      const dir = path.join(partDir(ctx.workDir, s.side), `p=${p}`);
      const width = s.src.header.length;
      const k = keyExprs(s.key, o);
      const cols = Array.from({ length: width }, (_, i) => col(i));
      const columns = `{${cols.map((c) => `${q(c)}: 'VARCHAR'`).join(', ')}}`;
      return existsSync(dir)
        ? `(SELECT ${k.map((e, i) => `${e} AS k${i}`).join(', ')}, true AS x, ${cols.join(', ')} FROM read_csv(${q(path.join(dir, '*.csv'))}, header = false, auto_detect = false, delim = ',', quote = '"', escape = '"', new_line = '\\n', columns = ${columns}, strict_mode = true, allow_quoted_nulls = false, hive_partitioning = false, buffer_size = 4194304))`
        : `(SELECT ${[...kcols, 'x', ...cols].map((c) => `NULL::${c === 'x' ? 'BOOLEAN' : 'VARCHAR'} AS ${c}`).join(', ')} LIMIT 0)`;
    };
    const rowsOf = (s: (typeof sides)[number], alias: string) =>
      s.src.header.map((_, i) => `${alias}.${col(i)}`).join(', ');
    const [L, R] = sides;
    await withDuck(ctx, files, async ({ conn }) => {
      for (let p = 0; p < cp.partitions; p++) {
        if (done.has(p)) continue;
        check(ctx.signal);
        const t = new Tally(l, o);
        const w = ctx.diffs?.(p);
        if (w) t.sink = w.write;
        const lp = partRel(L, p);
        const rp = partRel(R, p);
        const join = `${lp} l FULL OUTER JOIN ${rp} r ON ${on('l', 'r')}`;
        // The join's counts (see the top of this file): settled pairs, and whether it joined any row twice.
        const [counts] = (
          await conn.runAndReadAll(
            `SELECT count(l.x), count(r.x), count(*) FILTER (WHERE l.x AND r.x AND ${eq}), ` +
              `(SELECT count(*) FROM ${lp}), (SELECT count(*) FROM ${rp}) FROM ${join}`,
          )
        ).getRows();
        const [joinL, joinR, settled, rowsL, rowsR] = counts.map(Number);
        if (joinL === rowsL && joinR === rowsR) {
          t.matchedPairs(settled);
          const oneSided = new Map<string, { l: Row[]; r: Row[] }>();
          const oneSidedGroup = (key: string) => {
            let g = oneSided.get(key);
            if (!g) oneSided.set(key, (g = { l: [], r: [] }));
            return g;
          };
          const wl = L.src.header.length;
          const res = await conn.stream(
            `SELECT l.x, ${rowsOf(L, 'l')}, r.x, ${rowsOf(R, 'r')} FROM ${join} WHERE NOT (l.x IS NOT NULL AND r.x IS NOT NULL AND ${eq})`,
          );
          for (;;) {
            const chunk = await res.fetchChunk();
            if (!chunk || chunk.rowCount === 0) break;
            for (const row of chunk.getRows()) {
              const lr = row[0] ? toRow(row.slice(1, 1 + wl)) : undefined;
              const rr = row[1 + wl] ? toRow(row.slice(2 + wl)) : undefined;
              // A key on both sides has one row a side here: its pair is its whole group.
              if (lr && rr) t.group([lr], [rr]);
              else if (lr) oneSidedGroup(keyOf(lr, L.key, norm)).l.push(lr);
              else if (rr) oneSidedGroup(keyOf(rr, R.key, norm)).r.push(rr);
            }
          }
          for (const g of oneSided.values()) t.group(g.l, g.r);
        } else await compareWithDuplicates(conn, t, p);
        await w?.close();
        mergeInto(cp.partial, t.r, o.sampleLimit);
        cp.compared.push(p);
        ctx.onCheckpoint?.(structuredClone(cp));
        progress({
          phase: 'compare',
          rows: cp.partial.counts.left + cp.partial.counts.right,
          bytes: left.size + right.size,
          partitionsDone: cp.compared.length,
          partitions: cp.partitions,
        });
        await ctx.afterPartition?.(cp.compared.length);
      }
    });
    /**
     * A partition with a key duplicated across both sides: keys with more than one row on
     * either side are left out of DuckDB's matching, and come back whole.
     */
    async function compareWithDuplicates(conn: Duck['conn'], t: Tally, p: number) {
      for (const s of sides)
        await conn.run(`CREATE OR REPLACE TEMP TABLE ${s.side}p AS SELECT * FROM ${partRel(s, p)}`);
      await conn.run(
        `CREATE OR REPLACE TEMP TABLE dk AS SELECT ${kcols.join(', ')} FROM lp GROUP BY ALL HAVING count(*) > 1 UNION SELECT ${kcols.join(', ')} FROM rp GROUP BY ALL HAVING count(*) > 1`,
      );
      await conn.run(
        `CREATE OR REPLACE TEMP TABLE s AS SELECT l.rowid AS lr, r.rowid AS rr FROM lp l JOIN rp r ON ${on('l', 'r')} WHERE ${eq} AND NOT EXISTS (SELECT 1 FROM dk WHERE ${on('dk', 'l')})`,
      );
      t.matchedPairs(Number((await conn.runAndReadAll('SELECT count(*) FROM s')).getRows()[0][0]));
      // The rest, grouped by key in JavaScript (the same grouping as the other paths).
      const groups = new Map<string, { l: Row[]; r: Row[] }>();
      for (const s of sides) {
        const res = await conn.stream(
          `SELECT ${rowsOf(s, 'x')} FROM ${s.side}p x ANTI JOIN s ON x.rowid = s.${s.side}r`,
        );
        for (;;) {
          const chunk = await res.fetchChunk();
          if (!chunk || chunk.rowCount === 0) break;
          for (const row of chunk.getRows().map(toRow)) {
            const key = keyOf(row, s.key, norm);
            let g = groups.get(key);
            if (!g) groups.set(key, (g = { l: [], r: [] }));
            g[s.side].push(row);
          }
        }
      }
      for (const g of groups.values()) t.group(g.l, g.r);
      await conn.run('DROP TABLE lp; DROP TABLE rp; DROP TABLE dk; DROP TABLE s');
    }
    await rm(ctx.workDir, { recursive: true, force: true });
    progress({
      phase: 'done',
      rows: cp.partial.counts.left + cp.partial.counts.right,
      bytes: left.size + right.size,
      partitions: cp.partitions,
      partitionsDone: cp.partitions,
    });
    return cp.partial;
  }
}

/** DuckDB's values of a row read as text: strings, or null. */
function toRow(values: readonly unknown[]): Row {
  return values.map((v) => (typeof v === 'string' ? v : null));
}

function check(signal?: AbortSignal) {
  if (signal?.aborted) throw signal.reason ?? new Error('cancelled');
}

/**
 * DuckDB memory for the one-pass comparison: what DuckDB holds beyond its limit (readers'
 * buffers, allocator caches) comes on top, and Node's own share besides (about 120 MB under
 * tsx with DuckDB's library loaded). Measured at 10 M rows a side with the keyed digest
 * (bench/reconcile.ts, idle machine): messy CSV 261 MB peak RSS for the whole process at
 * 96 MB; Parquet (its row groups are decoded whole) 292–299 MB at 128 MB, and at 100 or
 * 112 MB its aggregation ran out of memory in five tries of six (the partitioned path then
 * takes over, exact but twice as slow).
 */
const ONE_PASS_MEMORY = process.env.STRATA_RECONCILE_ONE_PASS_MEMORY;
const onePassMemory = (parquet: boolean) => ONE_PASS_MEMORY ?? (parquet ? '128MB' : '96MB');

/** DuckDB out of memory (beyond what it can spill). */
const DUCK_OOM = /Out of Memory Error/;

/**
 * The SQL of a row's digest for the one pass: MD5 (as a 128-bit number, so digests XOR) of
 * the compared values joined by a separator drawn at random for this comparison, with a
 * second random mark for a null (a CSV field is never null; a Parquet value may be).
 *
 * Why not DuckDB's hash(): it is a fast 64-bit hash with no key, so a tenant (or whoever
 * writes one side: a counterparty's statement reconciled against a ledger) could craft a
 * changed row whose hash equals the original's and have it settled as matched. Here the
 * separator opens the digested text and sits between every two values: nobody who wrote the
 * data knew it, so no row can be made to collide on purpose, and two different rows encode
 * differently (the separator is in no value). MD5 is what DuckDB has built in that is fast
 * enough (bench/reconcile.ts); the key makes its known collision attacks, which need to
 * know every byte of the blocks they forge, inapplicable.
 */
export function rowDigest(): (cols: number[], nullable: boolean) => string {
  const sep = q(randomBytes(12).toString('base64url'));
  const nullMark = q(randomBytes(12).toString('base64url'));
  return (cols, nullable) =>
    cols.length
      ? `md5_number(concat_ws(${sep}, '', ${cols.map((c) => (nullable ? `coalesce(${col(c)}, ${nullMark})` : col(c))).join(', ')}))`
      : '0::UHUGEINT';
}

/** The one pass ran out of DuckDB's memory and wrote nothing: the partitioned path can take over. */
export class OnePassOutOfMemory extends Error {}

/** Difference records per file of the full lists on the one-pass path. */
const DIFF_FILE_RECORDS = 50_000;

/** A right-side row's weight in the one-pass count (left rows weigh 1): one BIGINT holds both counts. */
const TWO_TO_32 = 4294967296;

/**
 * The default exact comparison (no explicit partitions, no checkpoint of the partitioned
 * path): DuckDB reads each input twice and writes nothing but its own spill.
 *
 * 1. One aggregation over both sides by the normalised key keeps, per key, its row count on
 *    each side (one BIGINT: left + 2³² × right) and the XOR of a keyed 128-bit digest of each
 *    row's compared values (rowDigest). A key with one row a side whose digests are equal is
 *    settled as matched (its XOR is 0); every other key — one-sided, duplicated on either
 *    side, or a pair whose digests differ — is kept, numbered, in a small table. DuckDB's
 *    aggregation spills to the work folder past its memory limit, so memory stays bounded.
 * 2. The rows of those keys (read again, joined to the table) come back ordered by that
 *    number, one key's rows together, and go through the same Tally as every other path:
 *    changed, one-sided, duplicated, or equal only after trim / tolerance / null values.
 *
 * A pair is taken as equal when its digests are: a changed pair could go unseen only if
 * two different rows' MD5 digests under a key drawn for this comparison alone collided —
 * by chance about 1 in 3.4 × 10³⁸ per pair, and not by design, since whoever wrote the data
 * cannot know the key (rowDigest). Nothing is checkpointed: a crashed attempt runs the two
 * queries again (with a new key).
 */
export async function duckOnePass(
  left: RowSource,
  right: RowSource,
  l: Layout,
  o: ReconcileOptions,
  ctx: ReconcileContext,
): Promise<Partial> {
  await mkdir(ctx.workDir, { recursive: true });
  let last: ReconcileProgress = { phase: 'compare', rows: 0, bytes: 0 };
  const progress = (p: ReconcileProgress) => ctx.onProgress?.((last = p));
  const beat = setInterval(() => ctx.onProgress?.(last), 500);
  try {
    const keyL = l.keyNames.length ? l.left.key : l.left.cols;
    const keyR = l.keyNames.length ? l.right.key : l.right.cols;
    const kcols = keyL.map((_, i) => `k${i}`);
    const digest = rowDigest();
    const digestOf = (src: RowSource, cols: number[]) => digest(cols, src.format === 'parquet');
    const keyed = (src: RowSource, key: number[], rest: string) =>
      `SELECT ${keyExprs(key, o)
        .map((e, i) => `${e} AS k${i}`)
        .join(', ')}, ${rest} FROM (${sourceSql(src)})`;
    const on = kcols.map((k) => `x.${k} IS NOT DISTINCT FROM d.${k}`).join(' AND ');
    const t = new Tally(l, o);
    // The full lists, when asked for, go into a new file every DIFF_FILE_RECORDS records (a
    // writer keeps its file's lines until closed), so they stay bounded in memory too.
    let part = 0;
    let written = 0;
    let w = ctx.diffs?.(part);
    if (w)
      t.sink = (d) => {
        written++;
        w?.write(d);
      };
    const wl = left.header.length;
    const wr = right.header.length;
    const width = Math.max(wl, wr);
    const padded = (n: number) =>
      Array.from({ length: width }, (_, i) => (i < n ? `x.${col(i)}` : `NULL::VARCHAR AS ${col(i)}`)).join(', ');
    await withDuck(
      ctx,
      [left.file, right.file],
      async ({ conn }) => {
        progress({ phase: 'compare', rows: 0, bytes: 0 });
        await conn.run(
          `CREATE TEMP TABLE g AS SELECT n = ${TWO_TO_32 + 1} AND x = 0 AS s, ` +
            `${kcols.map((k) => `CASE WHEN n = ${TWO_TO_32 + 1} AND x = 0 THEN NULL ELSE ${k} END AS ${k}`).join(', ')}, count(*) AS c ` +
            `FROM (SELECT ${kcols.join(', ')}, sum(w) AS n, bit_xor(h) AS x FROM (` +
            `${keyed(left, keyL, `1::BIGINT AS w, ${digestOf(left, l.left.cols)} AS h`)} UNION ALL ` +
            `${keyed(right, keyR, `${TWO_TO_32}::BIGINT AS w, ${digestOf(right, l.right.cols)} AS h`)}) GROUP BY ALL) GROUP BY ALL`,
        );
        check(ctx.signal);
        const settled = (await conn.runAndReadAll('SELECT coalesce(sum(c), 0) FROM g WHERE s')).getRows();
        t.matchedPairs(Number(settled[0]?.[0] ?? 0));
        await conn.run(`CREATE TEMP TABLE d AS SELECT ${kcols.join(', ')} FROM g WHERE NOT s`);
        progress({ phase: 'compare', rows: t.r.counts.left + t.r.counts.right, bytes: left.size + right.size });
        await ctx.afterPartition?.(1);
        check(ctx.signal);
        // Every row of every unsettled key, ordered by key (left first), one key's rows through the Tally at a time.
        // A semi join builds its hash table on the small side (the keys), never on an input.
        const res = await conn.stream(
          `SELECT ${kcols.join(', ')}, 0 AS side, ${padded(wl)} FROM (${keyed(left, keyL, '*')}) x SEMI JOIN d ON ${on} ` +
            `UNION ALL SELECT ${kcols.join(', ')}, 1 AS side, ${padded(wr)} FROM (${keyed(right, keyR, '*')}) x SEMI JOIN d ON ${on} ` +
            `ORDER BY ${kcols.join(', ')}, side`,
        );
        const nk = kcols.length;
        let prev: unknown[] | undefined;
        let group: { l: Row[]; r: Row[] } = { l: [], r: [] };
        for (;;) {
          const chunk = await res.fetchChunk();
          if (!chunk || chunk.rowCount === 0) break;
          for (const row of chunk.getRows()) {
            const side = row[nk];
            if (!prev || prev.some((v, i) => v !== row[i])) {
              if (prev) t.group(group.l, group.r);
              prev = row.slice(0, nk);
              group = { l: [], r: [] };
            }
            const values = toRow(row.slice(nk + 1, nk + 1 + (side === 0 ? wl : wr)));
            (side === 0 ? group.l : group.r).push(values);
          }
          check(ctx.signal);
          if (w && written >= DIFF_FILE_RECORDS) {
            await w.close();
            w = ctx.diffs?.(++part);
            written = 0;
          }
        }
        if (prev) t.group(group.l, group.r);
        // DuckDB's optimizer would build the semi join's hash table on an input (it cannot
        // count a CSV's rows up front) and probe it with the keys: the keys table must be the build side.
      },
      {
        settings: ["SET disabled_optimizers = 'build_side_probe_side'"],
        memory: onePassMemory(left.format === 'parquet' || right.format === 'parquet'),
      },
    ).catch((e: unknown) => {
      // Out of DuckDB's memory before any list was written: the caller may take the partitioned path.
      if (e instanceof Error && DUCK_OOM.test(e.message) && part === 0) throw new OnePassOutOfMemory(e.message);
      throw e;
    });
    await w?.close();
    await rm(ctx.workDir, { recursive: true, force: true });
    progress({ phase: 'done', rows: t.r.counts.left + t.r.counts.right, bytes: left.size + right.size });
    return t.r;
  } finally {
    clearInterval(beat);
  }
}
