import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunState } from '../../schemas/run.js';
import { SYNC_SCENARIOS } from '../fakes/airbyte-double.js';
import { STEP_SCENARIOS } from '../fakes/emr-double.js';
import { extLake, extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { spec, waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

let stack: TestStack;
let d: Doubles;
let clusterId: string;
const CONN = '9b3c8f4e-1d2a-4c5b-8e7f-0a1b2c3d4e5f';
/** acme's folder in the lake the jobs' files come from. */
let acmeLake: string;
beforeAll(async () => {
  [stack, d] = await Promise.all([extTestStack('emr-airbyte'), startDoubles()]);
  const { root, ...lake } = await extLake(stack);
  Object.assign(d.deps, lake);
  acmeLake = `${root}/acme`;
  clusterId = d.emr.addCluster('shared-warehouse', undefined, { 'strata:tenant': 'acme' });
  d.airbyte.addSyncConnection(d.deps.airbyteWorkspaces!.acme, CONN);
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
});

const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };

async function run(s: ReturnType<typeof spec>, cancelWhen?: () => Promise<boolean>): Promise<RunState> {
  const h = await stack.runs.start({ spec: s, tenant: 'acme', trigger: 'manual' });
  const handle = stack.client.workflow.getHandle(h.runId);
  if (cancelWhen) {
    await waitFor(cancelWhen);
    await handle.cancel();
  }
  await handle.result().catch(() => undefined);
  return stack.runs.state(h.runId);
}

const stepsNamed = (re: RegExp) => [...d.emr.clusters.get(clusterId)!.steps].filter((s) => re.test(s.Name));

describe('EMR steps', () => {
  it('runs sql by dialect, pyspark and hive as command-runner steps on the named cluster', async () => {
    d.emr.stepScenario = () => STEP_SCENARIOS.success(200);
    const s = spec({
      id: 'emr-ok',
      tasks: [
        { id: 'spark_sql', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST },
        { id: 'presto', kind: 'sql', engine: 'emr', dialect: 'presto', clusterId, sql: 'select 2', poll: FAST },
        {
          id: 'py',
          kind: 'pyspark',
          engine: 'emr',
          clusterId,
          file: 'jobs/a.py',
          args: ['--x', '1'],
          sparkConf: { 'spark.executor.memory': '2g' },
          poll: FAST,
        },
        { id: 'hv', kind: 'hive', clusterId, script: `${acmeLake}/hql/load.hql`, poll: FAST },
      ],
    });
    const st = await withExtWorker(stack, d.deps, () => run(s));
    expect(st.status).toBe('success');
    const args = (id: string) => stepsNamed(new RegExp(`emr-ok.*task-${id.replace('_', '-')}`))[0]?.Config.Args;
    expect(args('spark_sql')).toEqual(['spark-sql', '-e', 'select 1']);
    expect(args('presto')).toEqual(['presto-cli', '--execute', 'select 2']);
    // A lake path reaches EMR as the full URI of acme's object; a URI inside acme's lake as it is.
    expect(args('py')).toEqual([
      'spark-submit',
      '--deploy-mode',
      'cluster',
      '--conf',
      'spark.executor.memory=2g',
      `${acmeLake}/jobs/a.py`,
      '--x',
      '1',
    ]);
    expect(args('hv')).toEqual(['hive', '-f', `${acmeLake}/hql/load.hql`]);
    for (const step of stepsNamed(/emr-ok/)) {
      expect(step.Config.Jar).toBe('command-runner.jar');
      expect(step.ActionOnFailure).toBe('CONTINUE');
    }
    expect(st.tasks.py.output).toMatchObject({
      engine: 'emr',
      clusterId,
      adopted: false,
      stepLogs: expect.stringContaining(`${clusterId}/steps/`),
    });
  });

  it('fails the task with the step FailureDetails', async () => {
    d.emr.stepScenario = () => STEP_SCENARIOS.failure('Unknown Error', 'Table or view not found: bronze.orders');
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({
          id: 'emr-fail',
          tasks: [{ id: 'q', kind: 'sql', engine: 'emr', clusterId, sql: 'select * from bronze.orders', poll: FAST }],
        }),
      ),
    );
    expect(st.tasks.q.status).toBe('failed');
    expect(st.tasks.q.error).toContain(
      'ended FAILED: Unknown Error: Table or view not found: bronze.orders (log: s3://strata-emr-logs/',
    );
  });

  it('cancelling the run cancels the step (CancelSteps)', async () => {
    d.emr.stepScenario = () => STEP_SCENARIOS.runForever();
    const before = d.emr.count('CancelSteps');
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({
          id: 'emr-cancel',
          tasks: [{ id: 'forever', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
        }),
        async () => stepsNamed(/emr-cancel/).some((s) => d.emr.stepPhase(s).state === 'RUNNING'),
      ),
    );
    expect(st.tasks.forever.status).toBe('cancelled');
    expect(d.emr.count('CancelSteps') - before).toBe(1);
    const step = stepsNamed(/emr-cancel/)[0];
    expect(d.emr.calls.find((c) => c.op === 'CancelSteps' && c.input.StepIds[0] === step.Id)?.input).toMatchObject({
      ClusterId: clusterId,
      StepCancellationOption: 'TERMINATE_PROCESS',
    });
    await waitFor(async () => d.emr.stepPhase(step).state === 'CANCELLED');
  });

  it('stops the step when its polls fail for good, so no step runs on unwatched', async () => {
    d.emr.stepScenario = () => STEP_SCENARIOS.runForever();
    const before = d.emr.count('CancelSteps');
    const s = spec({
      id: 'emr-pollfail',
      tasks: [{ id: 'blind', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
    });
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({ spec: s, tenant: 'acme', trigger: 'manual' });
      await waitFor(async () => stepsNamed(/emr-pollfail/).some((x) => d.emr.stepPhase(x).state === 'RUNNING'));
      // EMR starts refusing the step's polls (a revoked permission): no retry fixes that.
      d.emr.failNext('DescribeStep', 1, 400, 'AccessDeniedException');
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      return stack.runs.state(h.runId);
    });
    expect(st.tasks.blind).toMatchObject({ status: 'failed', errorType: 'AccessDeniedException' });
    expect(d.emr.count('CancelSteps') - before).toBe(1);
    const step = stepsNamed(/emr-pollfail/)[0];
    await waitFor(async () => d.emr.stepPhase(step).state === 'CANCELLED');
  });

  it('a long step is watched across continue-as-new: events per execution stay bounded, the step is submitted once', async () => {
    // A multi-day step, compressed: fast polls for 3 s and a history budget of a few polls per
    // execution, so even a slow machine's handful of polls spans executions.
    d.emr.stepScenario = () => STEP_SCENARIOS.success(3000);
    const s = spec({
      id: 'emr-long',
      tasks: [
        {
          id: 'days',
          kind: 'sql',
          engine: 'emr',
          clusterId,
          sql: 'select 1',
          poll: { initial: '40ms', max: '60ms', backoff: 1.2 },
        },
      ],
    });
    const { st, runId } = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: s,
        tenant: 'acme',
        trigger: 'manual',
        options: { jobContinueAsNewAfterEvents: 20 },
      });
      await stack.client.workflow.getHandle(h.runId).result();
      return { st: await stack.runs.state(h.runId), runId: h.runId };
    });
    expect(st.tasks.days).toMatchObject({
      status: 'success',
      output: { engine: 'emr', states: expect.arrayContaining(['RUNNING', 'COMPLETED']) },
    });
    expect(stepsNamed(/emr-long/)).toHaveLength(1);
    const child = `${runId}/task/days`;
    // Visibility (the list) catches up with closed executions a moment after they close.
    let executions: string[] = [];
    await waitFor(async () => {
      executions = [];
      for await (const ex of stack.client.workflow.list({ query: `WorkflowId = '${child}'` }))
        executions.push(ex.runId);
      return executions.length >= 2;
    }, 15_000).catch(() => {});
    expect(executions.length).toBeGreaterThanOrEqual(2);
    let polls = 0;
    for (const r of executions) {
      const events = (await stack.client.workflow.getHandle(child, r).fetchHistory()).events!;
      expect(events.length, `execution ${r}`).toBeLessThan(60);
      polls += events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'emrPoll').length;
      expect(
        events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'emrSubmit').length,
      ).toBeLessThanOrEqual(1);
    }
    expect(polls).toBeGreaterThanOrEqual(executions.length + 2);
    // The run's own history saw one child, however many polls it made.
    const parent = (await stack.client.workflow.getHandle(runId).fetchHistory()).events!;
    expect(parent.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes)).toHaveLength(1);
  });

  it('a worker restarted mid-poll, and a retried submit, add the step only once', async () => {
    d.emr.stepScenario = () => STEP_SCENARIOS.success(2500);
    d.emr.loseResponseNext('AddJobFlowSteps');
    const before = stepsNamed(/emr-restart/).length;
    const s = spec({
      id: 'emr-restart',
      tasks: [{ id: 'long', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
    });
    const h = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({ spec: s, tenant: 'acme', trigger: 'manual' });
      await waitFor(async () => stepsNamed(/emr-restart/).some((x) => d.emr.stepPhase(x).state === 'RUNNING'));
      return h;
    });
    d.emr.failNext('DescribeStep', 2, 500, 'InternalServerError');
    const st = await withExtWorker(stack, d.deps, async () => {
      await stack.client.workflow.getHandle(h.runId).result();
      return stack.runs.state(h.runId);
    });
    expect(st.status).toBe('success');
    // The first add took effect but its answer was lost; the retried submit found it by name.
    expect(before).toBe(0);
    expect(stepsNamed(/emr-restart/)).toHaveLength(1);
    expect(
      d.emr.calls
        .filter((c) => c.op === 'AddJobFlowSteps' && /emr-restart/.test(c.input.Steps[0].Name))
        .map((c) => c.status),
    ).toEqual([500]);
    expect(st.tasks.long.output).toMatchObject({ adopted: true });
  });

  it('an unknown cluster id fails at once with EMR’s message', async () => {
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({
          id: 'emr-nocluster',
          tasks: [{ id: 'q', kind: 'sql', engine: 'emr', clusterId: 'j-DOESNOTEXIST', sql: 'select 1', poll: FAST }],
        }),
      ),
    );
    expect(st.tasks.q.status).toBe('failed');
    expect(st.tasks.q.errorType).toBe('InvalidRequestException');
    expect(st.tasks.q.error).toContain("Cluster id 'j-DOESNOTEXIST' is not valid.");
  });
});

describe('Airbyte syncs', () => {
  it('triggers a sync, polls it to success and reports rows and bytes', async () => {
    d.airbyte.scenario = () => SYNC_SCENARIOS.success(300);
    const st = await withExtWorker(stack, d.deps, () =>
      run(spec({ id: 'ab-ok', tasks: [{ id: 'ingest', kind: 'airbyte.sync', connectionId: CONN, poll: FAST }] })),
    );
    expect(st.status).toBe('success');
    expect(st.tasks.ingest.output).toMatchObject({
      engine: 'airbyte',
      rowsSynced: d.airbyte.rowsPerSync,
      bytesSynced: d.airbyte.rowsPerSync * 100,
      adopted: false,
    });
    expect(d.airbyte.count('POST', /\/applications\/token$/, 200)).toBeGreaterThanOrEqual(1);
  });

  it('adopts a sync that is already running (409) instead of failing', async () => {
    const running = d.airbyte.startExternalSync(CONN, SYNC_SCENARIOS.runForever());
    const conflicts = d.airbyte.count('POST', /\/jobs$/, 409);
    const listed = d.airbyte.count('GET', /\/jobs$/, 200);
    const st = await withExtWorker(stack, d.deps, async () => {
      const h = await stack.runs.start({
        spec: spec({ id: 'ab-adopt', tasks: [{ id: 'ingest', kind: 'airbyte.sync', connectionId: CONN, poll: FAST }] }),
        tenant: 'acme',
        trigger: 'manual',
      });
      await waitFor(async () => d.airbyte.count('POST', /\/jobs$/, 409) > conflicts);
      // The running sync ends only once the task has listed it (after its 409), not between the two.
      await waitFor(async () => d.airbyte.count('GET', /\/jobs$/, 200) > listed);
      d.airbyte.finish(running);
      await stack.client.workflow.getHandle(h.runId).result();
      return stack.runs.state(h.runId);
    });
    expect(st.status).toBe('success');
    expect(st.tasks.ingest.output).toMatchObject({ adopted: true, jobId: running.jobId });
    expect(d.airbyte.count('POST', /\/jobs$/, 409)).toBeGreaterThanOrEqual(1);
  });

  it('fails with the sync status and cancels the job when the run is cancelled', async () => {
    d.airbyte.scenario = () => SYNC_SCENARIOS.failure();
    const failed = await withExtWorker(stack, d.deps, () =>
      run(spec({ id: 'ab-fail', tasks: [{ id: 'ingest', kind: 'airbyte.sync', connectionId: CONN, poll: FAST }] })),
    );
    expect(failed.tasks.ingest.status).toBe('failed');
    expect(failed.tasks.ingest.error).toMatch(/airbyte job .* ended failed: sync job \d+ failed/);

    d.airbyte.scenario = () => SYNC_SCENARIOS.runForever();
    const deletes = d.airbyte.count('DELETE', /\/jobs\/\d+$/, 200);
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({ id: 'ab-cancel', tasks: [{ id: 'ingest', kind: 'airbyte.sync', connectionId: CONN, poll: FAST }] }),
        async () => d.airbyte.jobs.some((j) => d.airbyte.status(j) === 'running'),
      ),
    );
    expect(st.tasks.ingest.status).toBe('cancelled');
    expect(d.airbyte.count('DELETE', /\/jobs\/\d+$/, 200) - deletes).toBe(1);
    expect(d.airbyte.jobs.filter((j) => d.airbyte.status(j) === 'running')).toHaveLength(0);
  });

  it('an unknown connection fails with Airbyte’s problem detail, and no secret shows in errors', async () => {
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({
          id: 'ab-404',
          tasks: [
            { id: 'ingest', kind: 'airbyte.sync', connectionId: '00000000-0000-4000-8000-000000000000', poll: FAST },
          ],
        }),
      ),
    );
    expect(st.tasks.ingest.status).toBe('failed');
    expect(st.tasks.ingest.error).toContain(
      '404 resource-not-found: Could not find a connection with id: 00000000-0000-4000-8000-000000000000',
    );
    const history = JSON.stringify(
      await stack.client.workflow.getHandle(`${st.workflowId}/task/ingest`).fetchHistory(),
    );
    expect(history).not.toContain(d.airbyte.clientSecret);
  });
});
