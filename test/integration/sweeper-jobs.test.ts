/**
 * The ledger of submitted external jobs and the sweep over it: an EMR step on a tenant's own
 * cluster and an Airbyte sync carry no label or tag Strata could find them by, so when their
 * externalJob workflow is *terminated* (no cleanup runs) only the ledger knows them. The
 * sweeper stops them through the engines' own cancel (CancelSteps, DELETE /jobs/{id}), reports,
 * records and counts them; a job whose owner still runs is left alone, a step whose cluster the
 * tag walk terminated is not stopped a second time, and a sweep again stops nothing twice.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SweepReport } from '../../activities/sweeper/activities.js';
import type { JobRef } from '../../schemas/external.js';
import { listExternalJobs, markExternalJobEnded, recordExternalJob } from '../../store/external-jobs.js';
import { SYNC_SCENARIOS } from '../fakes/airbyte-double.js';
import { STEP_SCENARIOS } from '../fakes/emr-double.js';
import { extLake, extTestStack, startDoubles, sweptCount, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

const TENANT = 'sweepjobs';
const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };
const CONN_FOREVER = randomUUID();
const CONN_OK = randomUUID();

let stack: TestStack;
let d: Doubles;
/** The tenant's own cluster (not made by Strata: no strata:workflow tag, no strata/ name). */
let ownCluster: string;
/** A cluster Strata made whose owning cluster workflow is gone. */
let managedCluster: string;

beforeAll(async () => {
  [stack, d] = await Promise.all([extTestStack('sweeper-jobs'), startDoubles()]);
  const { root: _root, ...lake } = await extLake(stack);
  Object.assign(d.deps, lake);
  // No Kubernetes here: the sweep walks only EMR, Airbyte and the ledger.
  delete d.deps.spark;
  ownCluster = d.emr.addCluster('team-warehouse', undefined, { 'strata:tenant': TENANT });
  managedCluster = d.emr.addCluster(`strata/${TENANT}/gone`, undefined, {
    'strata:tenant': TENANT,
    'strata:workflow': `cluster/${TENANT}/gone-${stack.taskQueue}`,
  });
  const ws = d.airbyte.addWorkspace();
  d.deps.airbyteWorkspaces = { [TENANT]: ws };
  d.airbyte.addSyncConnection(ws, CONN_FOREVER);
  d.airbyte.addSyncConnection(ws, CONN_OK);
  d.airbyte.scenario = (c) => (c === CONN_OK ? SYNC_SCENARIOS.success(150) : SYNC_SCENARIOS.runForever());
  d.emr.stepScenario = () => STEP_SCENARIOS.runForever();
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
});

const metric = (kind: string) => sweptCount(stack, kind);
const stepOf = (cluster: string, pipeline: string) =>
  d.emr.clusters.get(cluster)!.steps.find((s) => s.Name.includes(pipeline));
const cancelStepsFor = (stepId: string) =>
  d.emr.calls.filter((c) => c.op === 'CancelSteps' && c.input.StepIds.includes(stepId)).length;
const ledger = async () => listExternalJobs(stack.db, TENANT, 1000);
const rowOf = async (owner: string) => (await ledger()).filter((r) => r.owner === owner);

describe('the ledger of submitted external jobs', () => {
  it('keeps one row per job however often it is recorded, reopens it on a new submit, and never hands it to another tenant', async () => {
    const ref: JobRef = { engine: 'emr', name: `ledger-${randomUUID()}`, scope: 'j-LEDGER', id: 's-1', adopted: false };
    // Another queue than the stack's: the sweeps below never see these rows.
    const o = { ref, tenant: TENANT, owner: 'pipeline/x/task/a', taskQueue: `${stack.taskQueue}-ledger` };
    const first = await recordExternalJob(stack.db, o);
    expect(await recordExternalJob(stack.db, { ...o, ref: { ...ref, adopted: true } })).toBe(first);
    expect(await markExternalJobEnded(stack.db, ref, 'COMPLETED', 'emrPoll')).toBe(true);
    expect(await markExternalJobEnded(stack.db, ref, 'cancelled: SUBMITTED', 'emrCancel')).toBe(false);
    let rows = (await ledger()).filter((r) => r.name === ref.name);
    expect(rows.map((r) => [r.id, r.end_state, r.ended_by])).toEqual([[first, 'COMPLETED', 'emrPoll']]);
    // Submitted again (a repaired task adopting the job): the same row, open again, for its new owner.
    expect(await recordExternalJob(stack.db, { ...o, owner: 'pipeline/x/task/b' })).toBe(first);
    rows = (await ledger()).filter((r) => r.name === ref.name);
    expect(rows.map((r) => [r.id, r.owner, r.ended_at])).toEqual([[first, 'pipeline/x/task/b', null]]);
    await expect(recordExternalJob(stack.db, { ...o, tenant: 'someone-else' })).rejects.toThrow(/another tenant/);
    expect((await listExternalJobs(stack.db, 'someone-else')).filter((r) => r.name === ref.name)).toEqual([]);
    await markExternalJobEnded(stack.db, ref, 'COMPLETED', 'test');
  });
});

describe('the orphan sweeper over the ledger', () => {
  it('stops an EMR step on a tenant cluster and an Airbyte sync whose externalJob was terminated, and only those', async () => {
    const before = { step: await metric('emr-step'), sync: await metric('airbyte-job') };
    const out = await withExtWorker(stack, d.deps, async () => {
      const start = (id: string, task: Record<string, unknown>) =>
        stack.runs.start({
          spec: spec({ id, tasks: [{ poll: FAST, ...task }] }),
          tenant: TENANT,
          trigger: 'manual',
        });
      const sql = { kind: 'sql', engine: 'emr', sql: 'select 1' };
      const orphanStep = await start('sj-orphan-step', { id: 'step', ...sql, clusterId: ownCluster });
      const keptStep = await start('sj-kept-step', { id: 'step', ...sql, clusterId: ownCluster });
      const managedStep = await start('sj-managed-step', { id: 'step', ...sql, clusterId: managedCluster });
      const orphanSync = await start('sj-orphan-sync', {
        id: 'ingest',
        kind: 'airbyte.sync',
        connectionId: CONN_FOREVER,
      });
      const doneSync = await start('sj-done-sync', { id: 'ingest', kind: 'airbyte.sync', connectionId: CONN_OK });

      const running = (cluster: string, p: string) => async () => {
        const s = stepOf(cluster, p);
        return !!s && d.emr.stepPhase(s).state === 'RUNNING';
      };
      await waitFor(running(ownCluster, 'sj-orphan-step'));
      await waitFor(running(ownCluster, 'sj-kept-step'));
      await waitFor(running(managedCluster, 'sj-managed-step'));
      await waitFor(async () =>
        d.airbyte.jobs.some((j) => j.connectionId === CONN_FOREVER && d.airbyte.status(j) === 'running'),
      );
      const sync = d.airbyte.jobs.find((j) => j.connectionId === CONN_FOREVER)!;
      await stack.client.workflow
        .getHandle(doneSync.runId)
        .result()
        .catch(() => undefined);

      const owner = {
        orphanStep: `${orphanStep.runId}/task/step`,
        keptStep: `${keptStep.runId}/task/step`,
        managedStep: `${managedStep.runId}/task/step`,
        orphanSync: `${orphanSync.runId}/task/ingest`,
        doneSync: `${doneSync.runId}/task/ingest`,
      };
      // Each submit is in the ledger once; the sync that finished was closed by the poll that saw it.
      await waitFor(async () => (await rowOf(owner.managedStep)).length === 1);
      const submitted = await ledger();
      for (const o of [owner.orphanStep, owner.keptStep, owner.managedStep, owner.orphanSync])
        expect(
          submitted.filter((r) => r.owner === o).map((r) => [r.ended_at, r.task_queue]),
          o,
        ).toEqual([[null, stack.taskQueue]]);
      expect((await rowOf(owner.doneSync)).map((r) => [r.engine, r.end_state, r.ended_by])).toEqual([
        ['airbyte', 'succeeded', 'airbytePoll'],
      ]);
      const steps = {
        orphan: stepOf(ownCluster, 'sj-orphan-step')!,
        kept: stepOf(ownCluster, 'sj-kept-step')!,
        managed: stepOf(managedCluster, 'sj-managed-step')!,
      };
      expect((await rowOf(owner.orphanStep))[0]).toMatchObject({
        engine: 'emr',
        tenant: TENANT,
        scope: ownCluster,
        job_id: steps.orphan.Id,
        ref: { engine: 'emr', scope: ownCluster, id: steps.orphan.Id },
      });

      // Temporal terminate: no workflow code runs, so nothing stops the jobs.
      for (const id of [owner.orphanStep, owner.managedStep, owner.orphanSync])
        await stack.client.workflow.getHandle(id).terminate('test: the job workflow dies without cleanup');
      expect(cancelStepsFor(steps.orphan.Id)).toBe(0);
      expect(d.airbyte.count('DELETE', new RegExp(`/jobs/${sync.jobId}$`))).toBe(0);
      expect(d.airbyte.status(sync)).toBe('running');

      const sweep = async (n: number) =>
        (await stack.client.workflow.execute('orphanSweep', {
          taskQueue: stack.taskQueue,
          workflowId: `sweep-${stack.taskQueue}-${n}`,
          args: [],
        })) as SweepReport & { stoppedCount: number };
      const r = await sweep(1);
      const calls = { orphan: cancelStepsFor(steps.orphan.Id), kept: cancelStepsFor(steps.kept.Id) };
      const managedCalls = cancelStepsFor(steps.managed.Id);
      const rows = await ledger();
      const again = await sweep(2);
      const callsAgain = cancelStepsFor(steps.orphan.Id);
      const keptRow = await rowOf(owner.keptStep);
      const keptPhase = d.emr.stepPhase(steps.kept).state;

      // Cleanup; the kept step's own workflow stops it when its run is cancelled, and closes its row.
      for (const h of [orphanStep, keptStep, managedStep, orphanSync])
        await stack.client.workflow
          .getHandle(h.runId)
          .cancel()
          .catch(() => undefined);
      await waitFor(async () => (await rowOf(owner.keptStep))[0]?.ended_at !== null);
      return {
        r,
        again,
        calls,
        managedCalls,
        callsAgain,
        rows,
        owner,
        steps,
        sync,
        keptRow,
        keptPhase,
        keptEnd: (await rowOf(owner.keptStep))[0],
      };
    });
    const { r, owner, steps, sync } = out;
    expect(r.errors).toEqual([]);
    expect(r.stopped.map((s) => [s.kind, s.name, s.owner, s.ownerStatus, s.tenant]).sort()).toEqual(
      [
        ['airbyte-job', `${CONN_FOREVER}/${sync.jobId}`, owner.orphanSync, 'TERMINATED', TENANT],
        ['emr-cluster', managedCluster, `cluster/${TENANT}/gone-${stack.taskQueue}`, 'NOT_FOUND', TENANT],
        ['emr-step', `${ownCluster}/${steps.orphan.Id}`, owner.orphanStep, 'TERMINATED', TENANT],
      ].sort(),
    );
    // Stopped at the providers, through the engines' own cancel.
    expect(out.calls.orphan).toBe(1);
    expect(
      d.emr.calls.find((c) => c.op === 'CancelSteps' && c.input.StepIds[0] === steps.orphan.Id)?.input,
    ).toMatchObject({
      ClusterId: ownCluster,
      StepIds: [steps.orphan.Id],
      StepCancellationOption: 'TERMINATE_PROCESS',
    });
    await waitFor(async () => d.emr.stepPhase(steps.orphan).state === 'CANCELLED');
    expect(d.airbyte.count('DELETE', new RegExp(`/jobs/${sync.jobId}$`), 200)).toBe(1);
    expect(d.airbyte.status(sync)).toBe('cancelled');
    // The step on the cluster the tag walk terminated is stopped with it, not cancelled a second time.
    expect(out.managedCalls).toBe(0);
    expect(d.emr.calls.some((c) => c.op === 'TerminateJobFlows' && c.input.JobFlowIds.includes(managedCluster))).toBe(
      true,
    );
    // The job whose owner still ran was left alone by both sweeps.
    expect(out.calls.kept).toBe(0);
    expect(out.keptPhase).toBe('RUNNING');
    expect(out.keptRow.map((k) => k.ended_at)).toEqual([null]);
    // ... and stopped by its own workflow once its run was cancelled, which closed its row.
    expect(out.keptEnd).toMatchObject({ ended_by: 'emrCancel', end_state: 'cancelled: SUBMITTED' });

    // The ledger says who ended each job.
    const byOwner = (o: string) => out.rows.filter((x) => x.owner === o).map((x) => [x.ended_by, x.end_state]);
    expect(byOwner(owner.orphanStep)).toEqual([['sweepOrphans', 'cancelled: SUBMITTED']]);
    expect(byOwner(owner.orphanSync)).toEqual([['sweepOrphans', 'cancelled: cancelled']]);
    expect(byOwner(owner.managedStep)).toEqual([
      ['sweepOrphans', `swept: its cluster ${managedCluster} is terminating`],
    ]);

    // A second sweep finds nothing left to stop: nothing is cancelled twice.
    expect(out.again.errors).toEqual([]);
    expect(out.again.stopped).toEqual([]);
    expect(out.callsAgain).toBe(1);
    expect(d.airbyte.count('DELETE', new RegExp(`/jobs/${sync.jobId}$`))).toBe(1);

    // Recorded in the metastore and counted for /metrics.
    const swept = await stack.db.query<{ kind: string; name: string; owner: string; owner_status: string }>(
      `SELECT kind, name, owner, owner_status FROM swept_resources WHERE tenant = $1 AND kind IN ('emr-step', 'airbyte-job') AND owner = ANY($2) ORDER BY kind`,
      [TENANT, [owner.orphanStep, owner.orphanSync]],
    );
    expect(swept.rows).toEqual([
      {
        kind: 'airbyte-job',
        name: `${CONN_FOREVER}/${sync.jobId}`,
        owner: owner.orphanSync,
        owner_status: 'TERMINATED',
      },
      {
        kind: 'emr-step',
        name: `${ownCluster}/${steps.orphan.Id}`,
        owner: owner.orphanStep,
        owner_status: 'TERMINATED',
      },
    ]);
    expect(await metric('emr-step')).toBe(before.step + 1);
    expect(await metric('airbyte-job')).toBe(before.sync + 1);
  });
});
