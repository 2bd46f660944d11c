/**
 * Records histories of pipelines with external jobs (parent and externalJob children) and
 * of a cluster entity workflow: Spark on a real Kubernetes API server (started here, as the
 * tests' global setup does) with the Spark Operator simulated, EMR and Airbyte on their doubles:
 *   npx tsx test/histories/record-external.ts   (writes test/histories/external/)
 *   RECORD_ONLY=cluster-quota npx tsx test/histories/record-external.ts   (adds just the files whose name starts so,
 *   keeping the others as recorded by earlier code: that is what the replay test guards)
 */
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import proto from '@temporalio/proto';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AirbyteClient } from '../../activities/airbyte/client.js';
import { EmrJobsClient } from '../../activities/emr/client.js';
import { SparkK8sClient } from '../../activities/spark-k8s/client.js';
import { openLake } from '../../activities/lake/open.js';
import { ClustersService } from '../../client/clusters.js';
import { RunsService } from '../../client/runs.js';
import { validateSpec, type PipelineSpec } from '../../schemas/pipeline.js';
import { openDb } from '../../store/db.js';
import { startDevServer } from '../../workers/dev-server.js';
import { createStrataWorker } from '../../workers/worker.js';

// Recorded histories stay in clear (no payload codec), so the replay tests need no keys.
const CLEAR = {};
import { AirbyteDouble, SYNC_SCENARIOS } from '../fakes/airbyte-double.js';
import { EmrDouble, STEP_SCENARIOS } from '../fakes/emr-double.js';
import { SparkOperatorSim } from '../fakes/spark-operator-sim.js';
import { startKubeCluster } from '../harness/kube.js';

const { temporal } = proto;
const here = path.join(path.dirname(fileURLToPath(import.meta.url)), 'external');
/** file → workflow id: replay needs the real id, since child ids derive from it. */
const only = process.env.RECORD_ONLY;
const index: Record<string, string> = only ? JSON.parse(readFileSync(path.join(here, 'index.json'), 'utf8')) : {};
const CONN = '9b3c8f4e-1d2a-4c5b-8e7f-0a1b2c3d4e5f';

function spec(o: object): PipelineSpec {
  const r = validateSpec(o);
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.spec;
}

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const server = await startDevServer({ headless: true });
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'strata-record-ext-'));
  const [kube, emr, airbyte] = await Promise.all([
    startKubeCluster({ dir: path.join(scratch, 'kube') }),
    EmrDouble.start(),
    AirbyteDouble.start(),
  ]);
  const sim = await SparkOperatorSim.start({
    kubeconfig: kube.kubeconfig,
    namespaces: ['strata-replay'],
    nodeName: kube.nodeName,
    logDir: path.join(scratch, 'driver-logs'),
  });
  const workspace = airbyte.addWorkspace();
  airbyte.addSyncConnection(workspace, CONN);
  const clusterId = emr.addCluster('shared', undefined, { 'strata:tenant': 'replay' });
  // Job files resolve in the tenant's lake (never read here: Spark gets their URIs).
  const db = await openDb({ dataDir: path.join(scratch, 'metastore') });
  const lake = await openLake({
    root: 's3://lake/record',
    db,
    s3: { region: 'us-east-1' },
    cacheDir: path.join(scratch, 'cache'),
  });
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, dataConverter: CLEAR });
  const runs = new RunsService(client, { taskQueue: 'record', namespace: 'default', uiUrl: '' });
  const clusters = new ClustersService(client, { taskQueue: 'record' });
  const worker = await createStrataWorker({
    connection: native,
    dataConverter: CLEAR,
    taskQueue: 'record',
    deps: {
      lakeRoot: scratch,
      connections: {},
      spark: SparkK8sClient.fromKubeconfig(kube.kubeconfig),
      emr: new EmrJobsClient({
        region: 'us-east-1',
        endpoint: emr.url,
        credentials: { accessKeyId: 'AKIDSTRATATEST', secretAccessKey: 'x' },
      }),
      airbyte: new AirbyteClient({
        baseUrl: airbyte.baseUrl,
        clientId: airbyte.clientId,
        clientSecret: airbyte.clientSecret,
      }),
      airbyteWorkspaces: { replay: workspace },
      lake,
    },
  });
  const save = async (name: string, workflowId: string) => {
    if (only && !name.startsWith(only)) return;
    let i = 0;
    for await (const ex of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
      const hist = await client.workflow.getHandle(ex.workflowId, ex.runId).fetchHistory();
      const file = path.join(here, `${name}${i ? `-${i}` : ''}.json`);
      await writeFile(file, historyToJSON(temporal.api.history.v1.History.create(hist)));
      index[path.basename(file)] = ex.workflowId;
      console.log(`recorded ${path.basename(file)} (${hist.events?.length} events)`);
      i++;
    }
  };
  await worker.runUntil(async () => {
    sim.scenario = () => ({ runMs: 1500 });
    emr.stepScenario = () => STEP_SCENARIOS.failure('Unknown Error', 'table not found');
    airbyte.scenario = () => SYNC_SCENARIOS.success(1200);
    const ok = await runs.start({
      spec: spec({
        id: 'replay_ext',
        tasks: [
          { id: 'ingest', kind: 'airbyte.sync', connectionId: CONN, poll: { initial: '100ms' } },
          { id: 'bronze', kind: 'pyspark', file: 'b.py', needs: ['ingest'], poll: { initial: '100ms' } },
          {
            id: 'gold',
            kind: 'sql',
            engine: 'emr',
            clusterId,
            sql: 'select 1',
            needs: ['bronze'],
            poll: { initial: '100ms' },
          },
        ],
      }),
      tenant: 'replay',
      trigger: 'manual',
      runKey: 'external',
    });
    await client.workflow
      .getHandle(ok.runId)
      .result()
      .catch(() => {});
    await save('external-jobs', ok.workflowId);
    for (const t of ['ingest', 'bronze', 'gold']) await save(`external-jobs-${t}`, `${ok.workflowId}/task/${t}`);

    sim.scenario = () => ({ hold: true });
    const c = await runs.start({
      spec: spec({
        id: 'replay_ext_cancel',
        tasks: [{ id: 'forever', kind: 'pyspark', file: 'f.py', poll: { initial: '100ms' } }],
      }),
      tenant: 'replay',
      trigger: 'manual',
      runKey: 'cancel',
    });
    await new Promise((r) => setTimeout(r, 2500));
    await runs.cancel(c.runId);
    await client.workflow
      .getHandle(c.runId)
      .result()
      .catch(() => {});
    await save('external-jobs-cancelled', c.workflowId);
    await save('external-jobs-cancelled-forever', `${c.workflowId}/task/forever`);

    await clusters.create({
      tenant: 'replay',
      name: 'adhoc',
      idleTimeout: '3s',
      pollInterval: '200ms',
      continueAsNewAfterEvents: 20,
    });
    for (let i = 0; i < 8; i++) {
      await clusters.touch('replay', 'adhoc');
      await new Promise((r) => setTimeout(r, 200));
    }
    await client.workflow.getHandle('cluster/replay/adhoc').result();
    await save('cluster-idle', 'cluster/replay/adhoc');

    // The tenant's slot workflow (free tier: one cluster): adhoc's slot is reclaimed once it has ended, a third is refused.
    await clusters.create({ tenant: 'replay', name: 'second', idleTimeout: '2s', pollInterval: '200ms' });
    const refused = await clusters.create({ tenant: 'replay', name: 'third' }).then(
      () => 'created',
      (e: Error) => e.message,
    );
    if (!/already runs 1 cluster/.test(refused)) throw new Error(`expected a quota refusal, got ${refused}`);
    await client.workflow.getHandle('cluster/replay/second').result();
    await save('cluster-quota', 'quota/replay/clusters');
  });
  await writeFile(path.join(here, 'index.json'), JSON.stringify(index, null, 2) + '\n');
  await connection.close();
  await native.close();
  await sim.stop();
  await Promise.all([kube.stop(), emr.close(), airbyte.close(), db.close()]);
  await server.stop();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
