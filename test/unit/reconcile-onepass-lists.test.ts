import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { reconcile } from '../../activities/reconcile/client.js';
import { diffWriter } from '../../activities/reconcile/diffs.js';
import { rowDigest } from '../../activities/reconcile/duck.js';
import { ReconcileOptions } from '../../schemas/reconcile.js';
import { generatePair, truthCounts } from '../fakes/reconcile-data.js';
import { tempDir } from '../harness/tmp.js';

describe("reconcile: the one pass's full lists of differences", () => {
  it('go into a new file every 50,000 records, every difference in exactly one of them', async () => {
    const dir = await tempDir('strata-onepass-diffs-');
    const l = path.join(dir, 'l.csv');
    const r = path.join(dir, 'r.csv');
    // About 24,000 changed keys (a record per differing column), 24,000 only-left and 24,000 only-right rows.
    const truth = await generatePair(l, r, { rows: 120_000, rate: 0.2, awkward: true, seed: 11 });
    const lists = path.join(dir, 'lists');
    const res = await reconcile({ uri: l }, { uri: r }, ReconcileOptions.parse({ key: ['id'], memoryLimitBytes: 1 }), {
      lakeRoot: dir,
      workDir: path.join(dir, 'work'),
      diffs: (p) => diffWriter(lists, p),
    });
    expect(res.method).toBe('duckdb');
    expect(res.reason).toMatch(/settled the keys/); // the one pass, not the partitioned path
    expect(res.counts).toEqual(truthCounts(truth));
    const files = (await readdir(lists)).filter((f) => f.endsWith('.jsonl')).sort();
    const total = truth.changed + truth.onlyLeft + truth.onlyRight;
    expect(total).toBeGreaterThan(60_000);
    expect(files.length).toBeGreaterThanOrEqual(2);
    const seen = new Set<string>();
    const keys = { changed: new Set<string>(), only_left: 0, only_right: 0 };
    for (const f of files) {
      const lines = (await readFile(path.join(lists, f), 'utf8')).split('\n').filter(Boolean);
      // A file is closed at the first chunk boundary past 50,000 records: one DuckDB chunk (2,048 rows) over at most.
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.length).toBeLessThanOrEqual(50_000 + 2_048 * 8);
      for (const line of lines) {
        expect(seen.has(line)).toBe(false);
        seen.add(line);
        const d: unknown = JSON.parse(line);
        if (typeof d !== 'object' || d === null || !('kind' in d) || !('key' in d)) throw new Error(`bad line ${line}`);
        if (d.kind === 'changed') keys.changed.add(String(d.key));
        else if (d.kind === 'only_left') keys.only_left++;
        else if (d.kind === 'only_right') keys.only_right++;
      }
    }
    expect(keys.changed.size).toBe(truth.changed);
    expect(keys.only_left).toBe(truth.onlyLeft);
    expect(keys.only_right).toBe(truth.onlyRight);
  });
});

describe('reconcile: the one pass settles a pair only when its values are the same', () => {
  it('keys its digest and keeps values apart: shifted text, nulls and empty strings are not taken for equal', async () => {
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    try {
      const rows = [
        ['ab', 'c'],
        ['a', 'bc'],
        ['abc', ''],
        ['', 'abc'],
        [null, 'abc'],
        ['abc', null],
        [null, null],
        ['', ''],
      ];
      const values = rows.map((r) => `(${r.map((v) => (v === null ? 'NULL' : `'${v}'`)).join(', ')})`).join(', ');
      const digests = async (d: ReturnType<typeof rowDigest>) =>
        (await conn.runAndReadAll(`SELECT ${d([0, 1], true)}::VARCHAR FROM (VALUES ${values}) t(c0, c1)`))
          .getRows()
          .map((r) => String(r[0]));
      const one = rowDigest();
      const a = await digests(one);
      expect(new Set(a).size).toBe(rows.length);
      expect(await digests(one)).toEqual(a); // the same key: the same digests (both sides of one comparison)
      const b = await digests(rowDigest());
      expect(b.filter((x, i) => x === a[i])).toEqual([]); // a new key per comparison
    } finally {
      conn.closeSync();
      db.closeSync();
    }
  });

  it('reports a changed pair whose values only moved across a column boundary', async () => {
    const dir = await tempDir('strata-onepass-shift-');
    const l = path.join(dir, 'l.csv');
    const r = path.join(dir, 'r.csv');
    await writeFile(l, 'id,a,b\n1,ab,c\n2,x,y\n3,same,same\n');
    await writeFile(r, 'id,a,b\n1,a,bc\n2,xy,\n3,same,same\n');
    const res = await reconcile({ uri: l }, { uri: r }, ReconcileOptions.parse({ key: ['id'], memoryLimitBytes: 1 }), {
      lakeRoot: dir,
      workDir: path.join(dir, 'work'),
    });
    expect(res.method).toBe('duckdb');
    expect(res.reason).toMatch(/digest \(MD5 under a key drawn for this comparison\)/);
    expect(res.counts).toMatchObject({ matched: 1, changed: 2, onlyLeft: 0, onlyRight: 0 });
  });
});
