/**
 * The orphan sweeper: jobs and clusters Strata made whose owning workflow was *terminated*
 * (no cleanup code runs then) are found by their labels/tags, stopped at the provider, logged,
 * recorded and counted in /metrics; those of running workflows and objects without an owner
 * are left alone. The schedule that runs it is ensured idempotently.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClustersService } from '../../client/clusters.js';
import type { SweepReport } from '../../activities/sweeper/activities.js';
import { SPARK_APP_VERSION } from '../../activities/spark-k8s/client.js';
import { OWNER_ANNOTATION } from '../../activities/spark-k8s/manifest.js';
import { ensureSweeperSchedule } from '../../client/sweeper.js';
import {
  appState,
  extLake,
  extTestStack,
  startDoubles,
  sweptCount,
  withExtWorker,
  type Doubles,
} from '../fakes/ext-stack.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

let stack: TestStack;
let d: Doubles;
let clusters: ClustersService;
beforeAll(async () => {
  [stack, d] = await Promise.all([extTestStack('sweeper'), startDoubles({ sparkTenants: ['sweepco'] })]);
  const { root: _root, ...lake } = await extLake(stack);
  Object.assign(d.deps, lake);
  d.deps.tenantTiers = { sweepco: 'team' };
  d.deps.clusterDefaults = { pollInterval: '100ms' };
  clusters = new ClustersService(stack.client, { taskQueue: stack.taskQueue, tenantTiers: d.deps.tenantTiers });
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
});

const metric = (kind: string) => sweptCount(stack, kind);

describe('the orphan sweeper', () => {
  it('stops Spark applications, Spark Connect servers and EMR clusters whose owning workflow was terminated, and only those', async () => {
    d.kube.sim.scenario = () => ({ hold: true });
    const running = (pipeline: string) =>
      waitFor(async () => (await d.kube.apps(pipeline)).some((a) => appState(a) === 'RUNNING'), 60_000);
    /** A run of pipeline `id`: one Spark job that streams until stopped. */
    const startStream = (id: string) =>
      stack.runs.start({
        spec: spec({
          id,
          tasks: [{ id: 'stream', kind: 'pyspark', file: 'jobs/stream.py', poll: { initial: '50ms', max: '200ms' } }],
        }),
        tenant: 'sweepco',
        trigger: 'manual',
      });
    const before = {
      job: await metric('external-job'),
      app: await metric('spark-application'),
      sc: await metric('spark-connect'),
      emr: await metric('emr-cluster'),
    };
    const report = await withExtWorker(stack, d.deps, async () => {
      const ready = (name: string) =>
        waitFor(async () => (await clusters.get('sweepco', name)).phase === 'ready', 60_000);
      const opts = { tenant: 'sweepco', instances: 1, idleTimeout: '1h', pollInterval: '100ms' };
      await clusters.create({ ...opts, name: 'orphan-sc', engine: 'spark-connect' });
      await clusters.create({ ...opts, name: 'orphan-emr', engine: 'emr' });
      await clusters.create({ ...opts, name: 'kept', engine: 'spark-connect' });
      await Promise.all([ready('orphan-sc'), ready('orphan-emr'), ready('kept')]);

      // A Spark job whose externalJob is terminated mid-run: its application keeps running.
      const h = await startStream('sweep-job');
      await running('sweep-job');
      const [app] = await d.kube.apps('sweep-job');
      expect(app.metadata.annotations?.[OWNER_ANNOTATION]).toBe(`${h.runId}/task/stream`);
      expect((await d.kube.find('sparkconnects', 'strata-sweepco', 'orphan-sc'))?.metadata.annotations).toEqual({
        [OWNER_ANNOTATION]: 'cluster/sweepco/orphan-sc',
      });
      const emrId = (await clusters.get('sweepco', 'orphan-emr')).providerId!;
      expect(d.emr.clusters.get(emrId)!.input.Tags).toContainEqual({
        Key: 'strata:workflow',
        Value: 'cluster/sweepco/orphan-emr',
      });

      // A run terminated while its job runs: the job's externalJob (abandoned by design, so it can
      // outlive continue-as-new) keeps watching; the sweeper cancels it, and it stops its application.
      const lost = await startStream('sweep-run');
      await running('sweep-run');
      await stack.client.workflow.getHandle(lost.runId).terminate('test: the run dies without cleanup');
      // Visibility lists the running externalJob (eventually consistent: wait for it).
      await waitFor(async () => {
        for await (const w of stack.client.workflow.list({
          query: `WorkflowId = '${lost.runId}/task/stream' AND ExecutionStatus = 'Running'`,
        }))
          return w.workflowId.length > 0;
        return false;
      });

      // An object labelled as Strata's that names no owner (made before owners were recorded): never touched.
      await d.kube.admin.createOrAdopt('sparkapplications', SPARK_APP_VERSION, {
        apiVersion: 'sparkoperator.k8s.io/v1beta2',
        kind: 'SparkApplication',
        metadata: { name: 'legacy', namespace: 'strata-sweepco', labels: { 'app.kubernetes.io/managed-by': 'strata' } },
        spec: { ...app.spec },
      });

      // Temporal terminate: no workflow code runs, so nothing is cleaned up by the owners themselves.
      for (const id of [`${h.runId}/task/stream`, 'cluster/sweepco/orphan-sc', 'cluster/sweepco/orphan-emr'])
        await stack.client.workflow.getHandle(id).terminate('test: the owner dies without cleanup');
      expect(await d.kube.find('sparkconnects', 'strata-sweepco', 'orphan-sc')).toBeDefined();
      expect(d.emr.calls.some((c) => c.op === 'TerminateJobFlows' && c.input.JobFlowIds.includes(emrId))).toBe(false);

      const r = (await stack.client.workflow.execute('orphanSweep', {
        taskQueue: stack.taskQueue,
        workflowId: `sweep-${stack.taskQueue}`,
        args: [],
      })) as SweepReport & { stoppedCount: number };
      await stack.client.workflow.getHandle(h.runId).cancel();
      await clusters.delete('sweepco', 'kept');
      // The cancelled externalJob stops its application in its cleanup.
      await waitFor(async () => (await d.kube.apps('sweep-run')).length === 0);
      const job = stack.client.workflow.getHandle(`${lost.runId}/task/stream`);
      await waitFor(async () => (await job.describe()).status.name !== 'RUNNING');
      const jobStatus = (await job.describe()).status.name;
      return { r, app: `strata-sweepco/${app.metadata.name}`, emrId, lost: lost.runId, jobStatus };
    });
    const { r, emrId } = report;
    expect(r.errors).toEqual([]);
    // The API server is the whole test run's: the sweep sees other files' objects too, so its counts are at least
    // this file's: 2 running applications, 2 Spark Connect servers, 1 EMR cluster, 1 external job (the kept
    // cluster's and the terminated run's application belong to running workflows), and the ownerless one.
    expect(r.unowned).toBeGreaterThanOrEqual(1);
    expect(r.checked).toBeGreaterThanOrEqual(6);
    expect(report.jobStatus).toBe('CANCELLED');
    // What it stopped of this file's tenant is exactly the four orphans.
    const ours = r.stopped.filter((s) => s.tenant === 'sweepco');
    expect(ours.map((s) => [s.kind, s.name, s.owner, s.ownerStatus, s.tenant]).sort()).toEqual(
      [
        ['external-job', `${report.lost}/task/stream`, report.lost, 'TERMINATED', 'sweepco'],
        ['emr-cluster', emrId, 'cluster/sweepco/orphan-emr', 'TERMINATED', 'sweepco'],
        ['spark-application', report.app, expect.stringMatching(/\/task\/stream$/), 'TERMINATED', 'sweepco'],
        ['spark-connect', 'strata-sweepco/orphan-sc', 'cluster/sweepco/orphan-sc', 'TERMINATED', 'sweepco'],
      ].sort(),
    );
    // Stopped at the providers; the running cluster's server and the ownerless application are still there.
    expect(await d.kube.find('sparkconnects', 'strata-sweepco', 'orphan-sc')).toBeUndefined();
    expect(await d.kube.find('sparkapplications', 'strata-sweepco', report.app.split('/')[1])).toBeUndefined();
    expect(await d.kube.find('sparkapplications', 'strata-sweepco', 'legacy')).toBeDefined();
    expect(d.emr.calls.some((c) => c.op === 'TerminateJobFlows' && c.input.JobFlowIds.includes(emrId))).toBe(true);
    // Recorded for /metrics.
    const counted = (kind: string) => r.stopped.filter((s) => s.kind === kind).length;
    expect(await metric('spark-application')).toBe(before.app + counted('spark-application'));
    expect(await metric('spark-connect')).toBe(before.sc + counted('spark-connect'));
    expect(await metric('emr-cluster')).toBe(before.emr + 1);
    expect(await metric('external-job')).toBe(before.job + 1);
  });

  it('its schedule is ensured idempotently: created once, unchanged when ensured again, updated when the interval changes', async () => {
    const scheduleId = `strata-sweeper-${stack.taskQueue}`;
    const o = { taskQueue: stack.taskQueue, interval: '1h', scheduleId };
    expect(await ensureSweeperSchedule(stack.client, o)).toBe('created');
    expect(await ensureSweeperSchedule(stack.client, o)).toBe('unchanged');
    expect(await ensureSweeperSchedule(stack.client, { ...o, interval: '30m' })).toBe('updated');
    const desc = await stack.client.schedule.getHandle(scheduleId).describe();
    expect(desc.spec.intervals).toHaveLength(1);
    expect(desc.action).toMatchObject({ workflowType: 'orphanSweep', taskQueue: stack.taskQueue });
    expect(await ensureSweeperSchedule(stack.client, { ...o, interval: 'off' })).toBe('deleted');
    expect(await ensureSweeperSchedule(stack.client, { ...o, interval: 'off' })).toBe('absent');
  });
});
