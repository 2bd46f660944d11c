/** Workers wired to the protocol doubles through normal configuration (kubeconfig, endpoint, base URL). */
import { NativeConnection, type Worker } from '@temporalio/worker';
import path from 'node:path';
import { inject } from 'vitest';
import type { ActivityDeps } from '../../activities/index.js';
import { AirbyteClient } from '../../activities/airbyte/client.js';
import { EmrJobsClient } from '../../activities/emr/client.js';
import { openLake } from '../../activities/lake/open.js';
import { SparkK8sClient } from '../../activities/spark-k8s/client.js';
import { createStrataWorker } from '../../workers/worker.js';
import { testStack, type TestStack } from '../harness/temporal.js';
import { AirbyteDouble } from './airbyte-double.js';
import { EmrDouble } from './emr-double.js';
import { K8sDouble } from './k8s-double.js';

export interface Doubles {
  k8s: K8sDouble;
  emr: EmrDouble;
  airbyte: AirbyteDouble;
  deps: Partial<ActivityDeps>;
  close(): Promise<void>;
}

export async function startDoubles(): Promise<Doubles> {
  const [k8s, emr, airbyte] = await Promise.all([K8sDouble.start(), EmrDouble.start(), AirbyteDouble.start()]);
  const kubeconfig = await k8s.writeKubeconfig(inject('scratchDir'));
  const deps: Partial<ActivityDeps> = {
    spark: SparkK8sClient.fromKubeconfig(kubeconfig),
    emr: new EmrJobsClient({
      region: 'us-east-1',
      endpoint: emr.url,
      credentials: { accessKeyId: 'AKIDSTRATATEST', secretAccessKey: 'not-a-secret' },
      maxAttempts: 2,
    }),
    airbyte: new AirbyteClient({
      baseUrl: airbyte.baseUrl,
      clientId: airbyte.clientId,
      clientSecret: airbyte.clientSecret,
    }),
    tenantTiers: { acme: 'team' },
    // acme's Airbyte workspace: its syncs run only on connections there.
    airbyteWorkspaces: { acme: airbyte.addWorkspace() },
  };
  return {
    k8s,
    emr,
    airbyte,
    deps,
    close: async () => void (await Promise.all([k8s.close(), emr.close(), airbyte.close()])),
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
