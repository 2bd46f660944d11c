/**
 * npm run bench:api — bounded load on loopback: trigger runs of a one-task pipeline at
 * increasing rates for a fixed time, through the real API, worker, dev server and
 * Postgres. Prints accepted triggers/s and p50/p99 latency per rate, then checks that
 * every accepted trigger became exactly one workflow (none lost, none doubled).
 * A trigger is accepted into the outbox (one insert) and started by the API's dispatcher;
 * the bench also prints how long the dispatcher took to start the backlog.
 */
import autocannon from 'autocannon';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { openDb } from '../store/db.js';
import { migrate } from '../store/migrate.js';
import { startDevServer } from '../workers/dev-server.js';
import { startProcess } from '../test/harness/processes.js';
import { dataConverterFrom, generatePayloadKeys } from '../client/data-converter.js';

const RATES = (process.env.BENCH_RATES ?? '50,100,200,300').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ADMIN = process.env.STRATA_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function main() {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const dbName = `strata_bench_api_${process.pid}`;
  const admin = new pg.Client({ connectionString: ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(ADMIN);
  url.pathname = `/${dbName}`;
  const db = await openDb({ url: url.toString() });
  await migrate(db);
  const server = await startDevServer({ headless: true });
  const connection = await Connection.connect({ address: server.address });
  // API, worker and this client share payload keys, encrypting as deployed.
  const payloadKeys = process.env.STRATA_PAYLOAD_KEYS || generatePayloadKeys('bench');
  const client = new Client({ connection, dataConverter: dataConverterFrom({ STRATA_PAYLOAD_KEYS: payloadKeys }) });
  const key = 'bench-admin-key-0123456789abcdef';
  // API and worker in processes of their own, as deployed (compose runs them apart):
  // the load generator, the API's event loop and the worker's do not share a thread.
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'strata-bench-api-'));
  const env = {
    TEMPORAL_ADDRESS: server.address,
    DATABASE_URL: url.toString(),
    STRATA_TASK_QUEUE: 'bench-api',
    STRATA_DATA_DIR: scratch,
    STRATA_LAKE_ROOT: path.join(scratch, 'lake'),
    STRATA_PAYLOAD_KEYS: payloadKeys,
  };
  const api = startProcess('workers/api.ts', [], {
    ...env,
    STRATA_BOOTSTRAP_ADMIN_KEY: key,
    STRATA_BOOTSTRAP_TENANT: 'bench',
    STRATA_API_PORT: '0',
  });
  await api.waitForOutput(/strata api on http:\/\/\S+/);
  const base = /strata api on (http:\/\/\S+)/.exec(api.output())![1];
  // BENCH_WORKER=0 measures triggering alone (runs queue up in Temporal; nothing executes them).
  const withWorker = process.env.BENCH_WORKER !== '0';
  const worker = withWorker ? startProcess('workers/worker.ts', [], env) : undefined;
  await worker?.waitForOutput(/strata worker: task queue/);
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  await fetch(`${base}/api/v1/pipelines`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ id: 'one', tasks: [{ id: 'a', kind: 'noop' }] }),
  });

  const accepted = new Set<string>();
  let acceptedCount = 0;
  console.log(
    `bench:api — POST /api/v1/pipelines/one/runs, ${SECONDS} s per rate, 20 connections, loopback; API and worker in their own processes`,
  );
  // Warm-up (connection pools, JIT): its triggers are checked below like the others, not timed.
  await autocannon({
    url: base,
    connections: 20,
    overallRate: 50,
    duration: 2,
    requests: [
      {
        method: 'POST',
        path: '/api/v1/pipelines/one/runs',
        headers,
        body: '{}',
        onResponse: (status: number, body: string) =>
          void (status === 202 && (acceptedCount++, accepted.add(JSON.parse(body).runId))),
      },
    ],
  });
  console.log('target rate   sent    accepted/s   p50 ms   p99 ms   non-2xx');
  for (const rate of RATES) {
    const r = await autocannon({
      url: base,
      connections: 20,
      overallRate: rate,
      duration: SECONDS,
      requests: [
        {
          method: 'POST',
          path: '/api/v1/pipelines/one/runs',
          headers,
          body: '{}',
          onResponse: (status: number, body: string) => {
            if (status === 202) {
              acceptedCount++;
              accepted.add(JSON.parse(body).runId);
            }
          },
        },
      ],
    });
    console.log(
      `${String(rate).padEnd(14)}${String(r.requests.sent).padEnd(8)}${(r['2xx'] / SECONDS).toFixed(1).padStart(10)}   ${String(r.latency.p50).padStart(6)}   ${String(r.latency.p99).padStart(6)}   ${r.non2xx}`,
    );
  }
  const { pendingTriggers } = await import('../store/triggers.js');
  const loadEnd = Date.now();
  const backlog = await pendingTriggers(db);
  while ((await pendingTriggers(db)) > 0 && Date.now() - loadEnd < 120_000)
    await new Promise((r) => setTimeout(r, 100));
  console.log(
    `dispatcher: ${backlog} triggers still queued when the load stopped; all started ${((Date.now() - loadEnd) / 1000).toFixed(1)} s later`,
  );
  // Every accepted trigger is exactly one workflow. Visibility is eventually consistent:
  // list until two listings agree. Requests still in flight when a rate step ended may
  // have started workflows whose 202 was never read: those are counted apart.
  let seen = new Set<string>();
  let workflows = 0;
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = new Set<string>();
    let n = 0;
    for await (const w of client.workflow.list({ query: `StrataPipeline = 'one' AND StrataTenant = 'bench'` })) {
      n++;
      now.add(w.workflowId);
    }
    const stable = n === workflows && [...accepted].every((id) => now.has(id));
    seen = now;
    workflows = n;
    if (stable) break;
  }
  const lost = [...accepted].filter((id) => !seen.has(id)).length;
  const doubled = workflows - seen.size + (acceptedCount - accepted.size);
  console.log(
    `accepted ${acceptedCount} triggers (${accepted.size} distinct run ids); ${workflows} workflows; lost ${lost}, doubled ${doubled}, started with the response unread (in flight at a step's end) ${seen.size - accepted.size}`,
  );
  if (lost || doubled) process.exitCode = 1;

  for (const p of [api, worker]) {
    p?.child.kill('SIGTERM');
    await p?.exited();
  }
  await connection.close();
  await server.stop();
  await db.close();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
