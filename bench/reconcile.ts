/**
 * npm run bench:reconcile [-- --rows 1000000,10000000] [--shapes plain,messy,parquet]
 * Generates left/right datasets (8 columns, ~0.1% rows missing, extra and changed, rows
 * reordered) in three shapes: plain quote-free CSV, messy CSV (quoted fields with commas,
 * quotes and line breaks, non-ASCII text) and Parquet (the messy data), then in child
 * processes of the same script runs Strata's reconciler (its default engine, method bloom
 * unless --no-bloom, and the streaming partitioner with --stream) and DuckDB computing the same differences with a
 * FULL OUTER JOIN on the key. Prints time, rows/s and peak RSS of each, and checks that
 * the answers agree. Parquet runs at the largest size only.
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
const read = (f: string) =>
  f.endsWith('.parquet')
    ? `(SELECT ${COLUMNS.map((c) => `CAST("${c}" AS VARCHAR) AS "${c}"`).join(', ')} FROM read_parquet('${f}'))`
    : `read_csv('${f}', all_varchar = true, header = true)`;
const HEAP_MB = Number(process.env.BENCH_HEAP_MB ?? 160);

async function child(mode: string, left: string, right: string) {
  const t0 = performance.now();
  let counts: Record<string, number>;
  if (mode.startsWith('strata')) {
    const work = path.join(os.tmpdir(), `strata-bench-work-${process.pid}`);
    const r = await reconcile(
      { uri: left },
      { uri: right },
      ReconcileOptions.parse({
        key: ['id'],
        memoryLimitBytes: 1,
        engine: mode === 'strata-stream' ? 'stream' : 'auto',
        method: mode === 'strata-bloom' ? 'bloom' : 'auto',
      }),
      { lakeRoot: '/', workDir: work },
    );
    counts = {
      matched: r.counts.matched,
      changed: r.counts.changed,
      onlyLeft: r.counts.onlyLeft,
      onlyRight: r.counts.onlyRight,
    };
    await rm(work, { recursive: true, force: true });
  } else {
    const db = await DuckDBInstance.create(':memory:', { threads: String(os.cpus().length) });
    const c = await db.connect();
    const cols = COLUMNS.filter((x) => x !== 'id');
    const same = cols.map((x) => `l."${x}" IS NOT DISTINCT FROM r."${x}"`).join(' AND ');
    const rows = (
      await c.runAndReadAll(`
      WITH l AS (SELECT * FROM ${read(left)}),
           r AS (SELECT * FROM ${read(right)})
      SELECT count(*) FILTER (WHERE l.id IS NOT NULL AND r.id IS NOT NULL AND (${same})),
             count(*) FILTER (WHERE l.id IS NOT NULL AND r.id IS NOT NULL AND NOT (${same})),
             count(*) FILTER (WHERE r.id IS NULL),
             count(*) FILTER (WHERE l.id IS NULL)
      FROM l FULL OUTER JOIN r ON l.id = r.id`)
    ).getRows()[0];
    counts = {
      matched: Number(rows[0]),
      changed: Number(rows[1]),
      onlyLeft: Number(rows[2]),
      onlyRight: Number(rows[3]),
    };
    c.closeSync();
    db.closeSync();
  }
  const ms = performance.now() - t0;
  // CPU seconds of the whole process (every thread): on a shared, loaded machine wall time
  // follows the scheduler; CPU time is the work each side did.
  const u = process.cpuUsage();
  const cpuS = (u.user + u.system) / 1e6;
  process.stdout.write(JSON.stringify({ ms, cpuS, maxRssMb: process.resourceUsage().maxRSS / 1024, counts }) + '\n');
}

function runChild(mode: string, l: string, r: string) {
  // Strata runs with its heap capped (as a worker should be): its live set is bounded by
  // partition size, not input size, and the cap keeps V8 from growing the heap lazily.
  const heap = mode.startsWith('strata') ? [`--max-old-space-size=${HEAP_MB}`] : [];
  const p = spawnSync(process.execPath, [...heap, '--import', 'tsx', self, '--child', mode, l, r], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (p.status !== 0) throw new Error(`${mode} failed: ${p.stderr}`);
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as {
    ms: number;
    cpuS: number;
    maxRssMb: number;
    counts: Record<string, number>;
  };
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv[1], argv[2], argv[3]);
  const i = argv.indexOf('--rows');
  const sizes = (i >= 0 ? argv[i + 1] : '1000000,10000000').split(',').map(Number);
  const j = argv.indexOf('--shapes');
  const shapes = (j >= 0 ? argv[j + 1] : 'plain,messy,parquet').split(',');
  const engines = [
    'strata',
    ...(argv.includes('--stream') ? ['strata-stream'] : []),
    ...(argv.includes('--no-bloom') ? [] : ['strata-bloom']),
    'duckdb',
  ];
  const dir = path.join(os.tmpdir(), 'strata-bench-reconcile');
  mkdirSync(dir, { recursive: true });
  console.log('bench:reconcile — 8 columns, ~0.1% missing / extra / changed, reordered; exact answers required');
  console.log(
    'rows        shape    engine         time (s)   cpu (s)   rows/s      peak RSS (MB)   matched / changed / only-left / only-right',
  );
  for (const shape of shapes)
    for (const n of shape === 'parquet' ? [Math.max(...sizes)] : sizes) {
      const messy = shape !== 'plain';
      const l = path.join(dir, `l-${messy ? 'messy-' : ''}${n}.csv`);
      const r = path.join(dir, `r-${messy ? 'messy-' : ''}${n}.csv`);
      if (!existsSync(l) || !existsSync(r)) {
        process.stdout.write(`generating ${n.toLocaleString('en')} ${messy ? 'messy ' : ''}rows… `);
        const t = performance.now();
        await generatePair(l, r, { rows: n, rate: 0.001, seed: 1, awkward: messy });
        console.log(`${((performance.now() - t) / 1000).toFixed(1)} s`);
      }
      let [L, R] = [l, r];
      if (shape === 'parquet') {
        [L, R] = [l.replace(/\.csv$/, '.parquet'), r.replace(/\.csv$/, '.parquet')];
        if (!existsSync(L) || !existsSync(R)) {
          const db = await DuckDBInstance.create(':memory:');
          const c = await db.connect();
          for (const [from, to] of [
            [l, L],
            [r, R],
          ])
            await c.run(
              `COPY (SELECT * FROM read_csv('${from}', all_varchar = true, header = true)) TO '${to}' (FORMAT parquet)`,
            );
          c.closeSync();
          db.closeSync();
        }
      }
      const results = engines.map((e) => [e, runChild(e, L, R)] as const);
      for (const [name, x] of results)
        console.log(
          `${n.toLocaleString('en').padEnd(12)}${shape.padEnd(9)}${name.padEnd(14)}${(x.ms / 1000).toFixed(2).padStart(8)}   ${x.cpuS.toFixed(1).padStart(7)}   ${Math.round(
            (2 * n) / (x.ms / 1000),
          )
            .toLocaleString('en')
            .padStart(
              10,
            )}   ${x.maxRssMb.toFixed(0).padStart(12)}      ${x.counts.matched} / ${x.counts.changed} / ${x.counts.onlyLeft} / ${x.counts.onlyRight}`,
        );
      const s = results[0][1];
      const d = results[results.length - 1][1];
      // The exact engines must agree; bloom (approximate) may miss differences, at about its declared rate.
      const agree = results.every(
        ([e, x]) => e === 'strata-bloom' || JSON.stringify(x.counts) === JSON.stringify(d.counts),
      );
      const bloom = results.find(([e]) => e === 'strata-bloom')?.[1];
      if (bloom) {
        const real = d.counts.changed + d.counts.onlyLeft + d.counts.onlyRight;
        const seen = bloom.counts.changed + bloom.counts.onlyLeft + bloom.counts.onlyRight;
        console.log(
          `  bloom (declared rate 0.01): ${real - seen} of ${real} differences missed (rate ${((real - seen) / Math.max(1, real)).toFixed(4)}); time ratio bloom/duckdb ${(bloom.ms / d.ms).toFixed(2)}`,
        );
      }
      console.log(
        `  answers agree: ${agree ? 'yes' : 'NO'}; time ratio strata/duckdb ${(s.ms / d.ms).toFixed(2)} (target ≤ 2), CPU ratio ${(s.cpuS / d.cpuS).toFixed(2)}; strata peak RSS ${s.maxRssMb.toFixed(0)} MB (target ≤ 300)`,
      );
      if (!agree) process.exitCode = 1;
    }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
