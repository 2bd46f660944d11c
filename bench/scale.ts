/**
 * npm run bench:scale — a 10,000-task pipeline must still run: history stays under
 * Temporal's limits through continue-as-new, in-flight work stays under maxParallel.
 * Prints wall time, tasks/s, executions used and the largest history.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RunsService } from '../api/runs-service.js';
import { validateSpec } from '../schemas/pipeline.js';
import { startDevServer } from '../workers/dev-server.js';
import { createStrataWorker } from '../workers/worker.js';
import { dataConverterFrom, generatePayloadKeys } from '../client/data-converter.js';

const N = Number(process.env.BENCH_TASKS ?? 10_000);
const WIDTH = Number(process.env.BENCH_WIDTH ?? 100);

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const server = await startDevServer({ headless: true });
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  const dataConverter = dataConverterFrom({ STRATA_PAYLOAD_KEYS: process.env.STRATA_PAYLOAD_KEYS || generatePayloadKeys('bench') });
  const client = new Client({ connection, dataConverter });
  const runs = new RunsService(client, { taskQueue: 'scale', namespace: 'default', uiUrl: '' });
  const worker = await createStrataWorker({ connection: native, taskQueue: 'scale', deps: { lakeRoot: await mkdtemp(path.join(os.tmpdir(), 'strata-scale-')), connections: {} }, dataConverter });
  // Layers of WIDTH tasks; each task needs one task of the layer above.
  const tasks = Array.from({ length: N }, (_, i) => ({ id: `t${i}`, kind: 'noop', needs: i >= WIDTH ? [`t${i - WIDTH}`] : [] }));
  const r = validateSpec({ id: 'scale', maxParallel: 200, tasks });
  if (!r.ok) throw new Error(JSON.stringify(r.problems.slice(0, 3)));
  const specBytes = JSON.stringify(r.spec).length;
  await worker.runUntil(async () => {
    const t0 = performance.now();
    const h = await runs.start({ spec: r.spec, tenant: 'bench', trigger: 'bench' });
    const st = await runs.wait(h.runId);
    const ms = performance.now() - t0;
    let executions = 0;
    let maxEvents = 0;
    for await (const ex of client.workflow.list({ query: `WorkflowId = '${h.workflowId}'` })) {
      executions++;
      maxEvents = Math.max(maxEvents, ex.historyLength ?? 0);
    }
    const ok = Object.values(st.tasks).filter((t) => t.status === 'success').length;
    console.log(`bench:scale — ${N} tasks (${WIDTH} wide), spec ${(specBytes / 1024).toFixed(0)} KiB`);
    console.log(`  status ${st.status}, ${ok}/${N} tasks succeeded in ${(ms / 1000).toFixed(1)} s (${((N / ms) * 1000).toFixed(0)} tasks/s)`);
    console.log(`  ${executions} executions (continue-as-new ${st.continuations}×), largest history ${maxEvents} events (limit 51,200; warning at 10,240)`);
  });
  await connection.close();
  await native.close();
  await server.stop();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
