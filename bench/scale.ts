/**
 * npm run bench:scale — pipelines at production size must run, with nothing Strata writes
 * growing with them. Two shapes, each registered in a metastore and run by reference:
 *   noop: 10,000 no-op tasks, 100 wide, each reporting a dataset task's output (BENCH_TASKS, BENCH_WIDTH);
 *   sql:  50,000 SQL tasks on DuckDB, 100 wide, about 300 bytes of SQL each, every task
 *         writing its result as a Parquet file (BENCH_SQL_TASKS).
 * Prints wall time, tasks/s, executions (continue-as-new), the largest payload and history
 * Strata wrote, the spec size, and the peak RSS of this process (it hosts the worker).
 * BENCH_SHAPES=noop,sql picks shapes. The metastore is a fresh Postgres database
 * (STRATA_BENCH_PG_URL, default the local server), else embedded PGlite.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { RunsService } from '../client/runs.js';
import { validateSpec, type PipelineSpec } from '../schemas/pipeline.js';
import { openDb, type Db } from '../store/db.js';
import { migrate } from '../store/migrate.js';
import { registerPipeline } from '../store/pipelines.js';
import { startDevServer } from '../workers/dev-server.js';
import { createStrataWorker } from '../workers/worker.js';
import { dataConverterFrom, generatePayloadKeys } from '../client/data-converter.js';
import { kib, runHistoryStats } from './history-stats.js';
import { datasetOutput, layered, sqlTask } from './shapes.js';

const N = Number(process.env.BENCH_TASKS ?? 10_000);
const WIDTH = Number(process.env.BENCH_WIDTH ?? 100);
const SQL_N = Number(process.env.BENCH_SQL_TASKS ?? 50_000);
const SHAPES = (process.env.BENCH_SHAPES ?? 'noop,sql').split(',');
const ADMIN = process.env.STRATA_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const TENANT = 'bench';

async function metastore(): Promise<{ db: Db; drop: () => Promise<void> }> {
  const name = `strata_bench_scale_${process.pid}`;
  try {
    const admin = new pg.Client({ connectionString: ADMIN });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(ADMIN);
    url.pathname = `/${name}`;
    const db = await openDb({ url: url.toString() });
    return {
      db,
      drop: async () => {
        await db.close();
        const a = new pg.Client({ connectionString: ADMIN });
        await a.connect();
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await a.end();
      },
    };
  } catch {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'strata-scale-meta-'));
    const db = await openDb({ dataDir: dir });
    return { db, drop: async () => (await db.close(), await rm(dir, { recursive: true, force: true })) };
  }
}

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const server = await startDevServer({ headless: true });
  const { db, drop } = await metastore();
  await migrate(db);
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  const dataConverter = dataConverterFrom({
    STRATA_PAYLOAD_KEYS: process.env.STRATA_PAYLOAD_KEYS || generatePayloadKeys('bench'),
  });
  const client = new Client({ connection, dataConverter });
  const runs = new RunsService(client, { taskQueue: 'scale', namespace: 'default', uiUrl: '', store: db });
  const lakeRoot = await mkdtemp(path.join(os.tmpdir(), 'strata-scale-'));
  const worker = await createStrataWorker({
    connection: native,
    taskQueue: 'scale',
    deps: { lakeRoot, connections: {}, db },
    dataConverter,
  });

  const shapes: [string, PipelineSpec][] = [];
  for (const shape of SHAPES) {
    const doc =
      shape === 'noop'
        ? {
            id: 'scale_noop',
            maxParallel: 200,
            tasks: layered(N, WIDTH, (i) => ({ kind: 'noop', returns: datasetOutput(i) })),
          }
        : {
            id: 'scale_sql',
            maxParallel: Number(process.env.BENCH_SQL_PARALLEL ?? 16),
            tasks: layered(SQL_N, WIDTH, sqlTask),
          };
    const r = validateSpec(doc);
    if (!r.ok) throw new Error(JSON.stringify(r.problems.slice(0, 3)));
    shapes.push([shape, r.spec]);
  }

  await worker.runUntil(async () => {
    for (const [shape, spec] of shapes) {
      const specBytes = Buffer.byteLength(JSON.stringify(spec));
      const reg = await registerPipeline(db, TENANT, spec);
      const t0 = performance.now();
      const h = await runs.start({
        spec,
        contentHash: reg.contentHash,
        pipelineVersion: reg.version,
        tenant: TENANT,
        trigger: 'bench',
      });
      const st = await runs.wait(h.runId);
      const ms = performance.now() - t0;
      const n = spec.tasks.length;
      const ok = st.counts?.success ?? 0;
      const stats = await runHistoryStats(client, h.workflowId);
      const answer = Buffer.byteLength(JSON.stringify(await client.workflow.getHandle(h.workflowId).query('state')));
      const files =
        shape === 'sql'
          ? (await readdir(path.join(lakeRoot, TENANT, 'bench', 'out'))).filter((f) => f.endsWith('.parquet')).length
          : undefined;
      console.log(
        `bench:scale ${shape} — ${n.toLocaleString('en')} tasks (${WIDTH} wide), spec ${kib(specBytes)}${shape === 'sql' ? ' (≈300 bytes of SQL per task, a Parquet output each)' : ''}`,
      );
      console.log(
        `  status ${st.status}, ${ok.toLocaleString('en')}/${n.toLocaleString('en')} tasks succeeded in ${(ms / 1000).toFixed(1)} s (${((n / ms) * 1000).toFixed(0)} tasks/s)${files !== undefined ? `, ${files.toLocaleString('en')} Parquet files` : ''}`,
      );
      console.log(
        `  ${stats.executions.length} executions (continue-as-new ${st.continuations}×), largest history ${stats.maxEvents.toLocaleString('en')} events / ${kib(stats.maxHistoryBytes)} (limits 51,200 events / 50 MiB)`,
      );
      console.log(
        `  largest payload Strata wrote ${kib(stats.largestPayload)} (${stats.largestAt}; limit 2 MiB), state query answer ${kib(answer)}`,
      );
      console.log(
        `  peak RSS of this process (worker, client, metastore pool) ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`,
      );
    }
  });
  await connection.close();
  await native.close();
  await server.stop();
  await drop();
  await rm(lakeRoot, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
