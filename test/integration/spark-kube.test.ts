/**
 * The Spark path against a real Kubernetes API server (the harness's kube-apiserver,
 * controller-manager and kwok node) with the Spark Operator simulator: tenant namespaces
 * with real quotas, limit ranges, Pod Security and RBAC, garbage collection through owner
 * references, and real 409s and watches.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  RbacAuthorizationV1Api,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import { readFile, writeFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureTenantNamespace } from '../../activities/spark-k8s/activities.js';
import { K8sError, SparkK8sClient, TENANT_ROLE, toK8sError } from '../../activities/spark-k8s/client.js';
import {
  buildSparkApplication,
  buildSparkConnect,
  DEFAULT_SPARK,
  tenantNamespace,
} from '../../activities/spark-k8s/manifest.js';
import { TIERS } from '../../schemas/external.js';
import type { RunState } from '../../schemas/run.js';
import type { ActivityDeps } from '../../activities/index.js';
import { extLake, extTestStack, withExtWorker } from '../fakes/ext-stack.js';
import { OPERATOR_TRANSITIONS, SparkOperatorSim } from '../fakes/spark-operator-sim.js';
import { SPARK_STATES } from '../../activities/spark-k8s/activities.js';
import { tokenKubeconfig } from '../harness/kube.js';
import { ROOT } from '../harness/processes.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

const A = 'kube-a';
const B = 'kube-b';
const NS_A = tenantNamespace(A);
const NS_B = tenantNamespace(B);
const W = 'kube-w';
const NS_W = tenantNamespace(W);
const FAST = { initial: '40ms', max: '200ms', backoff: 1.5 };

let stack: TestStack;
let sim: SparkOperatorSim;
let spark: SparkK8sClient;
let core: CoreV1Api;
let deps: Partial<ActivityDeps>;

beforeAll(async () => {
  const kube = inject('kube');
  spark = SparkK8sClient.fromKubeconfig(kube.kubeconfig);
  core = spark.core;
  stack = await extTestStack('spark-kube');
  sim = await SparkOperatorSim.start({
    kubeconfig: kube.kubeconfig,
    namespaces: [NS_A, NS_B, NS_W],
    nodeName: kube.nodeName,
  });
  const { root: _root, ...lake } = await extLake(stack);
  deps = { spark, tenantTiers: { [A]: 'free', [B]: 'free' }, ...lake };
});
afterAll(async () => {
  await sim?.stop();
  await stack?.close();
});

const run = (s: ReturnType<typeof spec>, tenant = A): Promise<RunState> => stack.runToEnd(s, { tenant });

/** A kubeconfig file for a service account's token (what a pod running as it would use). */
async function asServiceAccount(namespace: string, name: string): Promise<string> {
  const kube = inject('kube');
  const token = await core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 600 } },
  });
  const file = path.join(inject('scratchDir'), `${namespace}-${name}.kubeconfig`);
  await writeFile(file, tokenKubeconfig(kube.server, kube.caFile, token.status!.token));
  return file;
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (e) => toK8sError(e, 'x').code,
  );

const runCtx = (pipelineId: string) => ({
  runId: 'r1',
  workflowId: `pipeline/${A}/${pipelineId}/r1`,
  pipelineId,
  tenant: A,
  trigger: 'manual',
  logicalDate: '2026-01-01',
});

/** A pyspark application `name` in tenant A's namespace (task fields over the defaults in `task`). */
const testApp = (name: string, task: Partial<Parameters<typeof buildSparkApplication>[0]['task']> = {}) =>
  buildSparkApplication({
    name,
    namespace: NS_A,
    task: { id: 't', kind: 'pyspark', file: 's3a://lake/x.py', ...task },
    run: runCtx(name),
    defaults: DEFAULT_SPARK,
  });

const podsOf = async (ns: string, app: string): Promise<V1Pod[]> =>
  (await core.listNamespacedPod({ namespace: ns, labelSelector: `spark-app-name=${app}` })).items;

const appsOf = async (ns: string, pipeline: string) =>
  (
    (await spark.custom.listNamespacedCustomObject({
      group: 'sparkoperator.k8s.io',
      version: 'v1beta2',
      namespace: ns,
      plural: 'sparkapplications',
      labelSelector: `strata.dev/pipeline=${pipeline}`,
    })) as { items: { metadata: { name: string }; status?: { applicationState?: { state?: string } } }[] }
  ).items;

describe('Spark on a real Kubernetes API server', () => {
  it('a tenant namespace is real: restricted Pod Security, the tier quota and limit range, a service account with a namespaced Role', async () => {
    await ensureTenantNamespace(spark, A, TIERS.free);
    const ns = await core.readNamespace({ name: NS_A });
    expect(ns.metadata?.labels).toMatchObject({ 'pod-security.kubernetes.io/enforce': 'restricted' });
    const quota = await core.readNamespacedResourceQuota({ name: 'strata-tier', namespace: NS_A });
    expect(quota.spec?.hard).toEqual({ 'requests.cpu': '8', 'requests.memory': '32Gi', pods: '24' });
    const lr = await core.readNamespacedLimitRange({ name: 'strata-tier', namespace: NS_A });
    expect(lr.spec?.limits[0].max).toEqual({ cpu: '8', memory: '32Gi' });
    await core.readNamespacedServiceAccount({ name: DEFAULT_SPARK.serviceAccount, namespace: NS_A });
    const rb = await spark.rbac.readNamespacedRoleBinding({ name: TENANT_ROLE, namespace: NS_A });
    expect(rb.subjects).toEqual([{ kind: 'ServiceAccount', name: 'spark', namespace: NS_A }]);
    // A second call finds everything there (a retried activity).
    expect(await ensureTenantNamespace(spark, A, TIERS.free)).toBe('exists');
    // The API server itself refuses a pod that is not `restricted` (here: no securityContext at all).
    const refused = await core
      .createNamespacedPod({
        namespace: NS_A,
        body: {
          metadata: { name: 'not-restricted' },
          spec: {
            containers: [
              {
                name: 'c',
                image: 'busybox',
                resources: { requests: { cpu: '100m', memory: '64Mi' } },
              },
            ],
          },
        },
      })
      .catch((e) => toK8sError(e, 'create pod'));
    expect(refused).toBeInstanceOf(K8sError);
    expect((refused as K8sError).message).toMatch(/violates PodSecurity "restricted:latest"/);
    expect((refused as K8sError).code).toBe(403);
  });

  it('runs a pyspark task: driver and executor pods on the kwok node, owned by the application, through the operator states', async () => {
    sim.scenario = () => ({ runMs: 300 });
    const st = await withExtWorker(stack, deps, () =>
      run(
        spec({
          id: 'kube-ok',
          tasks: [
            {
              id: 'bronze',
              kind: 'pyspark',
              file: 'jobs/bronze.py',
              executor: { instances: 2, cores: 1, memory: '1g' },
              poll: FAST,
            },
          ],
        }),
      ),
    );
    expect(st.status, JSON.stringify(st.tasks.bronze)).toBe('success');
    const [app] = await appsOf(NS_A, 'kube-ok');
    expect(app.status?.applicationState?.state).toBe('COMPLETED');
    const pods = await podsOf(NS_A, app.metadata.name);
    const driver = pods.find((p) => p.metadata?.labels?.['spark-role'] === 'driver')!;
    expect(driver.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'SparkApplication', name: app.metadata.name });
    expect(driver.spec?.nodeName).toBe(inject('kube').nodeName);
    expect(driver.spec?.serviceAccountName).toBe('spark');
    // kwok ran it (the kubelet's side: an IP from the node's range, started), and the driver ended when the job did.
    expect(driver.status?.podIP).toMatch(/^10\.244\./);
    expect(driver.status?.phase).toBe('Succeeded');
    // Every move the simulator made is one the operator makes, between states Strata knows.
    for (const t of sim.transitions.filter((x) => x.app === `${NS_A}/${app.metadata.name}`)) {
      expect(OPERATOR_TRANSITIONS[t.from]).toContain(t.to);
      expect(SPARK_STATES).toContain(t.to);
    }
    expect(sim.transitions.filter((x) => x.app === `${NS_A}/${app.metadata.name}`).map((t) => t.to)).toEqual([
      'SUBMITTED',
      'RUNNING',
      'SUCCEEDING',
      'COMPLETED',
    ]);
  });

  it('fails the task with the operator error message', async () => {
    sim.scenario = () => ({ runMs: 100, fail: 'java.lang.OutOfMemoryError: Java heap space' });
    const st = await withExtWorker(stack, deps, () =>
      run(spec({ id: 'kube-fail', tasks: [{ id: 'job', kind: 'pyspark', file: 'jobs/oom.py', poll: FAST }] })),
    );
    expect(st.tasks.job.status).toBe('failed');
    expect(st.tasks.job.errorType).toBe('ExternalJobFailed');
    expect(st.tasks.job.error).toMatch(/ended FAILED: java\.lang\.OutOfMemoryError: Java heap space/);
    expect(st.tasks.job.output).toMatchObject({ engine: 'spark-k8s', driverPod: expect.stringMatching(/-driver$/) });
    const [app] = await appsOf(NS_A, 'kube-fail');
    const driver = (await podsOf(NS_A, app.metadata.name)).find((p) => p.metadata?.labels?.['spark-role'] === 'driver');
    expect(driver?.status?.phase).toBe('Failed');
  });

  it("an application deleted behind Strata's back fails the task clearly", async () => {
    sim.scenario = () => ({ hold: true });
    const st = await withExtWorker(stack, deps, async () => {
      const h = await stack.runs.start({
        spec: spec({ id: 'kube-gone', tasks: [{ id: 'gone', kind: 'pyspark', file: 'jobs/x.py', poll: FAST }] }),
        tenant: A,
        trigger: 'manual',
      });
      await waitFor(async () => (await appsOf(NS_A, 'kube-gone')).length === 1, 60_000);
      const [app] = await appsOf(NS_A, 'kube-gone');
      await spark.delete('sparkapplications', 'v1beta2', NS_A, app.metadata.name);
      return stack.runs.wait(h.runId);
    });
    expect(st.tasks.gone.status).toBe('failed');
    expect(st.tasks.gone.error).toMatch(/disappeared while running/);
  });

  it('a resubmitted create that finds the application adopts it (409 AlreadyExists from the API server)', async () => {
    sim.scenario = () => ({ runMs: 50 });
    const m = testApp('kube-adopt');
    const created = await spark.createOrAdopt('sparkapplications', 'v1beta2', m);
    const again = await spark.createOrAdopt('sparkapplications', 'v1beta2', m);
    expect([created.adopted, again.adopted]).toEqual([false, true]);
    expect(again.obj.metadata.uid).toBe(created.obj.metadata.uid);
  });

  it('a job beyond what is left of the quota is refused by the API server, and the task says so', async () => {
    // The first job holds 1 + 3×2 = 7 of the free tier's 8 cores; the second's driver asks for 2 more.
    // Earlier tests' pods are gone or ended (ended pods hold no quota), so the arithmetic below is exact.
    await waitFor(
      async () =>
        (await core.listNamespacedPod({ namespace: NS_A })).items.every(
          (p) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed',
        ),
      90_000,
    );
    sim.scenario = (app) =>
      app.metadata.labels?.['strata.dev/pipeline'] === 'kube-hog' ? { hold: true } : { runMs: 100 };
    await withExtWorker(stack, deps, async () => {
      const hog = await stack.runs.start({
        spec: spec({
          id: 'kube-hog',
          tasks: [
            {
              id: 'big',
              kind: 'pyspark',
              file: 'jobs/big.py',
              executor: { instances: 3, cores: 2, memory: '1g' },
              poll: FAST,
            },
          ],
        }),
        tenant: A,
        trigger: 'manual',
      });
      await waitFor(
        async () => (await appsOf(NS_A, 'kube-hog'))[0]?.status?.applicationState?.state === 'RUNNING',
        60_000,
      );
      const st = await run(
        spec({
          id: 'kube-over',
          tasks: [
            { id: 'more', kind: 'pyspark', file: 'jobs/more.py', driver: { cores: 2, memory: '1g' }, poll: FAST },
          ],
        }),
      );
      expect(st.tasks.more.status).toBe('failed');
      expect(st.tasks.more.error).toMatch(/exceeded quota: strata-tier/);
      expect(st.tasks.more.error).toMatch(/requests\.cpu/);
      const [hogApp] = await appsOf(NS_A, 'kube-hog');
      sim.finish(NS_A, hogApp.metadata.name);
      await stack.client.workflow.getHandle(hog.runId).result();
    });
  });

  it("a tenant's service account reaches its own namespace and nothing of another tenant's", async () => {
    await ensureTenantNamespace(spark, B, TIERS.free);
    const kc = new KubeConfig();
    kc.loadFromFile(await asServiceAccount(NS_A, 'spark'));
    const asA = kc.makeApiClient(CoreV1Api);
    const asACustom = kc.makeApiClient(CustomObjectsApi);
    expect(await code(asA.listNamespacedPod({ namespace: NS_A }))).toBe(200);
    expect(await code(asA.listNamespacedPod({ namespace: NS_B }))).toBe(403);
    expect(await code(asA.listNamespacedSecret({ namespace: NS_B }))).toBe(403);
    expect(await code(asA.listNamespace())).toBe(403);
    expect(
      await code(
        asA.createNamespacedConfigMap({ namespace: NS_B, body: { metadata: { name: 'from-a' }, data: { x: '1' } } }),
      ),
    ).toBe(403);
    expect(await code(asA.deleteNamespacedServiceAccount({ namespace: NS_B, name: 'spark' }))).toBe(403);
    expect(
      await code(
        asACustom.listNamespacedCustomObject({
          group: 'sparkoperator.k8s.io',
          version: 'v1beta2',
          namespace: NS_B,
          plural: 'sparkapplications',
        }),
      ),
    ).toBe(403);
    // Its own Role does not let it widen itself.
    expect(
      await code(
        kc.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
          namespace: NS_B,
          body: {
            metadata: { name: 'steal' },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: TENANT_ROLE },
            subjects: [{ kind: 'ServiceAccount', name: 'spark', namespace: NS_A }],
          },
        }),
      ),
    ).toBe(403);
  });

  it('a stale update answers 409 Conflict; a broken watch is picked up again without losing an application', async () => {
    const m = testApp('kube-conflict');
    sim.scenario = () => ({ hold: true });
    const { obj } = await spark.createOrAdopt('sparkapplications', 'v1beta2', m);
    await waitFor(async () => {
      const o = await spark.get('sparkapplications', 'v1beta2', NS_A, 'kube-conflict');
      return (o.status as { applicationState?: { state?: string } })?.applicationState?.state === 'RUNNING';
    }, 60_000);
    // obj carries the resourceVersion of the create; the operator has written status since.
    const stale = await spark
      .replace('sparkapplications', 'v1beta2', { ...obj, metadata: { ...obj.metadata, labels: { x: 'y' } } })
      .catch((e) => e);
    expect(stale).toMatchObject({ code: 409, reason: 'Conflict' });
    // The operator's watch breaks; an application created meanwhile is still run.
    const before = sim.rewatches;
    sim.scenario = () => ({ runMs: 50 });
    sim.breakWatches();
    await spark.createOrAdopt('sparkapplications', 'v1beta2', {
      ...m,
      metadata: { ...m.metadata, name: 'kube-after-break' },
    });
    await waitFor(async () => {
      const o = await spark.get('sparkapplications', 'v1beta2', NS_A, 'kube-after-break');
      return (o.status as { applicationState?: { state?: string } })?.applicationState?.state === 'COMPLETED';
    }, 60_000);
    expect(sim.rewatches).toBeGreaterThan(before);
    sim.finish(NS_A, 'kube-conflict');
  });

  it('deleting a SparkApplication removes its driver and executor pods through owner references', async () => {
    const m = testApp('kube-gc', { executor: { instances: 2 } });
    sim.scenario = () => ({ hold: true });
    await spark.createOrAdopt('sparkapplications', 'v1beta2', m);
    await waitFor(async () => (await podsOf(NS_A, 'kube-gc')).length === 3, 60_000);
    const pods = await podsOf(NS_A, 'kube-gc');
    const exec = pods.find((p) => p.metadata?.labels?.['spark-role'] === 'executor')!;
    expect(exec.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'Pod', name: 'kube-gc-driver' });
    expect(await spark.delete('sparkapplications', 'v1beta2', NS_A, 'kube-gc')).toBe('deleted');
    // The garbage collector deletes the driver (owned by the app), then the executors (owned by the driver); kwok lets them go.
    await waitFor(async () => (await podsOf(NS_A, 'kube-gc')).length === 0, 90_000);
  });

  it('cancelling a run deletes its SparkApplication, and with it its pods', async () => {
    sim.scenario = () => ({ hold: true });
    const st = await withExtWorker(stack, deps, async () => {
      const h = await stack.runs.start({
        spec: spec({
          id: 'kube-cancel',
          tasks: [{ id: 'forever', kind: 'pyspark', file: 'jobs/stream.py', poll: FAST }],
        }),
        tenant: A,
        trigger: 'manual',
      });
      await waitFor(
        async () => (await appsOf(NS_A, 'kube-cancel'))[0]?.status?.applicationState?.state === 'RUNNING',
        60_000,
      );
      await stack.client.workflow.getHandle(h.runId).cancel();
      return stack.runs.wait(h.runId);
    });
    expect(st.tasks.forever.status).toBe('cancelled');
    expect(await appsOf(NS_A, 'kube-cancel')).toHaveLength(0);
    await waitFor(
      async () =>
        (await core.listNamespacedPod({ namespace: NS_A, labelSelector: 'strata.dev/pipeline=kube-cancel' })).items
          .length === 0,
      90_000,
    );
  });

  it('the worker service account of deploy/kubernetes/worker-rbac.yaml runs the Spark path, and reads no secret', async () => {
    const admin = KubernetesObjectApi.makeApiClient(spark.kc);
    await core.createNamespace({ body: { metadata: { name: 'strata' } } }).catch(() => undefined);
    const docs = parseAllDocuments(await readFile(path.join(ROOT, 'deploy/kubernetes/worker-rbac.yaml'), 'utf8'));
    for (const d of docs) await admin.create(d.toJS() as KubernetesObject);
    const asWorker = SparkK8sClient.fromKubeconfig(await asServiceAccount('strata', 'strata-worker'));
    sim.scenario = () => ({ runMs: 100 });
    const st = await withExtWorker(stack, { ...deps, spark: asWorker, tenantTiers: { [W]: 'team' } }, () =>
      run(spec({ id: 'kube-worker-rbac', tasks: [{ id: 'job', kind: 'pyspark', file: 'jobs/w.py', poll: FAST }] }), W),
    );
    expect(st.status, JSON.stringify(st.tasks.job)).toBe('success');
    expect((await spark.rbac.readNamespacedRole({ name: TENANT_ROLE, namespace: NS_W })).rules?.length).toBe(2);
    expect(await code(asWorker.core.listNamespacedSecret({ namespace: NS_W }))).toBe(403);
    expect(await code(asWorker.core.readNamespacedSecret({ namespace: 'kube-system', name: 'x' }))).toBe(403);
    expect(await code(asWorker.core.deleteNamespace({ name: NS_B }))).toBe(403);
  });

  it('a SparkConnect server comes up as a restricted pod the connect object owns, and goes with it', async () => {
    await ensureTenantNamespace(spark, A, TIERS.free);
    const obj = buildSparkConnect({
      name: 'kube-connect',
      namespace: NS_A,
      run: { tenant: A },
      image: DEFAULT_SPARK.image,
      sparkVersion: DEFAULT_SPARK.sparkVersion,
      executors: 1,
      cores: 1,
      memoryGi: 1,
    });
    await spark.createOrAdopt('sparkconnects', 'v1alpha1', obj);
    await waitFor(async () => {
      const o = await spark.get('sparkconnects', 'v1alpha1', NS_A, 'kube-connect');
      return (o.status as { state?: string } | undefined)?.state === 'Ready';
    }, 60_000).catch(async (e) => {
      const o = await spark.get('sparkconnects', 'v1alpha1', NS_A, 'kube-connect');
      const pods = (await core.listNamespacedPod({ namespace: NS_A })).items.map((p) => [
        p.metadata?.name,
        p.status?.phase,
      ]);
      throw new Error(`${e}: ${JSON.stringify(o.status)} ${JSON.stringify(pods)}`);
    });
    const server = await core.readNamespacedPod({ namespace: NS_A, name: 'kube-connect-server' });
    expect(server.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'SparkConnect', name: 'kube-connect' });
    expect(await spark.delete('sparkconnects', 'v1alpha1', NS_A, 'kube-connect')).toBe('deleted');
    await waitFor(
      async () => (await code(core.readNamespacedPod({ namespace: NS_A, name: 'kube-connect-server' }))) === 404,
      90_000,
    );
  });
});
