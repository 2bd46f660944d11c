/**
 * Workers wired to the external engines through normal configuration (kubeconfig, endpoint,
 * base URL): Spark on the test run's real Kubernetes API server with the Spark Operator
 * simulated, EMR and Airbyte through their protocol doubles.
 */
import { NativeConnection, type Worker } from '@temporalio/worker';
import path from 'node:path';
import { inject } from 'vitest';
import type { ActivityDeps } from '../../activities/index.js';
import { createMetrics } from '../../api/system.js';
import { AirbyteClient } from '../../activities/airbyte/client.js';
import { EmrJobsClient } from '../../activities/emr/client.js';
import { openLake } from '../../activities/lake/open.js';
import { SparkK8sClient, type K8sObject } from '../../activities/spark-k8s/client.js';
import { tenantNamespace } from '../../activities/spark-k8s/manifest.js';
import { createStrataWorker } from '../../workers/worker.js';
import { testStack, type TestStack } from '../harness/temporal.js';
import { AirbyteDouble } from './airbyte-double.js';
import { EmrDouble } from './emr-double.js';
import { KubeTap } from './kube-tap.js';
import { SparkOperatorSim } from './spark-operator-sim.js';

/**
 * Spark for one test file on the run's real Kubernetes API server: the worker's client talks
 * through a tap (which records what reached the server and can inject 5xx bursts), the
 * operator simulator runs the file's tenant namespaces (and only those: other files have
 * theirs), and `admin` reads the cluster directly for the test's own checks.
 */
export interface KubeFixture {
  tap: KubeTap;
  sim: SparkOperatorSim;
  /** The client Strata's worker gets (through the tap). */
  spark: SparkK8sClient;
  /** A cluster-admin client straight to the API server, for the test's own reads and writes. */
  admin: SparkK8sClient;
  namespaces: string[];
  /** The file's SparkApplications (of one pipeline, if given), as the API server has them now. */
  apps(pipeline?: string): Promise<K8sObject[]>;
  /** The object, or undefined when the API server has none (404). */
  find(plural: 'sparkapplications' | 'sparkconnects', namespace: string, name: string): Promise<K8sObject | undefined>;
  close(): Promise<void>;
}

export const appState = (o: K8sObject | undefined) =>
  (o?.status as { applicationState?: { state?: string } } | undefined)?.applicationState?.state ?? '';

const VERSIONS = { sparkapplications: 'v1beta2', sparkconnects: 'v1alpha1' } as const;

export async function startKube(tenants: string[], name = tenants.join('-')): Promise<KubeFixture> {
  const kube = inject('kube');
  const namespaces = tenants.map(tenantNamespace);
  const tap = await KubeTap.start(kube.kubeconfig);
  const sim = await SparkOperatorSim.start({
    kubeconfig: kube.kubeconfig,
    namespaces,
    nodeName: kube.nodeName,
    logDir: path.join(inject('scratchDir'), 'driver-logs', name),
  });
  const admin = SparkK8sClient.fromKubeconfig(kube.kubeconfig);
  const spark = SparkK8sClient.fromKubeconfig(await tap.writeKubeconfig(inject('scratchDir'), `tap-${name}`));
  const find: KubeFixture['find'] = async (plural, namespace, n) => {
    try {
      return await admin.get(plural, VERSIONS[plural], namespace, n);
    } catch (e) {
      if ((e as { code?: number }).code === 404) return undefined;
      throw e;
    }
  };
  return {
    tap,
    sim,
    spark,
    admin,
    namespaces,
    find,
    apps: async (pipeline) =>
      (
        await admin.listAll(
          'sparkapplications',
          VERSIONS.sparkapplications,
          pipeline ? `strata.dev/pipeline=${pipeline}` : 'app.kubernetes.io/managed-by=strata',
        )
      ).filter((o) => namespaces.includes(o.metadata.namespace!)),
    close: async () => {
      await sim.stop();
      await tap.close();
    },
  };
}

export interface Doubles {
  /** Spark on the real API server (when `startDoubles` was given Spark tenants). */
  kube: KubeFixture;
  emr: EmrDouble;
  airbyte: AirbyteDouble;
  deps: Partial<ActivityDeps>;
  close(): Promise<void>;
}

/** An EMR client of the platform's own kind, talking to the double `emr` (two attempts a call, as tests want failures fast). */
export const emrClientOf = (emr: EmrDouble) =>
  new EmrJobsClient({
    region: 'us-east-1',
    endpoint: emr.url,
    credentials: { accessKeyId: 'AKIDSTRATATEST', secretAccessKey: 'not-a-secret' },
    maxAttempts: 2,
  });

/**
 * The external engines for one test file. `tenant` (default acme) is on the team tier and has
 * an Airbyte workspace; `sparkTenants` are the tenants whose Spark namespaces this file's
 * operator simulator runs (give each file its own: the API server is shared by the whole run).
 */
export async function startDoubles(o: { tenant?: string; sparkTenants?: string[] } = {}): Promise<Doubles> {
  const tenant = o.tenant ?? 'acme';
  const [kube, emr, airbyte] = await Promise.all([
    o.sparkTenants ? startKube(o.sparkTenants) : undefined,
    EmrDouble.start(),
    AirbyteDouble.start(),
  ]);
  const deps: Partial<ActivityDeps> = {
    ...(kube ? { spark: kube.spark } : {}),
    emr: emrClientOf(emr),
    airbyte: new AirbyteClient({
      baseUrl: airbyte.baseUrl,
      clientId: airbyte.clientId,
      clientSecret: airbyte.clientSecret,
    }),
    tenantTiers: { [tenant]: 'team' },
    // The tenant's Airbyte workspace: its syncs run only on connections there.
    airbyteWorkspaces: { [tenant]: airbyte.addWorkspace() },
  };
  return {
    get kube(): KubeFixture {
      if (!kube) throw new Error('startDoubles was not given sparkTenants: this file has no Spark namespaces');
      return kube;
    },
    emr,
    airbyte,
    deps,
    close: async () => void (await Promise.all([kube?.close(), emr.close(), airbyte.close()])),
  };
}

/**
 * The lake the doubles' jobs take their code from: by default the harness's MinIO under
 * `s3://{bucket}/{queue}` (every tenant's files under `{root}/{tenant}/`), or `root`.
 */
export async function extLake(
  stack: TestStack,
  o: { root?: string; tenantLocations?: Record<string, string[]> } = {},
): Promise<Pick<ActivityDeps, 'lake' | 's3'> & { root: string }> {
  const t = inject('s3');
  const s3 = { endpoint: t.endpoint, region: t.region, accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey };
  const root = o.root ?? `s3://${t.bucket}/${stack.taskQueue}`;
  const lake = await openLake({
    root,
    db: stack.db,
    s3,
    cacheDir: path.join(inject('scratchDir'), stack.taskQueue, 'cache'),
    tenantLocations: o.tenantLocations,
  });
  return { lake, s3, root };
}

/** Runs a worker with the doubles' clients for the duration of fn. */
export async function withExtWorker<T>(
  stack: TestStack,
  deps: Partial<ActivityDeps>,
  fn: (w: Worker) => Promise<T>,
): Promise<T> {
  const native = await NativeConnection.connect({ address: inject('temporalAddress') });
  try {
    const worker = await createStrataWorker({
      connection: native,
      taskQueue: stack.taskQueue,
      deps: { lakeRoot: stack.lakeRoot, connections: stack.connections, db: stack.db, ...deps },
      workflowBundle: { codePath: inject('workflowBundlePath') },
    });
    return await worker.runUntil(fn(worker));
  } finally {
    await native.close();
  }
}

/** testStack, retried: under a loaded full run the first gRPC connect can miss its deadline. */
export async function extTestStack(name: string): Promise<TestStack> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await testStack(name);
    } catch (e) {
      if (attempt >= 3 || !/Failed to connect before the deadline/.test(String(e))) throw e;
    }
  }
}

/** How many orphans of `kind` the sweeper has stopped so far, as /metrics counts them (`strata_sweeper_stopped`). */
export async function sweptCount(stack: TestStack, kind: string): Promise<number> {
  const m = await createMetrics(stack.db).registry.getSingleMetric('strata_sweeper_stopped')!.get();
  return m.values.find((v) => v.labels.kind === kind)?.value ?? 0;
}
