/**
 * Where a DuckDB sandbox's time goes, per task: open, lock, a small query with a Parquet
 * output, close; sequential (latency) and 16 at once (throughput), on this process alone.
 * Usage: npm run bench:sandbox [-- tasks=400]; STRATA_SQL_SHARED_INSTANCE=0 for an instance per task.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { runDuckdb } from '../activities/sql/duckdb.js';
import { openDuck } from '../activities/sql/sandbox.js';

const N = Number(process.argv[2] ?? 400);
const SQL = `SELECT i AS id, i * 2 AS amount, 'x' || i AS label FROM range(100) t(i) WHERE i % 3 = 0`;

async function phases(dir: string) {
  const t = { open: 0, lock: 0, query: 0, close: 0 };
  for (let i = 0; i < N; i++) {
    let a = performance.now();
    const duck = await openDuck();
    t.open += performance.now() - a;
    a = performance.now();
    await duck.lock({ files: [path.join(dir, `o${i}.parquet`)], dirs: [dir + '/'], scratch: path.join(dir, 's') });
    t.lock += performance.now() - a;
    a = performance.now();
    await duck.conn.run(`COPY (${SQL}) TO '${path.join(dir, `o${i}.parquet`)}' (FORMAT parquet)`);
    t.query += performance.now() - a;
    a = performance.now();
    await duck.close();
    t.close += performance.now() - a;
  }
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, +(v / N).toFixed(2)]));
}

async function throughput(dir: string, parallel: number) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < N) {
        const i = next++;
        await runDuckdb({
          lakeRoot: dir,
          sql: SQL,
          output: `out/t${i}.parquet`,
          attemptTag: 'a1',
          signal: new AbortController().signal,
          scratch: path.join(dir, 'scratch', String(i)),
        });
      }
    }),
  );
  h.disable();
  const s = (performance.now() - start) / 1000;
  return { tasksPerSec: +(N / s).toFixed(1), eventLoopDelayP99ms: +(h.percentile(99) / 1e6).toFixed(1) };
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'strata-sandbox-bench-'));
try {
  await phases(dir); // warm up
  console.log(`sandbox phases, ms per task (sequential, ${N} tasks):`, await phases(dir));
  console.log(`runDuckdb with a Parquet output, 1 at a time:`, await throughput(dir, 1));
  console.log(`runDuckdb with a Parquet output, 16 at once:`, await throughput(dir, 16));
} finally {
  await rm(dir, { recursive: true, force: true });
}
