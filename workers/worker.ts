/** The Strata worker: pipeline workflows and every task activity on one task queue. */
import { NativeConnection, Worker, type State, type WorkerOptions } from '@temporalio/worker';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createActivities, type ActivityDeps } from '../activities/index.js';
import { connectionsFromEnv } from '../activities/sql/connections.js';
import { channelsFromEnv } from '../activities/notify/channels.js';
import { ledgerKeyFromEnv } from '../activities/sql/ledger.js';
import { loadConfig } from '../schemas/config.js';
import { lakeFromConfig } from '../activities/lake/from-config.js';
import { externalDepsFromEnv } from './external-deps.js';
import { dataConverterFrom, UNENCRYPTED_WARNING } from '../client/data-converter.js';
import type { DataConverter } from '@temporalio/common';
import { Client } from '@temporalio/client';
import { ensureSweeperSchedule } from '../client/sweeper.js';
import { ensureMaintenanceSchedule } from '../client/table-maintenance.js';
import { toMs } from '../schemas/duration.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface StrataWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  taskQueue: string;
  deps: ActivityDeps;
  /** A prebuilt bundle (tests bundle once); else the workflows are bundled here. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Payload encryption (client/data-converter.ts); by default from STRATA_PAYLOAD_KEYS or the local key file. */
  dataConverter?: DataConverter;
  extra?: Partial<WorkerOptions>;
}

export function createStrataWorker(o: StrataWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue,
    ...(o.workflowBundle ? { workflowBundle: o.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities(o.deps),
    dataConverter: o.dataConverter ?? dataConverterFrom(process.env),
    reuseV8Context: true,
    maxConcurrentWorkflowTaskExecutions: 20,
    maxConcurrentActivityTaskExecutions: 200,
    ...o.extra,
  });
}

/**
 * Fault injection for the crash tests only: STRATA_FAULT_RECONCILE_PARTITION_DELAY_MS
 * slows each compared partition so a test can kill the worker mid-comparison on any
 * machine, however fast. Unset in every real deployment.
 */
function faultsFromEnv() {
  const ms = Number(process.env.STRATA_FAULT_RECONCILE_PARTITION_DELAY_MS ?? 0);
  return ms > 0 ? { afterPartition: () => new Promise<void>((res) => setTimeout(res, ms)) } : undefined;
}

/**
 * The worker's probe endpoints (STRATA_WORKER_HEALTH_PORT; what Kubernetes probes): `/health`
 * answers 200 while the process lives; `/ready` answers 200 once the worker polls its task queue
 * and Temporal (and the metastore, when there is one) answer, else 503. Like the API's, the
 * answer names a dependency that is not ready, never its error (it is served without a key).
 */
export async function serveWorkerHealth(o: {
  port: number;
  host?: string;
  state: () => State | undefined;
  temporal: () => Promise<unknown>;
  metastore?: () => Promise<unknown>;
}): Promise<{ port: number; close(): Promise<void> }> {
  const ready = async () => {
    const checks: Record<string, string> = { worker: o.state() === 'RUNNING' ? 'ok' : (o.state() ?? 'starting') };
    const probe = (p: () => Promise<unknown>) =>
      p().then(
        () => 'ok',
        () => 'unavailable',
      );
    checks.temporal = await probe(o.temporal);
    if (o.metastore) checks.metastore = await probe(o.metastore);
    return { ok: Object.values(checks).every((v) => v === 'ok'), checks };
  };
  const server = http.createServer((req, res) => {
    const answer = (status: number, body: unknown) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const url = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(405, { error: 'use GET' });
    if (url === '/health') return answer(200, { ok: true });
    if (url !== '/ready') return answer(404, { error: 'the worker serves /health and /ready only' });
    ready().then(
      (r) => answer(r.ok ? 200 : 503, r),
      () => answer(503, { ok: false }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host ?? '0.0.0.0', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function main() {
  const config = loadConfig();
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  let worker: Worker | undefined = undefined; // read by the health server before it is made
  const bundlePath = process.env.STRATA_WORKFLOW_BUNDLE;
  // The catalog needs a metastore several processes can share: Postgres. Without
  // DATABASE_URL this worker runs no dataset tasks (npm start embeds PGlite itself).
  const lake = process.env.DATABASE_URL ? await lakeFromConfig(config) : undefined;
  if (!lake)
    console.error(
      'strata worker: no DATABASE_URL, so no lake catalog: dataset, ingest and s3 tasks will fail until it is set',
    );
  // Up before the worker is made (bundling the workflows takes a while): live, not ready yet.
  const health = config.STRATA_WORKER_HEALTH_PORT
    ? await serveWorkerHealth({
        port: config.STRATA_WORKER_HEALTH_PORT,
        state: () => worker?.getState(),
        temporal: () => connection.workflowService.getSystemInfo({}),
        metastore: lake ? () => lake.db.query('SELECT 1') : undefined,
      })
    : undefined;
  if (health) console.error(`strata worker: /health and /ready on port ${health.port}`);
  const dataConverter = dataConverterFrom(config);
  if (!dataConverter.payloadCodecs?.length) console.error(`strata worker: ${UNENCRYPTED_WARNING}`);
  worker = await createStrataWorker({
    dataConverter,
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.STRATA_TASK_QUEUE,
    // With DATABASE_URL the metastore keeps the runs index, the catalog and reconciliation results.
    deps: {
      lakeRoot: lake?.localRoot ?? config.lakeRoot,
      connections: connectionsFromEnv(),
      notifyChannels: channelsFromEnv(),
      publicUrl: config.STRATA_PUBLIC_URL ?? `http://${config.STRATA_API_HOST}:${config.STRATA_API_PORT}`,
      icebergUri: config.STRATA_ICEBERG_URI,
      uiUrl: config.TEMPORAL_UI_URL,
      namespace: config.TEMPORAL_NAMESPACE,
      ledgerKey: ledgerKeyFromEnv(),
      lake: lake?.lake,
      s3: lake?.s3,
      db: lake?.db,
      ...externalDepsFromEnv(),
      faults: faultsFromEnv(),
      orphanFloorMs: toMs(config.STRATA_MAINTENANCE_MIN_ORPHAN_AGE),
    },
    workflowBundle: bundlePath ? { codePath: bundlePath } : undefined,
  });
  console.error(`strata worker: task queue ${config.STRATA_TASK_QUEUE} on ${config.TEMPORAL_ADDRESS}`);
  const running = worker.run();
  // Jobs and clusters whose owning workflow was terminated are stopped by a scheduled sweep.
  // A worker still starts if the schedule cannot be ensured now (the next worker start tries again).
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter });
  await ensureSweeperSchedule(client, {
    taskQueue: config.STRATA_TASK_QUEUE,
    interval: config.STRATA_SWEEP_INTERVAL,
  }).then(
    (r) => console.error(`strata worker: orphan sweeper schedule ${r} (every ${config.STRATA_SWEEP_INTERVAL})`),
    (e) => console.error(`strata worker: could not ensure the orphan sweeper schedule: ${(e as Error).message}`),
  );
  // Every table is compacted, expired and cleaned of orphans by a scheduled sweep (when this worker has a lake).
  if (lake)
    await ensureMaintenanceSchedule(client, {
      taskQueue: config.STRATA_TASK_QUEUE,
      interval: config.STRATA_MAINTENANCE_INTERVAL,
    }).then(
      (r) =>
        console.error(`strata worker: table maintenance schedule ${r} (every ${config.STRATA_MAINTENANCE_INTERVAL})`),
      (e) => console.error(`strata worker: could not ensure the table maintenance schedule: ${(e as Error).message}`),
    );
  await running;
  await health?.close();
  await connection.close();
  await lake?.close();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
