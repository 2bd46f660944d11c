/**
 * EMR steps with S3: scripts uploaded to STRATA_EMR_SCRIPTS_URI before AddJobFlowSteps, and
 * step logs read back from the cluster's LogUri. The EMR double writes step logs (gzipped,
 * as EMR does) into the harness's MinIO; the worker reads them through its own S3 client.
 */
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ActivityDeps } from '../../activities/index.js';
import { PRESTO_FROM_S3 } from '../../activities/emr/activities.js';
import { jobName } from '../../schemas/external.js';
import type { RunState } from '../../schemas/run.js';
import { EmrDouble, STEP_SCENARIOS } from '../fakes/emr-double.js';
import { emrClientOf, extLake, extTestStack, withExtWorker } from '../fakes/ext-stack.js';
import { spec } from '../harness/specs.js';
import { harnessS3, harnessS3Client, type TestStack } from '../harness/temporal.js';

const minio = inject('s3');
const s3cfg = harnessS3();
const raw = harnessS3Client();
const tag = randomBytes(3).toString('hex');
const SCRIPTS = `s3://${minio.bucket}/emr-scripts-${tag}`;
const LOGS = `s3n://${minio.bucket}/emr-logs-${tag}/`;
const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };

let stack: TestStack;
let emr: EmrDouble;
let clusterId: string;
let deps: Partial<ActivityDeps>;

/** A location outside the lake that the platform operator allowed for acme. */
const SHARED_JOBS = `s3://${minio.bucket}/shared-jobs-${tag}/`;
/** acme's folder in a lake that is a local folder: its job files are uploaded for EMR. */
let acmeFolder: string;

beforeAll(async () => {
  [stack, emr] = await Promise.all([extTestStack('emr-s3'), EmrDouble.start({ s3: s3cfg })]);
  clusterId = emr.addCluster('warehouse', LOGS, { 'strata:tenant': 'acme' });
  const lakeDir = path.join(inject('scratchDir'), stack.taskQueue, 'emr-lake');
  acmeFolder = path.join(lakeDir, 'acme');
  const { lake } = await extLake(stack, { root: `file://${lakeDir}`, tenantLocations: { acme: [SHARED_JOBS] } });
  deps = {
    emr: emrClientOf(emr),
    emrS3: s3cfg,
    emrScriptsUri: SCRIPTS,
    lake,
  };
});
afterAll(async () => {
  await emr?.close();
  await stack?.close();
  raw.destroy();
});

async function run(s: ReturnType<typeof spec>, d: Partial<ActivityDeps> = deps): Promise<RunState> {
  return withExtWorker(stack, d, () => stack.runToEnd(s, { tenant: 'acme' }));
}

const split = (uri: string) => {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri)!;
  return { Bucket: m[1], Key: m[2] };
};
const getText = async (uri: string) =>
  await (await raw.send(new GetObjectCommand(split(uri)))).Body!.transformToString('utf8');
const sha16 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex').slice(0, 16);
const stepFor = (runWorkflowId: string, taskId: string) =>
  emr.clusters.get(clusterId)!.steps.find((s) => s.Name === jobName(runWorkflowId, taskId, 200));

describe('EMR scripts on S3', () => {
  it('uploads each script before AddJobFlowSteps and runs it with -f / --file', async () => {
    // When AddJobFlowSteps reaches EMR, the script the step names must already be in S3.
    const presentAtAdd: [string, boolean][] = [];
    emr.beforeOp = async (op, input) => {
      if (op !== 'AddJobFlowSteps') return;
      const uri = (input.Steps[0].HadoopJarStep.Args as string[]).find((a) => a.startsWith(SCRIPTS));
      if (uri)
        presentAtAdd.push([
          uri,
          await raw.send(new HeadObjectCommand(split(uri))).then(
            () => true,
            () => false,
          ),
        ]);
    };
    emr.stepScenario = () => STEP_SCENARIOS.success(150);
    const sql =
      "-- daily orders\nselect o.id, 'ünïcode' as tag, \"q\" from bronze.orders o\nwhere o.day = '2026-01-15';\n";
    const big = `insert overwrite table silver.wide select\n${Array.from({ length: 900 }, (_, i) => `  c${i} as column_${i}`).join(',\n')}\nfrom bronze.wide;\n`;
    expect(Buffer.byteLength(big)).toBeGreaterThan(10 * 1024);
    // A job file in acme's folder of the lake, named by its lake path.
    await mkdir(path.join(acmeFolder, 'jobs'), { recursive: true });
    const py = 'from pyspark.sql import SparkSession\nSparkSession.builder.getOrCreate().range(3).show()\n';
    await writeFile(path.join(acmeFolder, 'jobs', `job-${tag}.py`), py);
    const st = await run(
      spec({
        id: 'emr-s3-scripts',
        tasks: [
          { id: 'spark_sql', kind: 'sql', engine: 'emr', clusterId, sql, poll: FAST },
          { id: 'wide', kind: 'sql', engine: 'emr', clusterId, sql: big, args: ['--hiveconf', 'x=1'], poll: FAST },
          { id: 'hql', kind: 'sql', engine: 'emr', dialect: 'hive', clusterId, sql: 'select 2', poll: FAST },
          {
            id: 'presto',
            kind: 'sql',
            engine: 'emr',
            dialect: 'presto',
            clusterId,
            sql: 'select 3',
            args: ['--catalog', 'hive'],
            poll: FAST,
          },
          { id: 'hq', kind: 'hive', clusterId, query: 'show tables', poll: FAST },
          {
            id: 'py',
            kind: 'pyspark',
            engine: 'emr',
            clusterId,
            file: `jobs/job-${tag}.py`,
            args: ['--day', '2026-01-15'],
            poll: FAST,
          },
          { id: 'py_s3', kind: 'pyspark', engine: 'emr', clusterId, file: `${SHARED_JOBS}a.py`, poll: FAST },
        ],
      }),
    );
    expect(
      Object.values(st.tasks)
        .filter((t) => t.status !== 'success')
        .map((t) => t.error),
    ).toEqual([]);
    expect(st.status).toBe('success');
    const wf = st.workflowId;
    expect(wf).toMatch(/^[A-Za-z0-9._=/-]+$/); // the key keeps the workflow id as is
    const expected = (task: string, content: string, ext = '.sql') =>
      `${SCRIPTS}/${wf}/${task}-${sha16(content)}${ext}`;

    const sqlUri = expected('spark_sql', sql);
    expect(stepFor(wf, 'spark_sql')!.Config.Args).toEqual(['spark-sql', '-f', sqlUri]);
    expect(await getText(sqlUri)).toBe(sql);
    const wideUri = expected('wide', big);
    expect(stepFor(wf, 'wide')!.Config.Args).toEqual(['spark-sql', '-f', wideUri, '--hiveconf', 'x=1']);
    expect(await getText(wideUri)).toBe(big);
    expect(stepFor(wf, 'hql')!.Config.Args).toEqual(['hive', '-f', expected('hql', 'select 2')]);
    expect(await getText(expected('hql', 'select 2'))).toBe('select 2');
    expect(stepFor(wf, 'presto')!.Config.Args).toEqual([
      'bash',
      '-c',
      PRESTO_FROM_S3,
      'strata-presto',
      expected('presto', 'select 3'),
      '--catalog',
      'hive',
    ]);
    expect(await getText(expected('presto', 'select 3'))).toBe('select 3');
    expect(stepFor(wf, 'hq')!.Config.Args).toEqual(['hive', '-f', expected('hq', 'show tables')]);
    const pyUri = expected('py', py, '.py');
    expect(stepFor(wf, 'py')!.Config.Args).toEqual([
      'spark-submit',
      '--deploy-mode',
      'cluster',
      pyUri,
      '--day',
      '2026-01-15',
    ]);
    expect(await getText(pyUri)).toBe(py);
    expect(stepFor(wf, 'py_s3')!.Config.Args).toEqual([
      'spark-submit',
      '--deploy-mode',
      'cluster',
      `${SHARED_JOBS}a.py`,
    ]);

    emr.beforeOp = undefined;
    expect(presentAtAdd).toHaveLength(6);
    expect(presentAtAdd.filter(([, ok]) => !ok)).toEqual([]);
  });

  it('refuses SQL over 10 KB without a scripts URI, naming STRATA_EMR_SCRIPTS_URI, and adds no step', async () => {
    emr.stepScenario = () => STEP_SCENARIOS.success(100);
    const adds = emr.calls.filter((c) => c.op === 'AddJobFlowSteps').length;
    const big = `select ${'x'.repeat(10 * 1024)}`;
    const { emrScriptsUri: _, ...inline } = deps;
    const st = await run(
      spec({ id: 'emr-s3-big', tasks: [{ id: 'big', kind: 'sql', engine: 'emr', clusterId, sql: big, poll: FAST }] }),
      inline,
    );
    expect(st.tasks.big.status).toBe('failed');
    expect(st.tasks.big.errorType).toBe('ConfigError');
    expect(st.tasks.big.error).toContain('STRATA_EMR_SCRIPTS_URI');
    expect(st.tasks.big.error).toContain(`${Buffer.byteLength(big)} bytes`);
    expect(emr.calls.filter((c) => c.op === 'AddJobFlowSteps').length).toBe(adds);
    // Short SQL still runs inline without a scripts URI.
    const ok = await run(
      spec({
        id: 'emr-s3-small',
        tasks: [{ id: 'small', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
      }),
      inline,
    );
    expect(ok.status).toBe('success');
    expect(stepFor(ok.workflowId, 'small')!.Config.Args).toEqual(['spark-sql', '-e', 'select 1']);
  });
});

describe('EMR step logs from the cluster LogUri', () => {
  it('a successful step reports the stderr tail and the log files it found', async () => {
    emr.stepScenario = () => STEP_SCENARIOS.success(100);
    const st = await run(
      spec({
        id: 'emr-s3-logs-ok',
        tasks: [{ id: 'q', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
      }),
    );
    expect(st.status).toBe('success');
    const step = stepFor(st.workflowId, 'q')!;
    const out = st.tasks.q.output as Record<string, any>;
    expect(out.stepLogs).toBe(`${LOGS}${clusterId}/steps/${step.Id}/`);
    expect(out.logFiles).toEqual(['controller.gz', 'stderr.gz', 'stdout.gz']);
    expect(out.logTail).toContain('INFO SparkContext: Successfully stopped SparkContext');
    expect(out.logTail).toContain('Running Spark version');
    expect(out.logNote).toBeUndefined();
  });

  it('a failed step carries FailureDetails as its error and the stderr tail from S3 in its failure details', async () => {
    const marker = `marker-${randomBytes(4).toString('hex')}`;
    emr.stepScenario = () => STEP_SCENARIOS.failure('Unknown Error', `Table or view not found: bronze.${marker}`);
    const st = await run(
      spec({
        id: 'emr-s3-logs-fail',
        tasks: [{ id: 'q', kind: 'sql', engine: 'emr', clusterId, sql: `select * from bronze.${marker}`, poll: FAST }],
      }),
    );
    const step = stepFor(st.workflowId, 'q')!;
    const logFile = `s3://${minio.bucket}/emr-logs-${tag}/${clusterId}/steps/${step.Id}/stderr.gz`;
    expect(st.tasks.q.status).toBe('failed');
    expect(st.tasks.q.error).toContain(
      `ended FAILED: Unknown Error: Table or view not found: bronze.${marker} (log: ${logFile})`,
    );

    const err = await stack.client.workflow
      .getHandle(`${st.workflowId}/task/q`)
      .result()
      .catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('ExternalJobFailed');
    const output = (cause.details?.[0] as { output: Record<string, any> }).output;
    expect(output.logFile).toBe(logFile);
    expect(output.logTail).toContain(`Error in query: Table or view not found: bronze.${marker}`);
    expect(output.logTail.trim().split('\n').pop()).toBe(`Error in query: Table or view not found: bronze.${marker}`);
    expect(output.logFiles).toContain('stderr.gz');
    // The same tail stays on the failed task in the run's state (API, CLI logs).
    expect(String(st.tasks.q.output?.logTail)).toContain(`Error in query: Table or view not found: bronze.${marker}`);
  });

  it('reads plain (not gzipped) logs, keeps only the tail, and treats missing logs as a note', async () => {
    emr.stepScenario = () => STEP_SCENARIOS.success(80);
    emr.stepLogs = () => ({
      stderr: Array.from({ length: 500 }, (_, i) => `line ${i}`).join('\n') + '\n',
      stdout: 'ignored\n',
      plain: true,
    });
    const plain = await run(
      spec({
        id: 'emr-s3-logs-plain',
        tasks: [{ id: 'q', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
      }),
    );
    const out = plain.tasks.q.output as Record<string, any>;
    expect(out.logFiles).toEqual(['controller', 'stderr', 'stdout']);
    const lines = out.logTail.split('\n');
    expect(lines).toHaveLength(60);
    expect(lines[0]).toBe('line 440');
    expect(lines[59]).toBe('line 499');

    emr.stepLogs = () => ({ stderr: '', stdout: 'only stdout here\n' });
    const stdout = await run(
      spec({
        id: 'emr-s3-logs-stdout',
        tasks: [{ id: 'q', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
      }),
    );
    expect((stdout.tasks.q.output as Record<string, any>).logTail).toBe('only stdout here');

    emr.stepLogs = () => undefined; // EMR has not uploaded them yet
    const missing = await run(
      spec({
        id: 'emr-s3-logs-missing',
        tasks: [{ id: 'q', kind: 'sql', engine: 'emr', clusterId, sql: 'select 1', poll: FAST }],
      }),
    );
    expect(missing.status).toBe('success');
    const m = missing.tasks.q.output as Record<string, any>;
    expect(m.stepLogs).toContain(`${clusterId}/steps/`);
    expect(m.logTail).toBeUndefined();
    expect(m.logFiles).toEqual([]);
    expect(m.logNote).toMatch(/no stderr\/stdout under s3n:\/\/.* yet/);
  });
});
