/**
 * engine: spark runs the comparison as generated SQL. The same SQL, run here on DuckDB over
 * the same files (it is plain SQL), must give the local exact path's answer.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../../activities/reconcile/client.js';
import { comparisonSql, sqlAnswer } from '../../activities/reconcile/spark-sql.js';
import { ReconcileOptions } from '../../schemas/reconcile.js';
import { COLUMNS, generatePair } from '../fakes/reconcile-data.js';

let dir: string;
let l: string;
let r: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'strata-sparksql-'));
  l = path.join(dir, 'l.csv');
  r = path.join(dir, 'r.csv');
  await generatePair(l, r, { rows: 20_000, rate: 0.02, seed: 9, duplicates: true, awkward: true });
});

async function viaSql(o: ReconcileOptions) {
  const compared = COLUMNS.filter((c) => !o.key.includes(c) && !o.ignore.includes(c));
  const sql = comparisonSql(
    { key: o.key, compared, leftColumns: COLUMNS, rightColumns: COLUMNS },
    o,
    (s) => `"${s.replaceAll('"', '""')}"`,
  );
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  try {
    for (const [v, f] of [
      ['strata_left', l],
      ['strata_right', r],
    ])
      await c.run(`CREATE VIEW ${v} AS SELECT * FROM read_csv('${f}', all_varchar = true, header = true)`);
    const rows = (await c.runAndReadAll(sql)).getRowObjectsJson();
    return sqlAnswer(rows[0], compared);
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

describe('engine spark: the generated SQL', () => {
  for (const o of [
    { key: ['id'] },
    { key: ['id'], tolerance: 1.5 },
    { key: ['id'], trim: true, caseInsensitive: true, ignore: ['note'] },
    { key: ['id', 'name'] },
    {},
  ] as Partial<ReconcileOptions>[])
    it(`gives the local exact answer (${JSON.stringify(o)})`, async () => {
      const opts = ReconcileOptions.parse(o);
      const local = await reconcile({ uri: l }, { uri: r }, opts, {
        lakeRoot: dir,
        workDir: path.join(dir, `w-${Math.random()}`),
      });
      const sql = await viaSql(opts);
      expect(local.counts.changed + local.counts.onlyLeft).toBeGreaterThan(0);
      expect(sql.counts).toEqual(local.counts);
      expect(sql.columnMismatches).toEqual(local.columnMismatches);
      expect(sql.duplicates.left).toEqual({ keys: local.duplicates.left.keys, rows: local.duplicates.left.rows });
      expect(sql.duplicates.right).toEqual({ keys: local.duplicates.right.keys, rows: local.duplicates.right.rows });
    });
});
