/**
 * Once per test run: one Temporal dev server, one workflow bundle, and a fresh
 * Postgres and MariaDB database. Tests reach them through `inject()`.
 */
import { bundleWorkflowCode } from '@temporalio/worker';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startDevServer, type DevServer } from '../../workers/dev-server.js';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { createDatabases, dropDatabases, type TestDatabases } from './databases.js';
import { randomBytes } from 'node:crypto';
import { ensureBucket } from '../../activities/s3/client.js';
import { startMinio, type S3Server } from '../../workers/minio.js';
import { openDb } from '../../store/db.js';
import { generatePayloadKeys } from '../../client/data-converter.js';
import { migrate } from '../../store/migrate.js';
import { startKubeCluster, type KubeCluster } from './kube.js';
import { icebergReader } from './iceberg-reader.js';

/** The S3-compatible server of this test run (MinIO) and its bucket. */
export interface TestS3 {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    workflowBundlePath: string;
    databases: TestDatabases;
    scratchDir: string;
    s3: TestS3;
    /** STRATA_PAYLOAD_KEYS of this run: every client, worker and spawned process encrypts payloads with them. */
    payloadKeys: string;
    /** The run's Kubernetes cluster (kube-apiserver, controller-manager, kwok): an admin kubeconfig and its CA. */
    kube: { server: string; kubeconfig: string; caFile: string; nodeName: string; startSeconds: number };
  }
}

let server: DevServer | undefined;
let dbs: TestDatabases | undefined;
let scratch: string | undefined;
let minio: S3Server | undefined;
let kube: KubeCluster | undefined;

export async function setup(project: TestProject) {
  // Tests run with payload encryption on, as production does; child processes inherit the keys.
  process.env.STRATA_PAYLOAD_KEYS ||= generatePayloadKeys('test1');
  project.provide('payloadKeys', process.env.STRATA_PAYLOAD_KEYS);
  scratch = await mkdtemp(path.join(os.tmpdir(), 'strata-test-'));
  const [srv, bundle, databases, s3, cluster] = await Promise.all([
    startDevServer({ headless: true, log: (m) => console.error(m) }),
    bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger }),
    createDatabases(),
    startMinio({
      dataDir: path.join(scratch, 'minio'),
      accessKeyId: `strata${randomBytes(4).toString('hex')}`,
      secretAccessKey: randomBytes(18).toString('hex'),
      log: (m) => console.error(m),
    }),
    // STRATA_TEST_KUBE=off: for running only test files that need no Kubernetes (those that do then fail).
    process.env.STRATA_TEST_KUBE === 'off'
      ? undefined
      : startKubeCluster({ dir: path.join(scratch, 'kube'), log: (m) => console.error(m) }),
    // Built here, once per machine, and not inside the first test that reads a table: on a cold,
    // busy machine its first build outlasts any test or hook timeout.
    icebergReader(),
  ]);
  minio = s3;
  kube = cluster;
  if (cluster) {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- stop is left out of what tests get, never called
    const { stop: _stop, ...kubeInfo } = cluster;
    project.provide('kube', kubeInfo);
  } else console.error('STRATA_TEST_KUBE=off: the Kubernetes test cluster is not started; tests that use it fail.');
  await ensureBucket(s3, 'lake');
  project.provide('s3', {
    endpoint: s3.endpoint,
    region: s3.region,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    bucket: 'lake',
  });
  server = srv;
  dbs = databases;
  const meta = await openDb({ url: databases.postgresUrl });
  await migrate(meta);
  await meta.close();
  const bundlePath = path.join(scratch, 'workflow-bundle.js');
  await writeFile(bundlePath, bundle.code);
  project.provide('temporalAddress', srv.address);
  project.provide('workflowBundlePath', bundlePath);
  project.provide('databases', databases);
  project.provide('scratchDir', scratch);
}

export async function teardown() {
  await server?.stop();
  await minio?.stop();
  await kube?.stop();
  if (dbs) await dropDatabases(dbs);
  if (scratch) await rm(scratch, { recursive: true, force: true });
}

const quietLogger = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (m: string) => console.warn(m),
  error: (m: string) => console.error(m),
};
