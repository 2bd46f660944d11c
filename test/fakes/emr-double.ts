/**
 * An Amazon EMR double speaking AWS JSON 1.1 as @aws-sdk/client-emr sends it: POST /,
 * X-Amz-Target: ElasticMapReduce.{Op}, PascalCase members checked against the project's
 * table of the EMR API (emr-shapes.ts, itself checked against the botocore model when that
 * is present), epoch-second timestamps and `__type` errors. Steps follow EMR's state
 * machine on a timeline the test chooses; clusters go STARTING → BOOTSTRAPPING → WAITING.
 * Given S3 settings, it writes each step's logs (controller, stderr, stdout; gzipped as EMR
 * does) under the cluster's LogUri when the step ends, before any answer reports the end.
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type http from 'node:http';
import { gzipSync } from 'node:zlib';
import { s3ClientConfig, type S3Config } from '../../activities/s3/client.js';
import { checkShape } from './emr-model.js';
import { EMR_API } from './emr-shapes.js';
import { sendJson, serve, type Served } from './http.js';

export interface StepPhase {
  state: 'PENDING' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCEL_PENDING' | 'CANCELLED' | 'INTERRUPTED';
  ms?: number;
  /** FailureDetails; LogFile defaults to the step's stderr.gz under the cluster's LogUri. */
  failure?: { Reason: string; Message: string; LogFile?: string };
}

/** What the double writes to {LogUri}/{clusterId}/steps/{stepId}/ when a step ends. */
export interface StepLogs {
  stderr?: string;
  stdout?: string;
  /** Plain `stderr`/`stdout` instead of EMR's `.gz`. */
  plain?: boolean;
}

/** Log lines like a spark-sql / spark-submit step writes; the failure message ends stderr. */
export function defaultStepLogs(step: { Args: string[]; state: string; failure?: { Message: string } }): StepLogs {
  const t = '26/01/15 10:00:0';
  const stderr = [
    `${t}1 INFO SparkContext: Running Spark version 3.5.2-amzn-1`,
    `${t}1 INFO SparkContext: Submitted application: ${step.Args[0] ?? 'step'}`,
    `${t}2 INFO ResourceUtils: No custom resources configured for spark.driver.`,
    `${t}3 INFO YarnClientSchedulerBackend: Application application_1736935200000_0001 has started running.`,
    ...(step.state === 'FAILED'
      ? [
          `${t}5 ERROR SparkSQLDriver: Failed in [${step.Args.join(' ')}]`,
          `Error in query: ${step.failure?.Message ?? 'failed'}`,
        ]
      : step.state === 'COMPLETED'
        ? [
            `${t}5 INFO DAGScheduler: Job 0 finished: processCmd at CliDriver.java:207, took 1.234 s`,
            `${t}6 INFO SparkContext: Successfully stopped SparkContext`,
          ]
        : [`${t}5 ERROR SparkSQLDriver: interrupted by step cancellation`]),
  ].join('\n');
  return {
    stderr: stderr + '\n',
    stdout: step.state === 'COMPLETED' ? '1\nTime taken: 1.234 seconds, Fetched 1 row(s)\n' : '',
  };
}

export const STEP_SCENARIOS = {
  success: (runMs = 300): StepPhase[] => [
    { state: 'PENDING', ms: 80 },
    { state: 'RUNNING', ms: runMs },
    { state: 'COMPLETED' },
  ],
  failure: (reason: string, message: string): StepPhase[] => [
    { state: 'PENDING', ms: 50 },
    { state: 'RUNNING', ms: 150 },
    { state: 'FAILED', failure: { Reason: reason, Message: message } },
  ],
  runForever: (): StepPhase[] => [{ state: 'PENDING', ms: 50 }, { state: 'RUNNING' }],
};

interface StepRec {
  Id: string;
  ClusterId: string;
  Name: string;
  Config: Record<string, any>;
  ActionOnFailure: string;
  created: number;
  timeline: StepPhase[];
  cancelledAt?: number;
  logsWritten?: Promise<void>;
}

interface ClusterRec {
  Id: string;
  Name: string;
  created: number;
  terminatedAt?: number;
  core: number;
  logUri?: string;
  steps: StepRec[];
  input: Record<string, any>;
}

const now = () => Date.now() / 1000;
const rid = (p: string) =>
  `${p}-${Array.from({ length: 13 }, () => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'[Math.floor(Math.random() * 36)]).join('')}`;

export class EmrDouble {
  served!: Served;
  readonly clusters = new Map<string, ClusterRec>();
  readonly calls: { op: string; status: number; input: Record<string, any>; output?: unknown }[] = [];
  stepScenario: (step: { Name: string; Args: string[] }) => StepPhase[] = () => STEP_SCENARIOS.success();
  /** The logs a step leaves when it ends (undefined: none, as before EMR uploads them). */
  stepLogs: (step: {
    Id: string;
    Name: string;
    Args: string[];
    state: string;
    failure?: { Message: string };
  }) => StepLogs | undefined = defaultStepLogs;
  /** Awaited before a (valid) call takes effect: lets a test look at the world as EMR would see it then. */
  beforeOp?: (op: string, input: Record<string, any>) => Promise<void> | void;
  private s3?: S3Client;
  /** ms a new cluster takes to reach WAITING. */
  clusterStartMs = 200;
  private failures: { op: string; status: number; type: string; left: number; apply?: boolean }[] = [];

  /** With `s3`, step logs are written to the cluster's LogUri (bucket must exist). */
  static async start(opts: { s3?: S3Config } = {}): Promise<EmrDouble> {
    const d = new EmrDouble();
    if (opts.s3) d.s3 = new S3Client(s3ClientConfig(opts.s3));
    d.served = await serve((req, body, res) => d.handle(req, body, res));
    return d;
  }
  get url() {
    return this.served.url;
  }
  close() {
    this.s3?.destroy();
    return this.served.close();
  }

  /** A cluster that already runs (as a `clusterId:` in a spec refers to), with its tags. */
  addCluster(name = 'shared', logUri = 's3n://strata-emr-logs/', tags: Record<string, string> = {}): string {
    const Id = rid('j');
    this.clusters.set(Id, {
      Id,
      Name: name,
      created: Date.now() - 60_000,
      core: 2,
      logUri,
      steps: [],
      input: { Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
    });
    return Id;
  }

  failNext(op: string, count: number, status = 500, type = 'InternalServerError') {
    this.failures.push({ op, status, type, left: count });
  }

  /** The next call of `op` takes effect but its answer is lost (a 500 after the write). */
  loseResponseNext(op: string) {
    this.failures.push({ op, status: 500, type: 'InternalServerError', left: 1, apply: true });
  }

  count(op: string, status = 200) {
    return this.calls.filter((c) => c.op === op && c.status === status).length;
  }

  private error(
    res: http.ServerResponse,
    status: number,
    type: string,
    message: string,
    extra: Record<string, unknown> = {},
  ) {
    sendJson(res, status, { __type: type, Message: message, ...extra }, 'application/x-amz-json-1.1');
    return status;
  }

  private async handle(req: http.IncomingMessage, body: string, res: http.ServerResponse) {
    const target = String(req.headers['x-amz-target'] ?? '');
    const op = target.replace(/^ElasticMapReduce\./, '');
    let input: Record<string, any> = {};
    const rec: { op: string; status: number; input: Record<string, any>; output?: unknown } = { op, status: 0, input };
    this.calls.push(rec);
    const model = EMR_API;
    if (req.method !== 'POST' || req.url !== '/') {
      rec.status = this.error(res, 404, 'UnknownOperationException', 'only POST / is served');
      return;
    }
    if (!String(req.headers['content-type']).startsWith('application/x-amz-json-1.1')) {
      rec.status = this.error(res, 400, 'SerializationException', 'Content-Type must be application/x-amz-json-1.1');
      return;
    }
    if (!String(req.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256 ')) {
      rec.status = this.error(
        res,
        403,
        'MissingAuthenticationTokenException',
        'Request is missing Authentication Token',
      );
      return;
    }
    const opDef = model.operations[op];
    if (!target.startsWith(`${model.metadata.targetPrefix}.`) || !opDef) {
      rec.status = this.error(res, 400, 'UnknownOperationException', `unknown operation ${target}`);
      return;
    }
    try {
      input = JSON.parse(body || '{}');
      rec.input = input;
    } catch {
      rec.status = this.error(res, 400, 'SerializationException', 'body is not JSON');
      return;
    }
    const problems = opDef.input ? checkShape(opDef.input.shape, input) : [];
    if (problems.length) {
      rec.status = this.error(res, 400, 'ValidationException', problems.join('; '));
      return;
    }
    await this.beforeOp?.(op, input);
    const f = this.failures.find((x) => x.op === op && x.left > 0);
    if (f) {
      f.left--;
      if (f.apply)
        (this as unknown as Record<string, (i: Record<string, any>) => unknown>)[`op${op}`]?.call(this, input);
      rec.status = this.error(res, f.status, f.type, 'injected failure');
      return;
    }
    const handler = (this as unknown as Record<string, (i: Record<string, any>) => unknown>)[`op${op}`];
    if (!handler) {
      rec.status = this.error(res, 400, 'UnknownOperationException', `${op} is not served by this double`);
      return;
    }
    try {
      const out = (handler.call(this, input) ?? {}) as Record<string, any>;
      // A step seen ended has its logs in S3 already (real EMR is slower: minutes).
      if (op === 'DescribeStep' || op === 'ListSteps')
        await this.writeLogs(input.ClusterId, [out.Step, ...(out.Steps ?? [])]);
      rec.output = out;
      sendJson(res, 200, out, 'application/x-amz-json-1.1');
      rec.status = 200;
    } catch (e) {
      const err = e as { type?: string; message: string };
      rec.status = this.error(res, 400, err.type ?? 'InvalidRequestException', err.message, {
        ErrorCode: 'INVALID_REQUEST',
      });
    }
  }

  /** The operations this double answers (checked against the model in tests). */
  static readonly OPERATIONS = [
    'AddJobFlowSteps',
    'DescribeStep',
    'ListSteps',
    'CancelSteps',
    'RunJobFlow',
    'DescribeCluster',
    'ListClusters',
    'TerminateJobFlows',
    'ListInstanceGroups',
    'ModifyInstanceGroups',
  ];

  private cluster(id: string): ClusterRec {
    const c = this.clusters.get(id);
    if (!c) throw Object.assign(new Error(`Cluster id '${id}' is not valid.`), { type: 'InvalidRequestException' });
    return c;
  }

  clusterState(c: ClusterRec): string {
    if (c.terminatedAt) return Date.now() - c.terminatedAt > 100 ? 'TERMINATED' : 'TERMINATING';
    const age = Date.now() - c.created;
    if (age < this.clusterStartMs / 2) return 'STARTING';
    if (age < this.clusterStartMs) return 'BOOTSTRAPPING';
    return c.steps.some((s) => this.stepPhase(s).state === 'RUNNING') ? 'RUNNING' : 'WAITING';
  }

  /** s3://{bucket}/{prefix}{clusterId}/steps/{stepId}/ for a step, when its cluster has a LogUri. */
  stepLogFolder(s: StepRec): { bucket: string; prefix: string } | undefined {
    const m = /^s3[na]?:\/\/([^/]+)\/?(.*)$/.exec(this.clusters.get(s.ClusterId)?.logUri ?? '');
    if (!m) return undefined;
    return { bucket: m[1], prefix: `${m[2] ? m[2].replace(/\/?$/, '/') : ''}${s.ClusterId}/steps/${s.Id}/` };
  }

  private async writeLogs(clusterId: string, views: ({ Id?: string; Status?: { State?: string } } | undefined)[]) {
    if (!this.s3) return;
    const s3 = this.s3;
    const steps = this.clusters.get(clusterId)?.steps ?? [];
    await Promise.all(
      views.map(async (v) => {
        const s = steps.find((x) => x.Id === v?.Id);
        const state = v?.Status?.State ?? '';
        if (!s || !['COMPLETED', 'FAILED', 'CANCELLED', 'INTERRUPTED'].includes(state)) return undefined;
        const folder = this.stepLogFolder(s);
        if (!folder) return undefined;
        s.logsWritten ??= (async () => {
          const failure = this.stepPhase(s).failure;
          const logs = this.stepLogs({ Id: s.Id, Name: s.Name, Args: s.Config.Args, state, failure });
          if (!logs) return;
          const files: [string, string | undefined][] = [
            [
              'controller',
              `${new Date().toISOString()} INFO startExec 'hadoop jar command-runner.jar ${s.Config.Args.join(' ')}'\n`,
            ],
            ['stderr', logs.stderr],
            ['stdout', logs.stdout],
          ];
          for (const [name, text] of files) {
            if (text === undefined) continue;
            const body = logs.plain ? Buffer.from(text) : gzipSync(text);
            await s3.send(
              new PutObjectCommand({
                Bucket: folder.bucket,
                Key: `${folder.prefix}${name}${logs.plain ? '' : '.gz'}`,
                Body: body,
                ContentLength: body.byteLength,
              }),
            );
          }
        })();
        return s.logsWritten;
      }),
    );
  }

  stepPhase(s: StepRec): StepPhase {
    if (s.cancelledAt) return { state: Date.now() - s.cancelledAt < 100 ? 'CANCEL_PENDING' : 'CANCELLED' };
    let t = Date.now() - s.created;
    for (const ph of s.timeline) {
      if (ph.ms === undefined || t < ph.ms) return ph;
      t -= ph.ms;
    }
    return s.timeline[s.timeline.length - 1];
  }

  private failureLogFile(s: StepRec): string | undefined {
    const f = this.stepLogFolder(s);
    return f ? `s3://${f.bucket}/${f.prefix}stderr.gz` : undefined;
  }

  private stepView(s: StepRec) {
    const ph = this.stepPhase(s);
    const created = s.created / 1000;
    return {
      Id: s.Id,
      Name: s.Name,
      Config: s.Config,
      ActionOnFailure: s.ActionOnFailure,
      Status: {
        State: ph.state,
        ...(ph.state === 'CANCELLED'
          ? { StateChangeReason: { Message: 'Cancelled by user' } }
          : { StateChangeReason: {} }),
        ...(ph.failure
          ? { FailureDetails: { ...ph.failure, LogFile: ph.failure.LogFile ?? this.failureLogFile(s) } }
          : {}),
        Timeline: {
          CreationDateTime: created,
          ...(ph.state !== 'PENDING' ? { StartDateTime: created + 0.05 } : {}),
          ...(['COMPLETED', 'FAILED', 'CANCELLED'].includes(ph.state) ? { EndDateTime: now() } : {}),
        },
      },
    };
  }

  opAddJobFlowSteps(i: Record<string, any>) {
    const c = this.cluster(i.JobFlowId);
    if (c.terminatedAt)
      throw Object.assign(new Error(`A job flow that is shutting down, terminated, or finished may not be modified.`), {
        type: 'ValidationException',
      });
    if (c.steps.length + i.Steps.length > 256)
      throw new Error('Maximum number of active steps(State = Running or Pending) for cluster exceeded.');
    const ids: string[] = [];
    for (const st of i.Steps) {
      const s: StepRec = {
        Id: rid('s'),
        ClusterId: c.Id,
        Name: st.Name,
        Config: { Jar: st.HadoopJarStep.Jar, Args: st.HadoopJarStep.Args ?? [], Properties: {} },
        ActionOnFailure: st.ActionOnFailure ?? 'TERMINATE_CLUSTER',
        created: Date.now(),
        timeline: this.stepScenario({ Name: st.Name, Args: st.HadoopJarStep.Args ?? [] }),
      };
      c.steps.push(s);
      ids.push(s.Id);
    }
    return { StepIds: ids };
  }

  opDescribeStep(i: Record<string, any>) {
    const s = this.cluster(i.ClusterId).steps.find((x) => x.Id === i.StepId);
    if (!s) throw new Error(`Step id '${i.StepId}' is not valid.`);
    return { Step: this.stepView(s) };
  }

  opListSteps(i: Record<string, any>) {
    const all = [...this.cluster(i.ClusterId).steps]
      .reverse()
      .filter(
        (s) =>
          (!i.StepStates || i.StepStates.includes(this.stepPhase(s).state)) && (!i.StepIds || i.StepIds.includes(s.Id)),
      );
    const start = i.Marker ? Number(i.Marker) : 0;
    const page = all.slice(start, start + 50).map((s) => this.stepView(s));
    return { Steps: page, ...(start + 50 < all.length ? { Marker: String(start + 50) } : {}) };
  }

  opCancelSteps(i: Record<string, any>) {
    const c = this.cluster(i.ClusterId);
    return {
      CancelStepsInfoList: i.StepIds.map((id: string) => {
        const s = c.steps.find((x) => x.Id === id);
        if (!s) return { StepId: id, Status: 'FAILED', Reason: `Step id '${id}' is not valid.` };
        const st = this.stepPhase(s).state;
        if (['COMPLETED', 'FAILED', 'CANCELLED', 'INTERRUPTED'].includes(st))
          return { StepId: id, Status: 'FAILED', Reason: `Step is in terminal state ${st}.` };
        s.cancelledAt ??= Date.now();
        return { StepId: id, Status: 'SUBMITTED' };
      }),
    };
  }

  opRunJobFlow(i: Record<string, any>) {
    const Id = rid('j');
    const core =
      i.Instances?.InstanceGroups?.find((g: { InstanceRole: string }) => g.InstanceRole === 'CORE')?.InstanceCount ?? 1;
    this.clusters.set(Id, { Id, Name: i.Name, created: Date.now(), core, logUri: i.LogUri, steps: [], input: i });
    return { JobFlowId: Id, ClusterArn: `arn:aws:elasticmapreduce:us-east-1:123456789012:cluster/${Id}` };
  }

  opDescribeCluster(i: Record<string, any>) {
    const c = this.cluster(i.ClusterId);
    const state = this.clusterState(c);
    return {
      Cluster: {
        Id: c.Id,
        Name: c.Name,
        Status: {
          State: state,
          StateChangeReason: c.terminatedAt ? { Code: 'USER_REQUEST', Message: 'Terminated by user request' } : {},
          Timeline: { CreationDateTime: c.created / 1000 },
        },
        ...(c.logUri ? { LogUri: c.logUri } : {}),
        ReleaseLabel: c.input.ReleaseLabel ?? 'emr-7.5.0',
        Tags: c.input.Tags ?? [],
      },
    };
  }

  opListClusters(i: Record<string, any>) {
    const list = [...this.clusters.values()]
      .reverse()
      .filter((c) => !i.ClusterStates || i.ClusterStates.includes(this.clusterState(c)));
    return {
      Clusters: list.map((c) => ({
        Id: c.Id,
        Name: c.Name,
        Status: {
          State: this.clusterState(c),
          StateChangeReason: {},
          Timeline: { CreationDateTime: c.created / 1000 },
        },
      })),
    };
  }

  opTerminateJobFlows(i: Record<string, any>) {
    for (const id of i.JobFlowIds) {
      const c = this.cluster(id);
      c.terminatedAt ??= Date.now();
    }
    return {};
  }

  opListInstanceGroups(i: Record<string, any>) {
    const c = this.cluster(i.ClusterId);
    return {
      InstanceGroups: [
        {
          Id: `ig-M${c.Id.slice(2)}`,
          Name: 'primary',
          InstanceGroupType: 'MASTER',
          InstanceType: 'm5.xlarge',
          RequestedInstanceCount: 1,
          RunningInstanceCount: 1,
          Market: 'ON_DEMAND',
        },
        {
          Id: `ig-C${c.Id.slice(2)}`,
          Name: 'core',
          InstanceGroupType: 'CORE',
          InstanceType: 'm5.xlarge',
          RequestedInstanceCount: c.core,
          RunningInstanceCount: c.core,
          Market: 'ON_DEMAND',
        },
      ],
    };
  }

  opModifyInstanceGroups(i: Record<string, any>) {
    const c = this.cluster(i.ClusterId);
    for (const g of i.InstanceGroups ?? []) if (g.InstanceGroupId === `ig-C${c.Id.slice(2)}`) c.core = g.InstanceCount;
    return {};
  }
}
