import { existsSync } from 'node:fs';
import { writeFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile, type Checkpoint } from '../../activities/reconcile/client.js';
import { ReconcileOptions, type ReconcileResult } from '../../schemas/reconcile.js';
import { generatePair, truthCounts, type Truth } from '../fakes/reconcile-data.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'strata-recon-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const opts = (o: Partial<ReconcileOptions> = {}) => ReconcileOptions.parse(o);
const run = (
  l: string,
  r: string,
  o: Partial<ReconcileOptions> = {},
  extra: Partial<Parameters<typeof reconcile>[3]> = {},
) =>
  reconcile({ uri: l }, { uri: r }, opts(o), {
    lakeRoot: dir,
    workDir: path.join(dir, `work-${Math.random()}`),
    ...extra,
  });

/** Runs until three partitions are compared, then dies as a killed worker does; the checkpoints it wrote. */
async function diesAfterThree(l: string, r: string, o: Partial<ReconcileOptions>, workDir: string) {
  const checkpoints: Checkpoint[] = [];
  const ac = new AbortController();
  await expect(
    run(l, r, o, {
      workDir,
      signal: ac.signal,
      onCheckpoint: (c) => {
        checkpoints.push(c);
        if (c.compared.length === 3) ac.abort(new Error('worker died'));
      },
    }),
  ).rejects.toThrow(/worker died/);
  return checkpoints;
}

/** Resumes from `checkpoint`: the result, whether a side was partitioned again, and the partitions compared. */
async function resumeFrom(l: string, r: string, o: Partial<ReconcileOptions>, workDir: string, checkpoint: Checkpoint) {
  const resumedCompares: number[][] = [];
  let partitionedAgain = false;
  const res = await run(l, r, o, {
    workDir,
    checkpoint,
    onProgress: (p) => (partitionedAgain ||= p.phase.startsWith('partition')),
    onCheckpoint: (c) => resumedCompares.push(c.compared),
  });
  return { res, partitionedAgain, resumedCompares };
}

function expectTruth(r: ReconcileResult, t: Truth) {
  expect(r.exact).toBe(true);
  expect(r.counts).toEqual(truthCounts(t));
  expect(r.columnMismatches).toEqual(t.columnMismatches);
  expect(r.duplicates.left).toMatchObject({ keys: t.duplicateKeysLeft, rows: t.duplicateRowsLeft });
  expect(r.duplicates.right).toMatchObject({ keys: t.duplicateKeysRight, rows: t.duplicateRowsRight });
}

async function files(name: string, left: string, right: string) {
  const l = path.join(dir, `${name}-l.csv`);
  const r = path.join(dir, `${name}-r.csv`);
  await writeFile(l, left);
  await writeFile(r, right);
  return [l, r] as const;
}

describe('reconcile: planted differences', () => {
  it('finds exactly the planted differences in memory and partitioned, with the same answer', async () => {
    const l = path.join(dir, 'gen-l.csv');
    const r = path.join(dir, 'gen-r.csv');
    const truth = await generatePair(l, r, { rows: 20_000, rate: 0.01, duplicates: true, awkward: true, seed: 7 });
    expect(
      truth.onlyLeft * truth.onlyRight * truth.changed * truth.duplicateKeysLeft * truth.duplicateKeysRight,
    ).toBeGreaterThan(0);
    const mem = await run(l, r, { key: ['id'] });
    expect(mem.method).toBe('memory');
    expectTruth(mem, truth);
    const part = await run(l, r, { key: ['id'], memoryLimitBytes: 10_000, engine: 'stream' });
    expect(part.method).toBe('partitioned');
    expect(part.partitions).toBeGreaterThan(1);
    expectTruth(part, truth);
    expect(part.reason).toMatch(/above the in-memory limit/);
    // The DuckDB paths (one pass by default, partitioned when asked): same exact answer
    // (the awkward values — quotes, commas, newlines, non-ASCII — included).
    const checkpoints: unknown[] = [];
    const workDir = path.join(dir, 'onepass-work');
    const duck = await run(
      l,
      r,
      { key: ['id'], memoryLimitBytes: 10_000 },
      { workDir, onCheckpoint: (c) => checkpoints.push(c) },
    );
    expect(duck.method).toBe('duckdb');
    expect(duck.partitions).toBeUndefined();
    expect(duck.reason).toMatch(/same digest \(MD5 under a key drawn for this comparison\)/);
    expectTruth(duck, truth);
    // Nothing to resume from (a crashed attempt runs the queries again), and nothing left on disk.
    expect(checkpoints).toEqual([]);
    expect(existsSync(workDir)).toBe(false);
    const parted = await run(l, r, { key: ['id'], memoryLimitBytes: 10_000, partitions: 4 });
    expect(parted.method).toBe('duckdb');
    expect(parted.partitions).toBe(4);
    expectTruth(parted, truth);
    expect(duck.samples.changed).toHaveLength(10);
    expect(mem.samples.changed.length).toBe(10);
    expect(Object.keys(mem.samples.changed[0].diffs)).toHaveLength(1);
  });

  it('gives the same answer partitioned when the right side has its columns in another order or another delimiter, or values differ only by normalisation', async () => {
    const l = path.join(dir, 'perm-l.csv');
    const r = path.join(dir, 'perm-r.csv');
    const truth = await generatePair(l, r, { rows: 5_000, rate: 0.02, duplicates: true, awkward: true, seed: 3 });
    // The right file with its columns reversed: identical rows no longer have identical lines.
    const { readFile } = await import('node:fs/promises');
    const { parse } = await import('csv-parse/sync');
    const recs = parse(await readFile(r, 'utf8'), { relax_quotes: true });
    const q = (v: string) => (/[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
    const rev = path.join(dir, 'perm-r-rev.csv');
    await writeFile(rev, recs.map((row) => [...row].reverse().map(q).join(',')).join('\n') + '\n');
    const semi = path.join(dir, 'perm-r-semi.csv');
    await writeFile(
      semi,
      recs
        .map((row) => row.map((v) => (/[";\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v)).join(';'))
        .join('\n') + '\n',
    );
    for (const engine of ['stream', 'auto'] as const) {
      const semiRun = await reconcile(
        { uri: l },
        { uri: semi, csv: { delimiter: ';', quote: '"', escape: '"', header: true, encoding: 'utf8' } },
        opts({ key: ['id'], partitions: 4, engine }),
        { lakeRoot: dir, workDir: path.join(dir, `work-semi-${engine}`) },
      );
      for (const part of [
        await run(l, rev, { key: ['id'], partitions: 4, engine }),
        await run(l, r, { key: ['id'], partitions: 4, engine }),
        semiRun,
      ]) {
        expect(part.method).toBe(engine === 'stream' ? 'partitioned' : 'duckdb');
        expectTruth(part, truth);
      }
    }
    // DuckDB's one pass: the columns' order and the delimiter do not change the answer either.
    const semiOne = await reconcile(
      { uri: l },
      { uri: semi, csv: { delimiter: ';', quote: '"', escape: '"', header: true, encoding: 'utf8' } },
      opts({ key: ['id'], memoryLimitBytes: 1 }),
      { lakeRoot: dir, workDir: path.join(dir, 'work-semi-one') },
    );
    for (const one of [
      await run(l, rev, { key: ['id'], memoryLimitBytes: 1 }),
      await run(l, r, { key: ['id'], memoryLimitBytes: 1 }),
      semiOne,
    ]) {
      expect(one.method).toBe('duckdb');
      expect(one.partitions).toBeUndefined();
      expectTruth(one, truth);
    }
    // Identical lines are a shortcut only: rows equal after trimming and case folding still match.
    const [a, b] = await files('norm', 'id,v\n1,Hello \n2,x\n3,y\n', 'id,v\n1,hello\n2,x\n3,z\n');
    const norm = await run(a, b, { key: ['id'], trim: true, caseInsensitive: true, partitions: 2 });
    expect(norm.method).toBe('partitioned'); // key normalisation DuckDB cannot reproduce exactly
    expect(norm.reason).toMatch(/trim is on/);
    // Values equal only after normalisation on the DuckDB path: they come back to Strata's comparison.
    const [n1, n2] = await files('numtol', 'id,v\n1,1.00\n2,5\n3,x\n', 'id,v\n1,1.2\n2,6\n3,x\n');
    for (const way of [{ partitions: 2 }, { memoryLimitBytes: 1 }]) {
      const normDuck = await run(a, b, { key: ['id'], tolerance: 0.5, ...way });
      expect(normDuck.method).toBe('duckdb');
      expect(normDuck.counts).toEqual({ left: 3, right: 3, matched: 1, changed: 2, onlyLeft: 0, onlyRight: 0 });
      const tol = await run(n1, n2, { key: ['id'], tolerance: 0.5, ...way });
      expect(tol.method).toBe('duckdb');
      expect(tol.counts).toMatchObject({ matched: 2, changed: 1 });
    }
    expect(norm.counts).toEqual({ left: 3, right: 3, matched: 2, changed: 1, onlyLeft: 0, onlyRight: 0 });
    expect(norm.columnMismatches).toEqual({ v: 1 });
  });

  it('on the DuckDB path, a key duplicated on both sides (even in identical rows) gets the in-memory answer, and data without duplicates the planted one', async () => {
    // Identical duplicates on both sides: a join alone would count 1×1→4 and 2×1→2 equal pairs.
    const [l, r] = await files(
      'xdup',
      'id,v\n1,a\n1,a\n2,b\n2,b\n3,c\n3,c\n4,d\n5,e\n7,g\n7,h\n',
      'id,v\n1,a\n1,a\n2,b\n3,c\n3,c\n3,c\n4,d\n5,x\n6,f\n7,g\n',
    );
    const mem = await run(l, r, { key: ['id'] });
    expect(mem.method).toBe('memory');
    for (const partitions of [undefined, 1, 2, 3]) {
      const duck = await run(l, r, { key: ['id'], partitions, memoryLimitBytes: 1 });
      expect(duck.method).toBe('duckdb');
      expect(duck.partitions).toBe(partitions);
      expect({ ...duck.counts, dl: duck.duplicates.left.keys, dr: duck.duplicates.right.keys }).toEqual({
        ...mem.counts,
        dl: mem.duplicates.left.keys,
        dr: mem.duplicates.right.keys,
      });
      expect(duck.columnMismatches).toEqual(mem.columnMismatches);
    }
    expect(mem.counts).toEqual({ left: 10, right: 10, matched: 7, changed: 1, onlyLeft: 2, onlyRight: 2 });
    const gl = path.join(dir, 'nodup-l.csv');
    const gr = path.join(dir, 'nodup-r.csv');
    const truth = await generatePair(gl, gr, { rows: 20_000, rate: 0.01, awkward: true, seed: 11 });
    const duck = await run(gl, gr, { key: ['id'], partitions: 4 });
    expect(duck.method).toBe('duckdb');
    expectTruth(duck, truth);
    const one = await run(gl, gr, { key: ['id'], memoryLimitBytes: 1 });
    expect(one.method).toBe('duckdb');
    expectTruth(one, truth);
  });

  it('on the one-pass DuckDB path, keys of several columns with null values group as in memory, and each group is reported once', async () => {
    // Key (a, b) with "NA" as a null value: (1, NA) and (1, "") are different keys, (NA, 2) on both sides one key.
    const [l, r] = await files(
      'nullkey',
      'a,b,v\n1,NA,x\n1,,y\nNA,2,z\nNA,2,z\n3,3,q\n4,4,w\n',
      'a,b,v\n1,NA,x\n1,,Y\nNA,2,z\n3,3,q\n5,5,e\n',
    );
    const o = { key: ['a', 'b'], nullValues: ['NA'], sampleLimit: 100 };
    const mem = await run(l, r, o);
    expect(mem.method).toBe('memory');
    const one = await run(l, r, { ...o, memoryLimitBytes: 1 });
    expect(one.method).toBe('duckdb');
    expect(one.counts).toEqual(mem.counts);
    expect(one.counts).toEqual({ left: 6, right: 5, matched: 3, changed: 1, onlyLeft: 2, onlyRight: 1 });
    expect(one.duplicates).toEqual(mem.duplicates);
    expect(one.columnMismatches).toEqual({ v: 1 });
    const sorted = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).sort();
    for (const k of ['onlyLeft', 'onlyRight', 'changed'] as const)
      expect(sorted(one.samples[k])).toEqual(sorted(mem.samples[k]));
  });

  it('compares whole rows as multisets when no key is given', async () => {
    const [l, r] = await files('multiset', 'a,b\n1,x\n1,x\n2,y\n3,z\n', 'a,b\n2,y\n1,x\n4,w\n3,z\n3,z\n');
    const res = await run(l, r);
    expect(res.counts).toEqual({ left: 4, right: 5, matched: 3, changed: 0, onlyLeft: 1, onlyRight: 2 });
    const part = await run(l, r, { partitions: 3 });
    expect(part.counts).toEqual(res.counts);
    const one = await run(l, r, { memoryLimitBytes: 1 });
    expect(one.method).toBe('duckdb');
    expect(one.counts).toEqual(res.counts);
  });

  it('handles quoted delimiters, embedded newlines, unicode and a BOM', async () => {
    const [l, r] = await files(
      'quoted',
      '\ufeffid,text\n1,"a, b"\n2,"line1\nline2"\n3,"say ""hi"""\n4,東京\n',
      'id,text\n4,東京\n3,"say ""hi"""\n2,"line1\nline2"\n1,"a; b"\n',
    );
    const res = await run(l, r, { key: ['id'] });
    expect(res.counts).toMatchObject({ matched: 3, changed: 1 });
    expect(res.samples.changed[0]).toEqual({ key: { id: '1' }, diffs: { text: { left: 'a, b', right: 'a; b' } } });
  });

  it('applies tolerance, trimming, case-insensitivity and null equivalence', async () => {
    const [l, r] = await files(
      'norm',
      'id,amount,name,note\n1,10.00,Ada ,\n2,5.5,BOB,NULL\n3,7,cy,x\n',
      'id,amount,name,note\n1,10.004,ada,\n2,5.5,bob,\n3,7.2,cy,x\n',
    );
    const strict = await run(l, r, { key: ['id'] });
    expect(strict.counts.changed).toBe(3);
    const loose = await run(l, r, {
      key: ['id'],
      tolerance: 0.01,
      trim: true,
      caseInsensitive: true,
      nullValues: ['', 'NULL'],
    });
    expect(loose.counts).toMatchObject({ matched: 2, changed: 1 });
    expect(loose.columnMismatches).toEqual({ amount: 1 });
    const ignored = await run(l, r, { key: ['id'], ignore: ['amount', 'name', 'note'] });
    expect(ignored.counts.matched).toBe(3);
    const only = await run(l, r, { key: ['id'], columns: ['note'], nullValues: ['', 'NULL'] });
    expect(only.counts.matched).toBe(3);
  });

  it('handles empty and header-only files, and reports columns on one side only', async () => {
    const [l, r] = await files('empty', 'id,a,b\n', 'id,a,c\n1,x,y\n');
    const res = await run(l, r, { key: ['id'] });
    expect(res.counts).toEqual({ left: 0, right: 1, matched: 0, changed: 0, onlyLeft: 0, onlyRight: 1 });
    expect(res.columns).toEqual({ compared: ['a'], onlyLeft: ['b'], onlyRight: ['c'] });
    const [e1, e2] = await files('reallyempty', '', '');
    expect((await run(e1, e2)).counts.left).toBe(0);
  });

  it('rejects ragged rows and unknown key columns with a clear error', async () => {
    const [l, r] = await files('ragged', 'id,a\n1,x\n2,y,z\n', 'id,a\n1,x\n');
    await expect(run(l, r, { key: ['id'] })).rejects.toThrow(
      /ragged-l\.csv: line 3: row has a different number of columns than the header \(2\)/,
    );
    // The partitioned path reads raw lines: same check, same message (also for a quoted row, and a short one).
    await expect(run(l, r, { key: ['id'], partitions: 2, engine: 'stream' })).rejects.toThrow(
      /ragged-l\.csv: line 3: row has a different number of columns than the header \(2\)/,
    );
    // DuckDB's reader refuses it too; the streaming reader then gives the same exact message.
    await expect(run(l, r, { key: ['id'], partitions: 2 })).rejects.toThrow(
      /ragged-l\.csv: line 3: row has a different number of columns than the header \(2\)/,
    );
    const [ql] = await files('ragged-q', 'id,a\n1,x\n2,"y\nz",w\n', 'id,a\n');
    await expect(run(ql, r, { key: ['id'], partitions: 2 })).rejects.toThrow(
      /ragged-q-l\.csv: line 4: row has a different number of columns than the header \(2\)/,
    );
    const [sl] = await files('ragged-s', 'id,a\n1,x\n2\n', 'id,a\n');
    await expect(run(sl, r, { key: ['id'], partitions: 2 })).rejects.toThrow(
      /ragged-s-l\.csv: line 3: row has a different number of columns than the header \(2\)/,
    );
    for (const o of [{}, { memoryLimitBytes: 1 }])
      await expect(run(sl, r, { key: ['id'], ...o })).rejects.toThrow(
        /ragged-s-l\.csv: line 3: row has a different number of columns than the header \(2\)/,
      );
    await expect(run(r, r, { key: ['nope'] })).rejects.toThrow(
      /column "nope" is not in the left dataset: it has id, a/,
    );
    await expect(run(path.join(dir, 'missing.csv'), r)).rejects.toThrow(/dataset not found/);
  });

  it('resumes from a checkpoint without redoing finished partitions, with the same result', async () => {
    const l = path.join(dir, 'cp-l.csv');
    const r = path.join(dir, 'cp-r.csv');
    const truth = await generatePair(l, r, { rows: 5000, rate: 0.01, duplicates: true, seed: 3 });
    const workDir = path.join(dir, 'cp-work');
    const checkpoints = await diesAfterThree(
      l,
      r,
      { key: ['id'], partitions: 8, parallelism: 1, engine: 'stream' },
      workDir,
    );
    const last = checkpoints[checkpoints.length - 1];
    expect(last).toMatchObject({ leftDone: true, rightDone: true });
    expect(last.compared).toHaveLength(3);
    expect((await readdir(workDir)).length).toBe(16); // partition files kept for the resume
    const { res, partitionedAgain, resumedCompares } = await resumeFrom(
      l,
      r,
      { key: ['id'], partitions: 8, parallelism: 1, engine: 'stream' },
      workDir,
      last,
    );
    expect(partitionedAgain).toBe(false);
    expect(resumedCompares).toHaveLength(5); // only the 5 partitions left
    expectTruth(res, truth);
  });

  it('resumes the DuckDB path from its checkpoint: no side partitioned again, finished partitions not redone', async () => {
    const l = path.join(dir, 'dcp-l.csv');
    const r = path.join(dir, 'dcp-r.csv');
    const truth = await generatePair(l, r, { rows: 5000, rate: 0.01, duplicates: true, awkward: true, seed: 5 });
    const workDir = path.join(dir, 'dcp-work');
    const checkpoints = await diesAfterThree(l, r, { key: ['id'], partitions: 8 }, workDir);
    const last = checkpoints[checkpoints.length - 1];
    expect(last).toMatchObject({ version: 4, leftDone: true, rightDone: true });
    expect(last.compared).toHaveLength(3);
    const { res, partitionedAgain, resumedCompares } = await resumeFrom(
      l,
      r,
      { key: ['id'], partitions: 8 },
      workDir,
      last,
    );
    expect(res.method).toBe('duckdb');
    expect(partitionedAgain).toBe(false);
    expect(resumedCompares).toHaveLength(5);
    expectTruth(res, truth);
  });

  it('compares Parquet with CSV on the DuckDB path with the same exact answer as the streaming path', async () => {
    const l = path.join(dir, 'pq-l.csv');
    const r = path.join(dir, 'pq-r.csv');
    const truth = await generatePair(l, r, { rows: 4000, rate: 0.01, duplicates: true, awkward: true, seed: 13 });
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const pq = path.join(dir, 'pq-r.parquet');
    await c.run(`COPY (SELECT * FROM read_csv('${r}', all_varchar = true, header = true)) TO '${pq}' (FORMAT parquet)`);
    c.closeSync();
    db.closeSync();
    const duck = await run(l, pq, { key: ['id'], partitions: 3 });
    const stream = await run(l, pq, { key: ['id'], partitions: 3, engine: 'stream' });
    const one = await run(l, pq, { key: ['id'], memoryLimitBytes: 1 });
    expect(duck.method).toBe('duckdb');
    expect(one.method).toBe('duckdb');
    expect(stream.method).toBe('partitioned');
    expectTruth(duck, truth);
    expectTruth(one, truth);
    expectTruth(stream, truth);
  });
});
