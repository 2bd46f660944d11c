import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClustersService } from '../../client/clusters.js';
import { RequestError } from '../../schemas/errors.js';
import type { ClusterState } from '../../schemas/cluster.js';
import { STEP_SCENARIOS } from '../fakes/emr-double.js';
import { extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { tenantNamespace } from '../../activities/spark-k8s/manifest.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

/** This file's tenants: their Spark namespaces are this file's alone on the run's API server. */
const ACME = 'cl-acme';
const NS = tenantNamespace(ACME);
let stack: TestStack;
let d: Doubles;
let clusters: ClustersService;
beforeAll(async () => {
  [stack, d] = await Promise.all([
    extTestStack('clusters'),
    startDoubles({ tenant: ACME, sparkTenants: [ACME, 'cl-solo', 'cl-tiny'] }),
  ]);
  d.deps.tenantTiers = { [ACME]: 'team', 'cl-solo': 'free', 'cl-tiny': 'free' };
  d.deps.clusterDefaults = {
    idleTimeout: '3s',
    pollInterval: '100ms',
    instances: 2,
    cores: 2,
    memoryGi: 4,
    emrLogUri: 's3n://acme-emr-logs/strata/',
  };
  clusters = new ClustersService(stack.client, { taskQueue: stack.taskQueue, tenantTiers: d.deps.tenantTiers });
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const podsOf = async (cluster: string) =>
  (await d.kube.admin.core.listNamespacedPod({ namespace: NS, labelSelector: `spark-connect-name=${cluster}` })).items;
/** Executor pods of a Spark Connect server that kwok runs. */
const connectExecutors = async (cluster: string) =>
  (await podsOf(cluster)).filter(
    (p) =>
      p.metadata?.labels?.['spark-role'] === 'executor' &&
      !p.metadata.deletionTimestamp &&
      p.status?.phase === 'Running',
  ).length;
const refused = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e) => e as RequestError,
  );
const final = (tenant: string, name: string) =>
  stack.client.workflow.getHandle(`cluster/${tenant}/${name}`).result() as Promise<ClusterState>;

describe('cluster entity workflows', () => {
  it('provisions a Spark Connect server, stays up while touched, and terminates itself when idle', async () => {
    await withExtWorker(stack, d.deps, async () => {
      const { workflowId } = await clusters.create({
        tenant: ACME,
        name: 'adhoc',
        engine: 'spark-connect',
        instances: 2,
        idleTimeout: '6000ms',
        pollInterval: '100ms',
      });
      expect(workflowId).toBe(`cluster/${ACME}/adhoc`);
      // Its server pod takes seconds to come up on the real cluster: touched meanwhile, so the idle timer waits.
      let touchedAt = 0;
      await waitFor(async () => {
        if (Date.now() - touchedAt > 500) {
          touchedAt = Date.now();
          await clusters.touch(ACME, 'adhoc', 'test');
        }
        return (await clusters.get(ACME, 'adhoc')).phase === 'ready';
      }, 90_000).catch(async (e) => {
        // What the cluster, its SparkConnect and its pods say, to tell a slow cluster from a broken one.
        const sc = await d.kube.find('sparkconnects', NS, 'adhoc');
        const pods = (await podsOf('adhoc')).map((p) => [p.metadata?.name, p.status?.phase]);
        throw new Error(
          `${e}: ${JSON.stringify(await clusters.get(ACME, 'adhoc'))} ${JSON.stringify(sc?.status)} ${JSON.stringify(pods)}`,
        );
      });
      const ready = await clusters.get(ACME, 'adhoc');
      expect(ready).toMatchObject({
        providerId: `${NS}/adhoc`,
        endpoint: `sc://adhoc-server.${NS}.svc.cluster.local:15002`,
      });
      expect((await d.kube.find('sparkconnects', NS, 'adhoc'))?.spec.executor).toMatchObject({ instances: 2 });
      // What the endpoint names is there: the server's Service on 15002, selecting the server pod, and two executors.
      const svc = await d.kube.admin.core.readNamespacedService({ namespace: NS, name: 'adhoc-server' });
      expect(svc.spec?.ports?.[0]?.port).toBe(15002);
      expect(svc.spec?.selector).toEqual({ 'spark-connect-name': 'adhoc', 'spark-role': 'server' });
      const server = await d.kube.admin.core.readNamespacedPod({ namespace: NS, name: 'adhoc-server' });
      expect(server.status?.phase).toBe('Running');
      expect(server.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'SparkConnect', name: 'adhoc' });
      // kwok starts the executors a moment after the server (touched meanwhile, as above).
      await waitFor(async () => {
        await clusters.touch(ACME, 'adhoc', 'test');
        return (await connectExecutors('adhoc')) === 2;
      }, 60_000);
      // Touch for longer than the idle timeout: it stays up.
      // (generous margins: this machine has two cores and the whole suite runs beside it)
      for (let i = 0; i < 16; i++) {
        await clusters.touch(ACME, 'adhoc', 'test');
        await sleep(500);
      }
      expect((await clusters.get(ACME, 'adhoc')).phase).toBe('ready');
      const end = await final(ACME, 'adhoc');
      expect(end.phase).toBe('terminated');
      expect(end.terminationReason).toBe('idle for 6000 ms');
      expect(end.touches).toBeGreaterThanOrEqual(8);
      expect(Date.parse(end.terminatedAt!) - Date.parse(end.lastTouchedAt)).toBeGreaterThanOrEqual(2500);
      expect(await d.kube.find('sparkconnects', NS, 'adhoc')).toBeUndefined();
      // The garbage collector takes its server pod, Service and executors with it.
      await waitFor(async () => (await podsOf('adhoc')).length === 0, 90_000);
    });
  });

  it('resizes a ready cluster through an update, within the tier', async () => {
    await withExtWorker(stack, d.deps, async () => {
      await clusters.create({
        tenant: ACME,
        name: 'grow',
        engine: 'spark-connect',
        instances: 2,
        idleTimeout: '1m',
        pollInterval: '100ms',
      });
      await waitFor(async () => (await clusters.get(ACME, 'grow')).phase === 'ready');
      const after = await clusters.resize(ACME, 'grow', { instances: 6, cores: 4, memoryGi: 8 });
      expect(after.size).toEqual({ instances: 6, cores: 4, memoryGi: 8 });
      expect((await d.kube.find('sparkconnects', NS, 'grow'))?.spec.executor).toMatchObject({
        instances: 6,
        cores: 4,
        memory: '8g',
      });
      // The operator scales the server's executors to the new size, within the namespace's quota.
      await waitFor(async () => (await connectExecutors('grow')) === 6, 60_000);
      const over = await refused(clusters.resize(ACME, 'grow', { instances: 40, cores: 4, memoryGi: 8 }));
      expect(over).toBeInstanceOf(RequestError);
      expect(over!.status).toBe(403);
      expect(over!.message).toContain('40 instances (at most 16)');
      await clusters.delete(ACME, 'grow');
      const end = await final(ACME, 'grow');
      expect(end).toMatchObject({ phase: 'terminated', terminationReason: 'deleted through the API' });
    });
  });

  it('cancelling a cluster workflow (UI, CLI, API) terminates the cluster at the provider, ready or still starting', async () => {
    await withExtWorker(stack, d.deps, async () => {
      // A ready Spark Connect server: its SparkConnect is deleted before the workflow ends cancelled.
      await clusters.create({
        tenant: ACME,
        name: 'cancelme',
        engine: 'spark-connect',
        instances: 1,
        idleTimeout: '1h',
        pollInterval: '100ms',
      });
      await waitFor(async () => (await clusters.get(ACME, 'cancelme')).phase === 'ready');
      expect(await d.kube.find('sparkconnects', NS, 'cancelme')).toBeDefined();
      const h = stack.client.workflow.getHandle(`cluster/${ACME}/cancelme`);
      await h.cancel();
      const err = await h.result().then(
        () => undefined,
        (e) => e as Error,
      );
      expect(String((err?.cause as Error | undefined) ?? err)).toMatch(/cancel/i);
      expect(await d.kube.find('sparkconnects', NS, 'cancelme')).toBeUndefined();
      expect((await h.describe()).status.name).toBe('CANCELLED');

      // An EMR cluster cancelled while it is still starting: TerminateJobFlows reaches the cluster it made.
      d.emr.clusterStartMs = 60_000;
      try {
        await clusters.create({
          tenant: ACME,
          name: 'cancelearly',
          engine: 'emr',
          instances: 1,
          idleTimeout: '1h',
          pollInterval: '100ms',
        });
        const runs = () =>
          d.emr.calls.filter((c) => c.op === 'RunJobFlow' && c.input.Name === `strata/${ACME}/cancelearly`);
        await waitFor(async () => runs().length === 1);
        const e = stack.client.workflow.getHandle(`cluster/${ACME}/cancelearly`);
        await waitFor(async () => (await clusters.get(ACME, 'cancelearly')).providerId !== undefined);
        expect((await clusters.get(ACME, 'cancelearly')).phase).toBe('provisioning');
        await e.cancel();
        await e.result().catch(() => undefined);
        expect((await e.describe()).status.name).toBe('CANCELLED');
        const id = [...d.emr.clusters.values()].find((c) => c.Name === `strata/${ACME}/cancelearly`)!.Id;
        expect(d.emr.calls.some((c) => c.op === 'TerminateJobFlows' && c.input.JobFlowIds.includes(id))).toBe(true);
      } finally {
        d.emr.clusterStartMs = 200;
      }
    });
  });

  it('refuses requests over the tenant tier and bad input with 4xx RequestErrors', async () => {
    await withExtWorker(stack, d.deps, async () => {
      const big = await refused(clusters.create({ tenant: 'cl-solo', name: 'big', instances: 10 }));
      expect(big).toMatchObject({ status: 403 });
      expect(big!.message).toContain('over the free tier of tenant cl-solo: 10 instances (at most 4)');
      const bad = await refused(clusters.create({ tenant: 'cl-solo', name: 'Bad_Name' }));
      expect(bad).toMatchObject({ status: 400 });
      expect(bad!.message).toContain('name: a cluster name is lower-case letters');
      expect(await refused(clusters.get('cl-solo', 'nothing'))).toMatchObject({ status: 404 });
      expect(await refused(clusters.delete('cl-solo', 'nothing'))).toMatchObject({ status: 404 });

      await clusters.create({ tenant: 'cl-solo', name: 'one', instances: 1, idleTimeout: '1m', pollInterval: '100ms' });
      expect(await refused(clusters.create({ tenant: 'cl-solo', name: 'one', instances: 1 }))).toMatchObject({
        status: 409,
      });
      await waitFor(async () =>
        (await clusters.list('cl-solo')).some((c) => c.name === 'one' && c.status === 'RUNNING'),
      );
      const second = await refused(clusters.create({ tenant: 'cl-solo', name: 'two', instances: 1 }));
      expect(second).toMatchObject({ status: 403 });
      expect(second!.message).toContain('tenant cl-solo already runs 1 cluster(s), the most its free tier allows');
      await clusters.delete('cl-solo', 'one');
      expect((await final('cl-solo', 'one')).phase).toBe('terminated');
    });
  });

  it('ends at its maximum lifetime even while in use, and continues as new to keep history small', async () => {
    await withExtWorker(stack, d.deps, async () => {
      await clusters.create({
        tenant: ACME,
        name: 'short',
        engine: 'spark-connect',
        instances: 1,
        idleTimeout: '1m',
        // Long enough for a real server pod to come up on a loaded machine before the lifetime ends.
        maxLifetime: '20s',
        pollInterval: '100ms',
        continueAsNewAfterEvents: 30,
      });
      await waitFor(async () => (await clusters.get(ACME, 'short')).phase === 'ready');
      for (let i = 0; i < 25; i++) await clusters.touch(ACME, 'short');
      const end = await final(ACME, 'short');
      expect(end.terminationReason).toBe('reached its maximum lifetime (20000 ms)');
      expect(Date.parse(end.terminatedAt!) - Date.parse(end.createdAt)).toBeGreaterThanOrEqual(20_000);
      expect(end.touches).toBe(25);
      expect(end.continuations).toBeGreaterThanOrEqual(1);
    });
  });

  it('a task with `cluster:` starts the EMR cluster on first use, runs its step there and keeps it touched', async () => {
    d.emr.stepScenario = () => STEP_SCENARIOS.success(2500);
    d.emr.clusterStartMs = 300;
    const before = d.emr.count('RunJobFlow');
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: spec({
          id: 'on-cluster',
          tasks: [
            {
              id: 'q',
              kind: 'sql',
              engine: 'emr',
              cluster: 'etl',
              sql: 'select 1',
              poll: { initial: '50ms', max: '200ms' },
            },
          ],
        }),
        tenant: ACME,
        trigger: 'manual',
      });
      await stack.client.workflow.getHandle(h.runId).result();
      const st = await stack.runs.state(h.runId);
      const cl = await clusters.get(ACME, 'etl');
      await clusters.delete(ACME, 'etl');
      return { st, cl, end: await final(ACME, 'etl') };
    });
    expect(st.st.status).toBe('success');
    expect(d.emr.count('RunJobFlow') - before).toBe(1);
    // Started with the configured log location, so its steps' logs can be read back.
    expect(d.emr.calls.filter((c) => c.op === 'RunJobFlow').pop()?.input.LogUri).toBe('s3n://acme-emr-logs/strata/');
    expect(st.st.tasks.q.output).toMatchObject({ clusterId: st.cl.providerId });
    expect(st.cl.touches).toBeGreaterThanOrEqual(2);
    expect(d.emr.clusters.get(st.cl.providerId!)!.steps).toHaveLength(1);
    expect(st.end.phase).toBe('terminated');
    expect(d.emr.calls.some((c) => c.op === 'TerminateJobFlows' && c.input.JobFlowIds[0] === st.cl.providerId)).toBe(
      true,
    );
  });

  it('a task needing a new cluster over the tenant’s cluster limit fails with the quota message', async () => {
    await withExtWorker(stack, d.deps, async () => {
      await clusters.create({
        tenant: 'cl-tiny',
        name: 'busy',
        instances: 1,
        idleTimeout: '1m',
        pollInterval: '100ms',
      });
      await waitFor(async () =>
        (await clusters.list('cl-tiny')).some((c) => c.name === 'busy' && c.status === 'RUNNING'),
      );
      const h = await stack.runs.start({
        spec: spec({ id: 'too-many', tasks: [{ id: 'q', kind: 'pyspark', file: 's3://x/y.py', cluster: 'another' }] }),
        tenant: 'cl-tiny',
        trigger: 'manual',
      });
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      const st = await stack.runs.state(h.runId);
      expect(st.tasks.q.status).toBe('failed');
      expect(st.tasks.q.errorType).toBe('QuotaExceeded');
      expect(st.tasks.q.error).toContain('tenant cl-tiny already runs 1 cluster(s)');
      await clusters.delete('cl-tiny', 'busy');
      await final('cl-tiny', 'busy');
    });
  });
});
