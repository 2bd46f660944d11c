/** Per-test-file access to the shared dev server: a client, and workers on a private task queue. */
import { S3Client } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { inject } from 'vitest';
import { RunsService } from '../../client/runs.js';
import type { Connections } from '../../activities/sql/connections.js';
import { createStrataWorker } from '../../workers/worker.js';
import type { LakeDeps } from '../../activities/lake/engine.js';
import { forTenant, openLake } from '../../activities/lake/open.js';
import type { ReconcileDeps } from '../../activities/reconcile/activities.js';
import type { NotifyDeps } from '../../activities/notify/activities.js';
import type { ObjectStore, S3Config } from '../../activities/s3/client.js';
import { openDb, type Db } from '../../store/db.js';
import type { DataConverter } from '@temporalio/common';
import { dataConverterFrom } from '../../client/data-converter.js';
import type { PipelineSpec } from '../../schemas/pipeline.js';
import type { PipelineRunOptions, RunState } from '../../schemas/run.js';

// Processes the tests spawn (workers, the CLI, npm start) encrypt with the run's keys too.
process.env.STRATA_PAYLOAD_KEYS ||= inject('payloadKeys');

// Workers log state changes at INFO; tests only want warnings and errors.
try {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
} catch {
  /* already installed in this process */
}

export interface TestStack {
  /** A client with the run's payload codec, like every Strata client. */
  client: Client;
  dataConverter: DataConverter;
  runs: RunsService;
  taskQueue: string;
  lakeRoot: string;
  connections: Connections;
  /** With `lake`: the dataset lake (S3 on the harness's MinIO, or a folder) and its catalog. */
  lake?: LakeDeps;
  /** With `lake`: the lake as the stack's tenant sees it (its own prefix). */
  store?: ObjectStore;
  /** The stack's tenant's folder of plain duckdb tasks and reconciliation inputs (`{lakeRoot}/{tenant}`). */
  tenantRoot: string;
  s3?: S3Config;
  tenant: string;
  /** The metastore workers write (runs index, catalog): the run's shared database, or with `lake` one of the stack's own. */
  db: Db;
  /** With `lake`: this stack's own metastore database (the catalog lives there). */
  metastoreUrl?: string;
  /** Runs a worker for the duration of fn. */
  withWorker<T>(fn: (w: Worker) => Promise<T>): Promise<T>;
  /** Starts a worker that runs until the returned function stops it (for runs the API starts). */
  startWorker(): Promise<() => Promise<void>>;
  /**
   * Starts a manual run of `spec` (as the stack's tenant unless `tenant` says) and waits for
   * its end: the state it ended in, failed and cancelled included. Needs a running worker.
   */
  runToEnd(
    spec: PipelineSpec,
    o?: { tenant?: string; params?: Record<string, string>; options?: PipelineRunOptions },
  ): Promise<RunState>;
  close(): Promise<void>;
}

export interface TestStackOptions {
  /** 's3': lake root s3://lake/{queue} on the harness's MinIO; 'file': a folder. */
  lake?: 's3' | 'file';
  faults?: LakeDeps['faults'];
  lineageFile?: string;
  /** Test seam for reconciliations run by this stack's workers (see ReconcileDeps.faults). */
  reconcileFaults?: ReconcileDeps['faults'];
  /** Notification channels and link bases for this stack's workers. */
  notify?: Omit<NotifyDeps, 'db'>;
  /** Table maintenance's orphan safety floor for this stack's workers (ms; default the worker's 1 h). */
  orphanFloorMs?: number;
}

export async function testStack(name: string, opts: TestStackOptions = {}): Promise<TestStack> {
  const address = inject('temporalAddress');
  const dbs = inject('databases');
  const connection = await Connection.connect({ address });
  const dataConverter = dataConverterFrom({ STRATA_PAYLOAD_KEYS: inject('payloadKeys') });
  const client = new Client({ connection, namespace: 'default', dataConverter });
  const native = await NativeConnection.connect({ address });
  const taskQueue = `test-${name}-${randomBytes(3).toString('hex')}`;
  const lakeRoot = path.join(inject('scratchDir'), taskQueue, 'lake');
  await mkdir(lakeRoot, { recursive: true });
  const tenant = `t${randomBytes(3).toString('hex')}`;
  // The stack's tenant owns both connections; any other tenant is refused them.
  const connections: Connections = {
    warehouse: { name: 'warehouse', engine: 'postgres', url: dbs.postgresUrl, tenants: [tenant] },
    mart: { name: 'mart', engine: 'mysql', url: dbs.mysqlUrl, tenants: [tenant] },
  };
  const tenantRoot = path.join(lakeRoot, tenant);
  await mkdir(tenantRoot, { recursive: true });
  let lake: LakeDeps | undefined;
  let db: Db = await openDb({ url: dbs.postgresUrl });
  let s3: S3Config | undefined;
  let metastoreUrl: string | undefined;
  if (opts.lake) {
    const t = inject('s3');
    s3 = harnessS3();
    metastoreUrl = await createMetastore(dbs.postgresAdminUrl, `${dbs.name}_${tenant}`);
    await db.close();
    db = await openDb({ url: metastoreUrl });
    const { fileSink } = await import('../../activities/catalog/openlineage.js');
    lake = await openLake({
      root:
        opts.lake === 's3'
          ? `s3://${t.bucket}/${taskQueue}`
          : `file://${path.join(inject('scratchDir'), taskQueue, 'datalake')}`,
      db,
      s3,
      cacheDir: path.join(inject('scratchDir'), taskQueue, 'cache'),
      faults: opts.faults,
      lineage: opts.lineageFile ? fileSink(opts.lineageFile) : undefined,
    });
  }
  // The stack's metastore: specs travel by reference and run state is read from it, as through the API.
  const runs = new RunsService(client, { taskQueue, namespace: 'default', uiUrl: 'http://127.0.0.1:8233', store: db });
  const worker = () =>
    createStrataWorker({
      connection: native,
      taskQueue,
      deps: {
        lakeRoot,
        connections,
        lake,
        s3,
        db,
        faults: opts.reconcileFaults,
        ...opts.notify,
        orphanFloorMs: opts.orphanFloorMs,
      },
      workflowBundle: { codePath: inject('workflowBundlePath') },
      dataConverter,
    });
  return {
    client,
    dataConverter,
    runs,
    taskQueue,
    lakeRoot,
    connections,
    lake,
    store: lake && forTenant(lake, tenant).store,
    tenantRoot,
    s3,
    tenant,
    db,
    metastoreUrl,
    async withWorker(fn) {
      const w = await worker();
      return w.runUntil(fn(w));
    },
    async startWorker() {
      const w = await worker();
      const running = w.run();
      return async () => {
        w.shutdown();
        await running;
      };
    },
    async runToEnd(spec, o = {}) {
      const h = await runs.start({
        spec,
        tenant: o.tenant ?? tenant,
        trigger: 'manual',
        params: o.params,
        options: o.options,
      });
      return runs.wait(h.runId);
    },
    async close() {
      await db.close();
      if (metastoreUrl) await dropMetastore(dbs.postgresAdminUrl, `${dbs.name}_${tenant}`);
      await native.close();
      await connection.close();
    },
  };
}

/** The harness's MinIO (started once per test run) as an S3 configuration. */
export function harnessS3(): S3Config {
  const t = inject('s3');
  return { endpoint: t.endpoint, region: t.region, accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey };
}

/** A plain S3 client on the harness's MinIO, for a test's own reads and writes. */
export function harnessS3Client(): S3Client {
  const t = inject('s3');
  return new S3Client({
    endpoint: t.endpoint,
    region: t.region,
    forcePathStyle: true,
    credentials: { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
  });
}

/** The environment a CLI process needs to reach a lake stack's metastore and lake, as an operator would set it. */
export function lakeEnv(stack: TestStack): Record<string, string> {
  return {
    DATABASE_URL: stack.metastoreUrl!,
    STRATA_LAKE_ROOT: stack.lake!.store.root,
    STRATA_S3_ENDPOINT: stack.s3!.endpoint!,
    STRATA_S3_ACCESS_KEY_ID: stack.s3!.accessKeyId!,
    STRATA_S3_SECRET_ACCESS_KEY: stack.s3!.secretAccessKey!,
    STRATA_S3_REGION: stack.s3!.region,
  };
}

/** A database of its own for a lake stack's catalog, so migrations and catalog rows never meet other tests'. */
async function createMetastore(adminUrl: string, name: string): Promise<string> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

async function dropMetastore(adminUrl: string, name: string): Promise<void> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await c.end();
}

/** A workflow's history as text with every payload decoded by the stack's codec (what the codec-less server stores is ciphertext). */
export async function decodedHistoryText(stack: TestStack, workflowId: string): Promise<string> {
  const codecs = stack.dataConverter.payloadCodecs ?? [];
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  const texts: string[] = [];
  const walk = async (v: unknown): Promise<void> => {
    if (!v || typeof v !== 'object') return;
    if (v instanceof Uint8Array) return;
    const o = v as Record<string, unknown>;
    if (o.data instanceof Uint8Array && o.metadata && typeof o.metadata === 'object') {
      let p = o as { metadata: Record<string, Uint8Array>; data: Uint8Array };
      for (const c of [...codecs].reverse()) [p] = (await c.decode([p])) as [typeof p];
      texts.push(Buffer.from(p.data).toString('utf8'));
      return;
    }
    for (const x of Array.isArray(v) ? v : Object.values(o)) await walk(x);
  };
  await walk(history);
  return JSON.stringify(history) + '\n' + texts.join('\n');
}
