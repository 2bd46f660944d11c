/** The Strata worker: pipeline workflows and every task activity on one task queue. */
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
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

async function main() {
  const config = loadConfig();
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const bundlePath = process.env.STRATA_WORKFLOW_BUNDLE;
  // The catalog needs a metastore several processes can share: Postgres. Without
  // DATABASE_URL this worker runs no dataset tasks (npm start embeds PGlite itself).
  const lake = process.env.DATABASE_URL ? await lakeFromConfig(config) : undefined;
  if (!lake)
    console.error(
      'strata worker: no DATABASE_URL, so no lake catalog: dataset, ingest and s3 tasks will fail until it is set',
    );
  const dataConverter = dataConverterFrom(config);
  if (!dataConverter.payloadCodecs?.length) console.error(`strata worker: ${UNENCRYPTED_WARNING}`);
  const worker = await createStrataWorker({
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
    },
    workflowBundle: bundlePath ? { codePath: bundlePath } : undefined,
  });
  console.error(`strata worker: task queue ${config.STRATA_TASK_QUEUE} on ${config.TEMPORAL_ADDRESS}`);
  const running = worker.run();
  // Jobs and clusters whose owning workflow was terminated are stopped by a scheduled sweep.
  // A worker still starts if the schedule cannot be ensured now (the next worker start tries again).
  await ensureSweeperSchedule(new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter }), {
    taskQueue: config.STRATA_TASK_QUEUE,
    interval: config.STRATA_SWEEP_INTERVAL,
  }).then(
    (r) => console.error(`strata worker: orphan sweeper schedule ${r} (every ${config.STRATA_SWEEP_INTERVAL})`),
    (e) => console.error(`strata worker: could not ensure the orphan sweeper schedule: ${(e as Error).message}`),
  );
  await running;
  await connection.close();
  await lake?.close();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
