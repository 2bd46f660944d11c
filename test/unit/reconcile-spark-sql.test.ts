/**
 * engine: spark runs the comparison as generated SQL. The same SQL, run here on DuckDB over
 * the same files (it is plain SQL), must give the local exact path's answer: counts, samples
 * and the full lists of differences.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../../activities/reconcile/client.js';
import type { DiffRecord } from '../../activities/reconcile/compare.js';
import { lit } from '../../activities/reconcile/spark-sql.js';
import { planFor, readSparkOutputs, sparkLayout, type SparkInput } from '../../activities/reconcile/spark.js';
import { openStore } from '../../activities/s3/client.js';
import { ReconcileOptions, type ReconcileResult } from '../../schemas/reconcile.js';
import { COLUMNS, csvField, generatePair } from '../fakes/reconcile-data.js';
import { playPlanOnDuckDB } from '../fakes/spark-duck.js';

let dir: string;
const files: Record<string, [string, string, string[]]> = {};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'strata-sparksql-'));
  const l = path.join(dir, 'l.csv');
  const r = path.join(dir, 'r.csv');
  await generatePair(l, r, { rows: 20_000, rate: 0.02, seed: 9, duplicates: true, awkward: true });
  files.generated = [l, r, COLUMNS];
  // Keys duplicated with rows that differ (which rows pair is the canonical order's choice), values
  // that only trimming (tabs, no-break spaces) or case make equal, quoted and unquoted empty fields,
  // quotes, backslashes and "$" in values, an astral character, and a null value that needs escaping.
  const H = ['id', 'a', 'b'];
  const L = [
    ['1', 'x', 'p'],
    ['1', 'x y', 'q'],
    ['1', 'x!', 'r'],
    ['2', '\tA\u00a0', 'same'],
    ['3', '', 'e'],
    ['4', "it's \\ $x", '😀'],
    ['5', 'N\\A', 'n'],
    ['6', 'z', 'Z'],
    ['6', 'Z', 'z'],
    ['7', 'only', 'left'],
  ];
  const R = [
    ['1', 'x', 'P'],
    ['1', 'x y', 'Q'],
    ['2', 'a', 'SAME'],
    ['3', '""', 'e'],
    ['4', "it's \\ $y", '😀'],
    ['5', '', 'n'],
    ['6', 'z', 'z'],
    ['8', 'only', 'right'],
  ];
  const csv = (rows: string[][]) =>
    [H, ...rows].map((x) => x.map((v) => (v === '""' ? v : csvField(v))).join(',')).join('\n') + '\n';
  await writeFile(path.join(dir, 'hl.csv'), csv(L));
  await writeFile(path.join(dir, 'hr.csv'), csv(R));
  files.handmade = [path.join(dir, 'hl.csv'), path.join(dir, 'hr.csv'), H];
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const input = (file: string, columns: string[]): SparkInput => ({
  format: 'csv',
  uris: [file],
  csv: { delimiter: ',', quote: '"', escape: '"', header: true, encoding: 'utf8' },
  columns,
  source: { input: file },
});

/** The local path's result and its full lists (as the differences dataset would hold them). */
async function local(l: string, r: string, o: ReconcileOptions) {
  const list: DiffRecord[] = [];
  const res = await reconcile({ uri: l }, { uri: r }, o, {
    lakeRoot: dir,
    workDir: path.join(dir, `w-${Math.random()}`),
    diffs: () => ({ write: (d) => void list.push(d), close: async () => {} }),
  });
  return { res, list };
}

/** The generated plan run on DuckDB, read back as collect reads a Spark job's output. */
async function viaSql(l: string, r: string, columns: string[], o: ReconcileOptions) {
  const [li, ri] = [input(l, columns), input(r, columns)];
  const lay = sparkLayout(li, ri, o);
  const plan = planFor(lay, li, ri, o);
  const folder = `job-${Math.random().toString(36).slice(2)}`;
  const store = openStore(dir);
  await playPlanOnDuckDB(plan, { format: 'csv', files: [l], columns }, { format: 'csv', files: [r], columns }, (name) =>
    path.join(dir, folder, 'out', name),
  );
  const list: DiffRecord[] = [];
  const res = await readSparkOutputs(
    store,
    folder,
    {
      columns: {
        key: lay.keyNames,
        compared: lay.compared,
        left: columns,
        right: columns,
        onlyLeft: lay.onlyLeft,
        onlyRight: lay.onlyRight,
      },
    },
    o,
    o.differences ? (d) => void list.push(d) : undefined,
    path.join(dir, `${folder}-scratch`),
  );
  return { res, list };
}

const sorted = <T>(xs: T[]) => xs.map((x) => JSON.stringify(x)).sort();
const samplesOf = (r: Pick<ReconcileResult, 'samples' | 'duplicates'>) => ({
  onlyLeft: sorted(r.samples.onlyLeft),
  onlyRight: sorted(r.samples.onlyRight),
  changed: sorted(r.samples.changed),
  dupLeft: sorted(r.duplicates.left.samples),
  dupRight: sorted(r.duplicates.right.samples),
});

describe('engine spark: the generated SQL, run on DuckDB, gives the local exact answer', () => {
  for (const [data, o] of [
    ['generated', { key: ['id'] }],
    ['generated', { key: ['id'], tolerance: 1.5 }],
    ['generated', { key: ['id'], trim: true, caseInsensitive: true, ignore: ['note'] }],
    ['generated', { key: ['id', 'name'] }],
    ['generated', {}],
    ['handmade', { key: ['id'] }],
    ['handmade', { key: ['id'], trim: true, caseInsensitive: true }],
    ['handmade', { key: ['id'], nullValues: ['', "N\\A'$"] }],
    ['handmade', { key: ['id'], nullValues: [] }],
    ['handmade', {}],
  ] as [string, Partial<ReconcileOptions>][])
    it(`${data} data, ${JSON.stringify(o)}: the same counts, samples and lists of differences`, async () => {
      const opts = ReconcileOptions.parse({ sampleLimit: 1000, differences: 'silver.d', ...o });
      const [l, r, columns] = files[data];
      const a = await local(l, r, opts);
      const b = await viaSql(l, r, columns, opts);
      expect(a.res.counts.changed + a.res.counts.onlyLeft).toBeGreaterThan(0);
      expect(b.res.counts).toEqual(a.res.counts);
      expect(b.res.columnMismatches).toEqual(a.res.columnMismatches);
      for (const s of ['left', 'right'] as const) {
        expect(b.res.duplicates[s].keys).toBe(a.res.duplicates[s].keys);
        expect(b.res.duplicates[s].rows).toBe(a.res.duplicates[s].rows);
      }
      expect(sorted(b.list)).toEqual(sorted(a.list));
      // Fewer differences than the sample limit: the samples are all of them, in any order; more:
      // as many as the limit, each one of the differences.
      const limited = (['onlyLeft', 'onlyRight'] as const).filter((k) => a.res.counts[k] > opts.sampleLimit);
      for (const k of limited) {
        const kind = k === 'onlyLeft' ? 'only_left' : 'only_right';
        const all = new Set(
          a.list.filter((d) => d.kind === kind).map((d) => JSON.stringify({ key: d.key, row: d.row })),
        );
        expect(b.res.samples[k]).toHaveLength(opts.sampleLimit);
        for (const x of b.res.samples[k]) expect(all.has(JSON.stringify(x))).toBe(true);
        a.res.samples[k] = b.res.samples[k] = [];
      }
      expect(samplesOf(b.res)).toEqual(samplesOf(a.res));
      expect(b.list.length).toBeGreaterThan(0);
    });

  it('keeps samples within the limit', async () => {
    const opts = ReconcileOptions.parse({ key: ['id'], sampleLimit: 3 });
    const [l, r, columns] = files.generated;
    const b = await viaSql(l, r, columns, opts);
    expect(b.res.samples.onlyLeft).toHaveLength(3);
    expect(b.res.samples.changed).toHaveLength(3);
    expect(b.res.duplicates.left.samples).toHaveLength(3);
  });

  it('writes literals without quotes, backslashes or "$" inside (Spark reads escapes and variables in them)', () => {
    expect(lit('plain')).toBe("'plain'");
    expect(lit("a'b\\c$d")).toBe("CONCAT('a', chr(39), 'b', chr(92), 'c', chr(36), 'd')");
  });
});
