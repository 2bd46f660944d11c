/**
 * npm run bench:reconcile [-- --rows 1000000,10000000]
 * Generates left/right CSVs (8 columns, ~0.1% rows missing, extra and changed, rows
 * reordered), then in child processes of the same script runs Strata's reconciler
 * (partitioned path) and DuckDB computing the same differences with a FULL OUTER JOIN on
 * the key. Prints time, rows/s and peak RSS of each, and checks that the answers agree.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { reconcile } from '../activities/reconcile/client.js';
import { ReconcileOptions } from '../schemas/reconcile.js';
import { COLUMNS, generatePair } from '../test/fakes/reconcile-data.js';

const self = fileURLToPath(import.meta.url);
const HEAP_MB = Number(process.env.BENCH_HEAP_MB ?? 160);

async function child(mode: string, left: string, right: string) {
  const t0 = performance.now();
  let counts: Record<string, number>;
  if (mode === 'strata') {
    const work = path.join(os.tmpdir(), `strata-bench-work-${process.pid}`);
    const r = await reconcile({ uri: left }, { uri: right }, ReconcileOptions.parse({ key: ['id'], memoryLimitBytes: 1 }), { lakeRoot: '/', workDir: work });
    counts = { matched: r.counts.matched, changed: r.counts.changed, onlyLeft: r.counts.onlyLeft, onlyRight: r.counts.onlyRight };
    await rm(work, { recursive: true, force: true });
  } else {
    const db = await DuckDBInstance.create(':memory:', { threads: String(os.cpus().length) });
    const c = await db.connect();
    const cols = COLUMNS.filter((x) => x !== 'id');
    const same = cols.map((x) => `l."${x}" IS NOT DISTINCT FROM r."${x}"`).join(' AND ');
    const rows = (
      await c.runAndReadAll(`
      WITH l AS (SELECT * FROM read_csv('${left}', all_varchar = true, header = true)),
           r AS (SELECT * FROM read_csv('${right}', all_varchar = true, header = true))
      SELECT count(*) FILTER (WHERE l.id IS NOT NULL AND r.id IS NOT NULL AND (${same})),
             count(*) FILTER (WHERE l.id IS NOT NULL AND r.id IS NOT NULL AND NOT (${same})),
             count(*) FILTER (WHERE r.id IS NULL),
             count(*) FILTER (WHERE l.id IS NULL)
      FROM l FULL OUTER JOIN r ON l.id = r.id`)
    ).getRows()[0];
    counts = { matched: Number(rows[0]), changed: Number(rows[1]), onlyLeft: Number(rows[2]), onlyRight: Number(rows[3]) };
    c.closeSync();
    db.closeSync();
  }
  const ms = performance.now() - t0;
  process.stdout.write(JSON.stringify({ ms, maxRssMb: process.resourceUsage().maxRSS / 1024, counts }) + '\n');
}

function runChild(mode: string, l: string, r: string) {
  // Strata runs with its heap capped (as a worker should be): its live set is bounded by
  // partition size, not input size, and the cap keeps V8 from growing the heap lazily.
  const heap = mode === 'strata' ? [`--max-old-space-size=${HEAP_MB}`] : [];
  const p = spawnSync(process.execPath, [...heap, '--import', 'tsx', self, '--child', mode, l, r], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (p.status !== 0) throw new Error(`${mode} failed: ${p.stderr}`);
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as { ms: number; maxRssMb: number; counts: Record<string, number> };
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv[1], argv[2], argv[3]);
  const i = argv.indexOf('--rows');
  const sizes = (i >= 0 ? argv[i + 1] : '1000000,10000000').split(',').map(Number);
  const dir = path.join(os.tmpdir(), 'strata-bench-reconcile');
  mkdirSync(dir, { recursive: true });
  console.log('bench:reconcile — 8 columns, ~0.1% missing / extra / changed, reordered; exact answers required');
  console.log('rows        engine   time (s)   rows/s      peak RSS (MB)   matched / changed / only-left / only-right');
  for (const n of sizes) {
    const l = path.join(dir, `l-${n}.csv`);
    const r = path.join(dir, `r-${n}.csv`);
    if (!existsSync(l) || !existsSync(r)) {
      process.stdout.write(`generating ${n.toLocaleString('en')} rows… `);
      const t = performance.now();
      await generatePair(l, r, { rows: n, rate: 0.001, seed: 1 });
      console.log(`${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    const s = runChild('strata', l, r);
    const d = runChild('duckdb', l, r);
    for (const [name, x] of [['strata', s], ['duckdb', d]] as const)
      console.log(`${n.toLocaleString('en').padEnd(12)}${name.padEnd(9)}${(x.ms / 1000).toFixed(2).padStart(8)}   ${Math.round((2 * n) / (x.ms / 1000)).toLocaleString('en').padStart(10)}   ${x.maxRssMb.toFixed(0).padStart(12)}      ${x.counts.matched} / ${x.counts.changed} / ${x.counts.onlyLeft} / ${x.counts.onlyRight}`);
    const agree = JSON.stringify(s.counts) === JSON.stringify(d.counts);
    console.log(`  answers agree: ${agree ? 'yes' : 'NO'}; time ratio strata/duckdb ${(s.ms / d.ms).toFixed(2)} (target ≤ 2); strata peak RSS ${s.maxRssMb.toFixed(0)} MB (target ≤ 300 at 10 M rows)`);
    if (!agree) process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
