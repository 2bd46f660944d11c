/**
 * `npm start`: the whole local stack in one process tree — a Temporal dev server with
 * its Web UI (persisting under the data folder), a worker, and one run of the medallion
 * demo (examples/medallion.yaml over data from examples/generate.ts; size with
 * STRATA_DEMO_ORDERS), and the HTTP API over the metastore. Ctrl-C stops the API, the
 * worker, then the server.
 *   --no-demo        only bring the stack up
 *   --exit-after-demo stop once the example run has ended (used by the tests)
 */
import { Client, Connection } from '@temporalio/client';
import { ensureSweeperSchedule } from '../client/sweeper.js';
import { ensureMaintenanceSchedule } from '../client/table-maintenance.js';
import { toMs } from '../schemas/duration.js';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectionsFromEnv } from '../activities/sql/connections.js';
import { channelsFromEnv } from '../activities/notify/channels.js';
import { ledgerKeyFromEnv } from '../activities/sql/ledger.js';
import { buildApi } from '../api/app.js';
import { RunsService } from '../client/runs.js';
import { followRun } from '../cli/progress.js';
import { loadConfig } from '../schemas/config.js';
import { parseSpecText } from '../schemas/spec-file.js';
import { startDevServer } from './dev-server.js';
import { createStrataWorker } from './worker.js';
import { lakeFromConfig } from '../activities/lake/from-config.js';
import { forTenant } from '../activities/lake/open.js';
import { generate } from '../examples/generate.js';
import { dataConverterFrom, ensureLocalPayloadKeys } from '../client/data-converter.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const examples = path.join(here, '..', 'examples');

async function main() {
  Runtime.install({ logger: new DefaultLogger((process.env.STRATA_LOG_LEVEL as 'WARN') ?? 'WARN') });
  const args = new Set(process.argv.slice(2));
  const config = loadConfig();
  const dataDir = path.resolve(config.STRATA_DATA_DIR);
  await mkdir(dataDir, { recursive: true });
  const port = Number(config.TEMPORAL_ADDRESS.split(':')[1]);
  const uiPort = Number(new URL(config.TEMPORAL_UI_URL).port || 8233);

  // Payloads are encrypted: with STRATA_PAYLOAD_KEYS, or a local platform key made once and
  // kept (owner-only) in the data folder, like the admin key. Keep it: runs recorded with it
  // need it to decode.
  if (!config.STRATA_PAYLOAD_KEYS)
    console.log(`Payload encryption key in ${await ensureLocalPayloadKeys(dataDir)} (or set STRATA_PAYLOAD_KEYS)`);
  const dataConverter = dataConverterFrom(config);
  const apiHost = ['0.0.0.0', '::'].includes(config.STRATA_API_HOST) ? '127.0.0.1' : config.STRATA_API_HOST;
  const codecUrl = `http://${apiHost.includes(':') ? `[${apiHost}]` : apiHost}:${config.STRATA_API_PORT}/codec`;

  console.log(
    `Starting the Temporal dev server on ${config.TEMPORAL_ADDRESS} (Web UI ${config.TEMPORAL_UI_URL}, state in ${path.join(dataDir, 'temporal.db')})…`,
  );
  const server = await startDevServer({
    port,
    uiPort,
    dbFilename: path.join(dataDir, 'temporal.db'),
    uiCodecEndpoint: config.STRATA_API_PORT ? codecUrl : undefined,
    log: (m) => console.log(m),
  });
  // A worker and an API talking to a dead server help no one: if the dev server dies, say so
  // and stop the stack (its state is kept: `npm start` again carries on every run).
  let stopping = false;
  let onServerDeath: () => Promise<void> = async () => {};
  // Ctrl-C in a terminal reaches the server too (one process group): that is a stop, not a death.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void (stopping = true));
  server.process.once('exit', (code, signal) => {
    // Half a second first: a signal that stops us all arrives in it.
    setTimeout(() => {
      if (stopping) return;
      console.error(
        `\nThe Temporal dev server stopped (${signal ?? `exit code ${code}`}): stopping the stack. ` +
          `Run npm start again to carry on; runs and their state are kept in ${path.join(dataDir, 'temporal.db')}.`,
      );
      setTimeout(() => process.exit(1), 15_000).unref();
      void onServerDeath().finally(() => process.exit(1));
    }, 500);
  });

  // The metastore (DATABASE_URL, or embedded PGlite under the data folder) holds the
  // catalog, the runs index, keys and schedules.
  const lake = await lakeFromConfig(config);
  const native = await NativeConnection.connect({ address: server.address });
  const worker = await createStrataWorker({
    connection: native,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.STRATA_TASK_QUEUE,
    deps: {
      lakeRoot: lake.localRoot,
      connections: connectionsFromEnv(),
      notifyChannels: channelsFromEnv(),
      publicUrl: config.STRATA_PUBLIC_URL ?? `http://${config.STRATA_API_HOST}:${config.STRATA_API_PORT}`,
      uiUrl: config.TEMPORAL_UI_URL,
      namespace: config.TEMPORAL_NAMESPACE,
      ledgerKey: ledgerKeyFromEnv(),
      lake: lake.lake,
      s3: lake.s3,
      db: lake.db,
      orphanFloorMs: toMs(config.STRATA_MAINTENANCE_MIN_ORPHAN_AGE),
    },
    dataConverter,
  });
  const running = worker.run();
  console.log(`Worker polling task queue "${config.STRATA_TASK_QUEUE}"; lake at ${lake.lake.store.root}`);

  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter });
  await ensureSweeperSchedule(client, {
    taskQueue: config.STRATA_TASK_QUEUE,
    interval: config.STRATA_SWEEP_INTERVAL,
  }).catch((e) => console.error(`could not ensure the orphan sweeper schedule: ${(e as Error).message}`));
  await ensureMaintenanceSchedule(client, {
    taskQueue: config.STRATA_TASK_QUEUE,
    interval: config.STRATA_MAINTENANCE_INTERVAL,
  }).catch((e) => console.error(`could not ensure the table maintenance schedule: ${(e as Error).message}`));
  // A local stack without a configured admin key makes one and keeps it in a file only
  // its owner can read, never in the output.
  const keyFile = path.join(dataDir, 'admin-key');
  let bootstrapKey = config.STRATA_BOOTSTRAP_ADMIN_KEY;
  if (!bootstrapKey) {
    bootstrapKey = existsSync(keyFile)
      ? (await readFile(keyFile, 'utf8')).trim()
      : `local-${randomBytes(16).toString('hex')}`;
    await writeFile(keyFile, bootstrapKey + '\n', { mode: 0o600 });
  }
  const { app } = await buildApi({
    db: lake.db,
    lake: lake.lake,
    client,
    config: { ...config, STRATA_BOOTSTRAP_ADMIN_KEY: bootstrapKey },
    uiUrl: server.uiUrl,
  });
  const apiUrl = await app.listen({ host: config.STRATA_API_HOST, port: config.STRATA_API_PORT });
  console.log(`HTTP API on ${apiUrl} (OpenAPI docs at ${apiUrl}/docs)`);
  if (!config.STRATA_BOOTSTRAP_ADMIN_KEY)
    console.log(
      `  admin key (tenant ${config.STRATA_BOOTSTRAP_TENANT}) in ${keyFile}: curl -H "Authorization: Bearer $(cat ${keyFile})" ${apiUrl}/api/v1/runs`,
    );
  if (server.uiUrl)
    console.log(
      `  the Web UI decodes payloads through ${codecUrl}: open ${apiUrl}/codec/login once with a key, ` +
        `then in the UI's codec settings use the browser setting with that endpoint and "Include cross-origin credentials" on`,
    );
  const runs = new RunsService(client, {
    taskQueue: config.STRATA_TASK_QUEUE,
    namespace: config.TEMPORAL_NAMESPACE,
    uiUrl: server.uiUrl ?? config.TEMPORAL_UI_URL,
  });

  let demoStatus = 'skipped';
  if (!args.has('--no-demo')) {
    const orders = Number(process.env.STRATA_DEMO_ORDERS ?? 20_000);
    // The demo tenant's landing folder: its tasks see only their own prefix of the lake.
    const demoLake = forTenant(lake.lake, config.STRATA_TENANT).store;
    console.log(
      `Generating the demo shop's landing files (${orders} orders, seeded) into ${demoLake.uri('landing/shop')}…`,
    );
    const { defects } = await generate(
      { seed: 42, orders, customers: Math.max(50, Math.round(orders / 10)) },
      (key, content) => demoLake.putBytes(key, content),
    );
    const parsed = parseSpecText(await readFile(path.join(examples, 'medallion.yaml'), 'utf8'));
    if (!parsed.ok) throw new Error(`examples/medallion.yaml is invalid: ${JSON.stringify(parsed.problems)}`);
    const h = await runs.start({ spec: parsed.spec, tenant: config.STRATA_TENANT, trigger: 'manual' });
    console.log(`\nDemo run ${h.runId}\n  Temporal UI: ${h.uiUrl}\n`);
    demoStatus = await followRun(runs, h.runId);
    const st = await runs.state(h.runId);
    const out = (id: string) => st.tasks[id]?.output;
    console.log('\nGold:');
    for (const t of Object.values(st.tasks)) {
      const dataset = t.output?.dataset;
      if (typeof dataset === 'string' && dataset.startsWith('gold.'))
        console.log(
          `  ${dataset}: ${t.output!.rowCount} rows (v${String(t.output!.version)}) -> ${t.output!.location}`,
        );
    }
    console.log('Quarantine (rows rejected at bronze, with reasons):');
    // The quarantine's row count, a number wherever a bronze task wrote one.
    for (const [id, t] of Object.entries(st.tasks)) {
      const quarantined = t.output?.quarantined;
      if (typeof quarantined === 'number')
        console.log(`  ${String(t.output!.dataset)}_quarantine: ${quarantined} rows (${id})`);
    }
    console.log(
      `  silver.orders_rejected (orphan customer keys): ${out('silver_orders_rejected')?.rowCount ?? '-'} rows`,
    );
    console.log(
      `Defects generated: ${Object.entries(defects)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}`,
    );
    console.log(`\nTemporal UI: ${h.uiUrl}`);
  }

  const shutdown = async () => {
    stopping = true;
    await app.close();
    worker.shutdown();
    await running.catch(() => {});
    await connection.close();
    await native.close();
    await server.stop();
    await lake.close();
  };
  onServerDeath = async () => {
    await app.close().catch(() => {});
    worker.shutdown();
    await running.catch(() => {});
    await lake.close().catch(() => {});
  };
  if (args.has('--exit-after-demo')) {
    await shutdown();
    process.exitCode = demoStatus === 'success' || demoStatus === 'skipped' ? 0 : 1;
    return;
  }
  console.log('\nThe stack is up. Press Ctrl-C to stop it.');
  await running; // the worker stops on SIGINT/SIGTERM
  stopping = true;
  await app.close();
  await connection.close();
  await native.close();
  await server.stop();
  await lake.close();
  console.log('Stopped.');
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
