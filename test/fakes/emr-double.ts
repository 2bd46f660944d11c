/**
 * An Amazon EMR double speaking AWS JSON 1.1 as @aws-sdk/client-emr sends it: POST /,
 * X-Amz-Target: ElasticMapReduce.{Op}, PascalCase members checked against the botocore
 * model, epoch-second timestamps and `__type` errors. Steps follow EMR's state machine on
 * a timeline the test chooses; clusters go STARTING → BOOTSTRAPPING → WAITING.
 */
import type http from 'node:http';
import { checkShape, emrModel } from './emr-model.js';
import { sendJson, serve, type Served } from './http.js';

export interface StepPhase {
  state: 'PENDING' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCEL_PENDING' | 'CANCELLED' | 'INTERRUPTED';
  ms?: number;
  failure?: { Reason: string; Message: string; LogFile: string };
}

export const STEP_SCENARIOS = {
  success: (runMs = 300): StepPhase[] => [{ state: 'PENDING', ms: 80 }, { state: 'RUNNING', ms: runMs }, { state: 'COMPLETED' }],
  failure: (reason: string, message: string): StepPhase[] => [
    { state: 'PENDING', ms: 50 },
    { state: 'RUNNING', ms: 150 },
    { state: 'FAILED', failure: { Reason: reason, Message: message, LogFile: 's3://strata-emr-logs/j-X/steps/s-X/stderr.gz' } },
  ],
  runForever: (): StepPhase[] => [{ state: 'PENDING', ms: 50 }, { state: 'RUNNING' }],
};

interface StepRec {
  Id: string;
  Name: string;
  Config: Record<string, any>;
  ActionOnFailure: string;
  created: number;
  timeline: StepPhase[];
  cancelledAt?: number;
}

interface ClusterRec {
  Id: string;
  Name: string;
  created: number;
  terminatedAt?: number;
  core: number;
  steps: StepRec[];
  input: Record<string, any>;
}

const now = () => Date.now() / 1000;
const rid = (p: string) => `${p}-${Array.from({ length: 13 }, () => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'[Math.floor(Math.random() * 36)]).join('')}`;

export class EmrDouble {
  served!: Served;
  readonly clusters = new Map<string, ClusterRec>();
  readonly calls: { op: string; status: number; input: Record<string, any>; output?: unknown }[] = [];
  stepScenario: (step: { Name: string; Args: string[] }) => StepPhase[] = () => STEP_SCENARIOS.success();
  /** ms a new cluster takes to reach WAITING. */
  clusterStartMs = 200;
  private failures: { op: string; status: number; type: string; left: number; apply?: boolean }[] = [];

  static async start(): Promise<EmrDouble> {
    const d = new EmrDouble();
    d.served = await serve((req, body, res) => d.handle(req, body, res));
    return d;
  }
  get url() {
    return this.served.url;
  }
  close() {
    return this.served.close();
  }

  /** A cluster that already runs (as a `clusterId:` in a spec refers to). */
  addCluster(name = 'shared'): string {
    const Id = rid('j');
    this.clusters.set(Id, { Id, Name: name, created: Date.now() - 60_000, core: 2, steps: [], input: {} });
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

  private error(res: http.ServerResponse, status: number, type: string, message: string, extra: Record<string, unknown> = {}) {
    sendJson(res, status, { __type: type, Message: message, ...extra }, 'application/x-amz-json-1.1');
    return status;
  }

  private handle(req: http.IncomingMessage, body: string, res: http.ServerResponse) {
    const target = String(req.headers['x-amz-target'] ?? '');
    const op = target.replace(/^ElasticMapReduce\./, '');
    let input: Record<string, any> = {};
    const rec: { op: string; status: number; input: Record<string, any>; output?: unknown } = { op, status: 0, input };
    this.calls.push(rec);
    const model = emrModel();
    if (req.method !== 'POST' || req.url !== '/') {
      rec.status = this.error(res, 404, 'UnknownOperationException', 'only POST / is served');
      return;
    }
    if (!String(req.headers['content-type']).startsWith('application/x-amz-json-1.1')) {
      rec.status = this.error(res, 400, 'SerializationException', 'Content-Type must be application/x-amz-json-1.1');
      return;
    }
    if (!String(req.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256 ')) {
      rec.status = this.error(res, 403, 'MissingAuthenticationTokenException', 'Request is missing Authentication Token');
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
    const f = this.failures.find((x) => x.op === op && x.left > 0);
    if (f) {
      f.left--;
      if (f.apply) (this as unknown as Record<string, (i: Record<string, any>) => unknown>)[`op${op}`]?.call(this, input);
      rec.status = this.error(res, f.status, f.type, 'injected failure');
      return;
    }
    const handler = (this as unknown as Record<string, (i: Record<string, any>) => unknown>)[`op${op}`];
    if (!handler) {
      rec.status = this.error(res, 400, 'UnknownOperationException', `${op} is not served by this double`);
      return;
    }
    try {
      const out = handler.call(this, input) ?? {};
      rec.output = out;
      sendJson(res, 200, out, 'application/x-amz-json-1.1');
      rec.status = 200;
    } catch (e) {
      const err = e as { type?: string; message: string };
      rec.status = this.error(res, 400, err.type ?? 'InvalidRequestException', err.message, { ErrorCode: 'INVALID_REQUEST' });
    }
  }

  /** The operations this double answers (checked against the model in tests). */
  static readonly OPERATIONS = ['AddJobFlowSteps', 'DescribeStep', 'ListSteps', 'CancelSteps', 'RunJobFlow', 'DescribeCluster', 'ListClusters', 'TerminateJobFlows', 'ListInstanceGroups', 'ModifyInstanceGroups'];

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

  stepPhase(s: StepRec): StepPhase {
    if (s.cancelledAt) return { state: Date.now() - s.cancelledAt < 100 ? 'CANCEL_PENDING' : 'CANCELLED' };
    let t = Date.now() - s.created;
    for (const ph of s.timeline) {
      if (ph.ms === undefined || t < ph.ms) return ph;
      t -= ph.ms;
    }
    return s.timeline[s.timeline.length - 1];
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
        ...(ph.state === 'CANCELLED' ? { StateChangeReason: { Message: 'Cancelled by user' } } : { StateChangeReason: {} }),
        ...(ph.failure ? { FailureDetails: ph.failure } : {}),
        Timeline: { CreationDateTime: created, ...(ph.state !== 'PENDING' ? { StartDateTime: created + 0.05 } : {}), ...(['COMPLETED', 'FAILED', 'CANCELLED'].includes(ph.state) ? { EndDateTime: now() } : {}) },
      },
    };
  }

  opAddJobFlowSteps(i: Record<string, any>) {
    const c = this.cluster(i.JobFlowId);
    if (c.terminatedAt) throw Object.assign(new Error(`A job flow that is shutting down, terminated, or finished may not be modified.`), { type: 'ValidationException' });
    if (c.steps.length + i.Steps.length > 256) throw new Error('Maximum number of active steps(State = Running or Pending) for cluster exceeded.');
    const ids: string[] = [];
    for (const st of i.Steps) {
      const s: StepRec = {
        Id: rid('s'),
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
    const all = [...this.cluster(i.ClusterId).steps].reverse().filter((s) => (!i.StepStates || i.StepStates.includes(this.stepPhase(s).state)) && (!i.StepIds || i.StepIds.includes(s.Id)));
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
        if (['COMPLETED', 'FAILED', 'CANCELLED', 'INTERRUPTED'].includes(st)) return { StepId: id, Status: 'FAILED', Reason: `Step is in terminal state ${st}.` };
        s.cancelledAt ??= Date.now();
        return { StepId: id, Status: 'SUBMITTED' };
      }),
    };
  }

  opRunJobFlow(i: Record<string, any>) {
    const Id = rid('j');
    const core = i.Instances?.InstanceGroups?.find((g: { InstanceRole: string }) => g.InstanceRole === 'CORE')?.InstanceCount ?? 1;
    this.clusters.set(Id, { Id, Name: i.Name, created: Date.now(), core, steps: [], input: i });
    return { JobFlowId: Id, ClusterArn: `arn:aws:elasticmapreduce:us-east-1:123456789012:cluster/${Id}` };
  }

  opDescribeCluster(i: Record<string, any>) {
    const c = this.cluster(i.ClusterId);
    const state = this.clusterState(c);
    return {
      Cluster: {
        Id: c.Id,
        Name: c.Name,
        Status: { State: state, StateChangeReason: c.terminatedAt ? { Code: 'USER_REQUEST', Message: 'Terminated by user request' } : {}, Timeline: { CreationDateTime: c.created / 1000 } },
        LogUri: 's3n://strata-emr-logs/',
        ReleaseLabel: c.input.ReleaseLabel ?? 'emr-7.5.0',
        Tags: c.input.Tags ?? [],
      },
    };
  }

  opListClusters(i: Record<string, any>) {
    const list = [...this.clusters.values()].reverse().filter((c) => !i.ClusterStates || i.ClusterStates.includes(this.clusterState(c)));
    return { Clusters: list.map((c) => ({ Id: c.Id, Name: c.Name, Status: { State: this.clusterState(c), StateChangeReason: {}, Timeline: { CreationDateTime: c.created / 1000 } } })) };
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
        { Id: `ig-M${c.Id.slice(2)}`, Name: 'primary', InstanceGroupType: 'MASTER', InstanceType: 'm5.xlarge', RequestedInstanceCount: 1, RunningInstanceCount: 1, Market: 'ON_DEMAND' },
        { Id: `ig-C${c.Id.slice(2)}`, Name: 'core', InstanceGroupType: 'CORE', InstanceType: 'm5.xlarge', RequestedInstanceCount: c.core, RunningInstanceCount: c.core, Market: 'ON_DEMAND' },
      ],
    };
  }

  opModifyInstanceGroups(i: Record<string, any>) {
    const c = this.cluster(i.ClusterId);
    for (const g of i.InstanceGroups ?? []) if (g.InstanceGroupId === `ig-C${c.Id.slice(2)}`) c.core = g.InstanceCount;
    return {};
  }
}
