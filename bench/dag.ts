/**
 * npm run bench:dag — orchestration overhead of pipelineRun against a hand-written
 * minimal workflow, same dev server, same worker, same no-op activity, one process.
 * Shapes: a 200-task chain and 1 → 500 → 1 fan-out/fan-in. Step overhead is the gap
 * between consecutive no-op activity starts in the chain. The chain runs twice through the
 * engine: no-ops as activities (a round trip through the server's activity queue each) and as
 * local activities (run option `localShortTasks`). All of it on a dev server in memory, then the
 * chains again on one persisting to a SQLite file (as `npm start` runs it); BENCH_DEV_DB=memory
 * or =file for one of them.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createActivities } from '../activities/index.js';
import { RunsService } from '../client/runs.js';
import type { PipelineSpec } from '../schemas/pipeline.js';
import { spec } from '../test/harness/specs.js';
import type { TaskActivityInput } from '../schemas/run.js';
import { startDevServer } from '../workers/dev-server.js';
import { dataConverterFrom, generatePayloadKeys } from '../client/data-converter.js';

const CHAIN = Number(process.env.BENCH_CHAIN ?? 200);
const FAN = Number(process.env.BENCH_FAN ?? 500);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);

const starts: number[] = [];

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const gaps = (xs: number[]) => xs.slice(1).map((x, i) => x - xs[i]);

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const modes = (process.env.BENCH_DEV_DB ?? 'memory,file').split(',') as ('memory' | 'file')[];
  for (const db of modes) await onServer(db);
}

async function onServer(db: 'memory' | 'file') {
  console.log(`starting a Temporal dev server (${db === 'file' ? 'state in a SQLite file' : 'in memory'})…`);
  const dbDir = await mkdtemp(path.join(os.tmpdir(), 'strata-bench-dev-'));
  const server = await startDevServer({
    headless: true,
    ...(db === 'file' ? { dbFilename: path.join(dbDir, 'temporal.db') } : {}),
  });
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  // Payloads encrypted as deployed, for both the pipeline and the hand-written workflow.
  const dataConverter = dataConverterFrom({
    STRATA_PAYLOAD_KEYS: process.env.STRATA_PAYLOAD_KEYS || generatePayloadKeys('bench'),
  });
  const client = new Client({ connection, dataConverter });
  const taskQueue = 'bench-dag';
  const runs = new RunsService(client, { taskQueue, namespace: 'default', uiUrl: '' });
  const acts = createActivities({ lakeRoot: await mkdtemp(path.join(os.tmpdir(), 'strata-bench-')), connections: {} });
  const noop = acts.noopTask as (i: TaskActivityInput) => Promise<unknown>;
  const worker = await Worker.create({
    connection: native,
    taskQueue,
    workflowsPath: fileURLToPath(new URL('./workflows.ts', import.meta.url)),
    activities: {
      ...acts,
      noopTask: (i: TaskActivityInput) => {
        starts.push(performance.now());
        return noop(i);
      },
    },
    reuseV8Context: true,
    dataConverter,
    maxConcurrentWorkflowTaskExecutions: 20,
    maxConcurrentActivityTaskExecutions: 600,
  });

  const chainSpec = spec({
    id: 'bench_chain',
    maxParallel: 1,
    tasks: Array.from({ length: CHAIN }, (_, i) => ({ id: `t${i}`, kind: 'noop', needs: i ? [`t${i - 1}`] : [] })),
  });
  const fanSpec = spec({
    id: 'bench_fan',
    maxParallel: 500,
    tasks: [
      { id: 'start', kind: 'noop' },
      ...Array.from({ length: FAN }, (_, i) => ({ id: `f${i}`, kind: 'noop', needs: ['start'] })),
      { id: 'end', kind: 'noop', needs: Array.from({ length: FAN }, (_, i) => `f${i}`) },
    ],
  });

  async function measure(label: string, fn: () => Promise<void>) {
    const totals: number[] = [];
    const stepGaps: number[] = [];
    for (let r = 0; r < REPEAT; r++) {
      starts.length = 0;
      const t0 = performance.now();
      await fn();
      totals.push(performance.now() - t0);
      stepGaps.push(...gaps(starts));
    }
    return { label, total: pct(totals, 50), median: pct(stepGaps, 50), p95: pct(stepGaps, 95) };
  }

  const results = await worker.runUntil(async () => {
    // warm-up: bundle caches, connections
    await client.workflow.execute('bareChain', { taskQueue, workflowId: `warm-${Date.now()}`, args: [5] });
    await runs.wait(
      (
        await runs.start({
          spec: spec({ id: 'warm', tasks: [{ id: 'a', kind: 'noop' }] }),
          tenant: 'bench',
          trigger: 'bench',
        })
      ).runId,
    );
    let k = 0;
    const engine = async (s: PipelineSpec, options?: { localShortTasks: boolean }) => {
      const st = await runs.wait(
        (await runs.start({ spec: s, tenant: 'bench', trigger: 'bench', runKey: `${s.id}-${k++}`, options })).runId,
      );
      if (st.status !== 'success') throw new Error(`${s.id} ended ${st.status}`);
    };
    const bare = (wf: string, n: number) =>
      client.workflow.execute(wf, { taskQueue, workflowId: `${wf}-${k++}`, args: [n] });
    return {
      chainEngine: await measure('chain engine', () => engine(chainSpec)),
      chainLocal: await measure('chain engine, local', () => engine(chainSpec, { localShortTasks: true })),
      chainBare: await measure('chain bare', () => bare('bareChain', CHAIN)),
      ...(db === 'memory'
        ? {
            fanEngine: await measure('fan engine', () => engine(fanSpec)),
            fanBare: await measure('fan bare', () => bare('bareFan', FAN)),
          }
        : {}),
    };
  });

  const f = (x: number) => x.toFixed(1);
  console.log(
    `\nbench:dag — ${REPEAT} runs each, median shown; dev server ${db === 'file' ? 'on a SQLite file' : 'in memory'} on loopback, 1 worker process`,
  );
  console.log(
    `chain of ${CHAIN}: engine ${f(results.chainEngine.total)} ms (step median ${f(results.chainEngine.median)} ms, p95 ${f(results.chainEngine.p95)} ms)`,
  );
  console.log(
    `            bare   ${f(results.chainBare.total)} ms (step median ${f(results.chainBare.median)} ms, p95 ${f(results.chainBare.p95)} ms)`,
  );
  console.log(
    `            ratio engine/bare ${(results.chainEngine.total / results.chainBare.total).toFixed(2)} (target ≤ 1.3); engine step median ${f(results.chainEngine.median)} ms (target ≤ 30)`,
  );
  console.log(
    `            engine, no-ops as local activities ${f(results.chainLocal.total)} ms (step median ${f(results.chainLocal.median)} ms, p95 ${f(results.chainLocal.p95)} ms)`,
  );
  if (!results.fanEngine || !results.fanBare) {
    await connection.close();
    await native.close();
    await server.stop();
    await rm(dbDir, { recursive: true, force: true });
    return;
  }
  console.log(
    `fan 1×${FAN}×1: engine ${f(results.fanEngine.total)} ms, bare ${f(results.fanBare.total)} ms, ratio ${(results.fanEngine.total / results.fanBare.total).toFixed(2)} (target ≤ 1.3)`,
  );
  console.log(
    `            per-task overhead engine ${f(results.fanEngine.total / (FAN + 2))} ms, bare ${f(results.fanBare.total / (FAN + 2))} ms`,
  );

  await connection.close();
  await native.close();
  await server.stop();
  await rm(dbDir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
