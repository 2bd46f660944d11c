/**
 * Speaks Amazon EMR (AWS JSON 1.1) through @aws-sdk/client-emr, the official SDK: signing,
 * retries of throttling and 5xx, and endpoint override for tests. Nothing Temporal here.
 */
import {
  AddJobFlowStepsCommand,
  CancelStepsCommand,
  DescribeClusterCommand,
  DescribeStepCommand,
  EMRClient,
  EMRServiceException,
  ListClustersCommand,
  ListInstanceGroupsCommand,
  ListStepsCommand,
  ModifyInstanceGroupsCommand,
  RunJobFlowCommand,
  TerminateJobFlowsCommand,
  type EMRClientConfig,
  type Step,
  type StepConfig,
} from '@aws-sdk/client-emr';

export const STEP_TERMINAL = ['COMPLETED', 'CANCELLED', 'FAILED', 'INTERRUPTED'];

/** An EMR error: `name` is the `__type`, `retryable` for throttling and server faults. */
export class EmrError extends Error {
  constructor(
    readonly type: string,
    readonly status: number,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'EmrError';
  }
}

export function toEmrError(e: unknown, what: string): EmrError {
  if (e instanceof EmrError) return e;
  if (e instanceof EMRServiceException) {
    const status = e.$metadata?.httpStatusCode ?? 0;
    const retryable = e.$fault === 'server' || /Throttl/.test(e.name) || status >= 500;
    return new EmrError(e.name, status, `${what}: ${e.name}: ${e.message}`, retryable);
  }
  return new EmrError('NetworkError', 0, `${what}: ${e instanceof Error ? e.message : String(e)}`, true);
}

/** A field EMR's answer must carry; its absence fails (not retried: a retry gets the same answer). */
function answered<T>(v: T | undefined, what: string, field: string): T {
  if (v === undefined) throw new EmrError('IncompleteResponse', 0, `${what}: EMR answered without ${field}`, false);
  return v;
}

export class EmrJobsClient {
  readonly emr: EMRClient;
  /** Adds steps and starts clusters without SDK retries: a retried add must look up first. */
  private readonly once: EMRClient;
  constructor(config: EMRClientConfig = {}) {
    this.emr = new EMRClient(config);
    this.once = new EMRClient({ ...config, maxAttempts: 1 });
  }

  private async call<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw toEmrError(e, what);
    }
  }

  /** Finds a step by name on a cluster, newest first, across pages. */
  async findStep(clusterId: string, name: string): Promise<string | undefined> {
    let marker: string | undefined;
    do {
      const page = await this.call(`ListSteps ${clusterId}`, () =>
        this.emr.send(new ListStepsCommand({ ClusterId: clusterId, Marker: marker })),
      );
      const hit = page.Steps?.find((s) => s.Name === name);
      if (hit?.Id) return hit.Id;
      marker = page.Marker;
    } while (marker);
    return undefined;
  }

  /** EMR takes no client token: look the step up by name first so a retry adopts it. */
  async addStepOnce(clusterId: string, step: StepConfig): Promise<{ stepId: string; adopted: boolean }> {
    if (!step.Name)
      throw new EmrError('ValidationException', 400, `AddJobFlowSteps ${clusterId}: the step has no name`, false);
    const existing = await this.findStep(clusterId, step.Name);
    if (existing) return { stepId: existing, adopted: true };
    const what = `AddJobFlowSteps ${clusterId}`;
    const r = await this.call(what, () =>
      this.once.send(new AddJobFlowStepsCommand({ JobFlowId: clusterId, Steps: [step] })),
    );
    return { stepId: answered(r.StepIds?.[0], what, 'a step id'), adopted: false };
  }

  async describeStep(clusterId: string, stepId: string): Promise<Step> {
    const r = await this.call(`DescribeStep ${stepId}`, () =>
      this.emr.send(new DescribeStepCommand({ ClusterId: clusterId, StepId: stepId })),
    );
    return answered(r.Step, `DescribeStep ${stepId}`, 'the step');
  }

  async cancelStep(clusterId: string, stepId: string) {
    const r = await this.call(`CancelSteps ${stepId}`, () =>
      this.emr.send(
        new CancelStepsCommand({
          ClusterId: clusterId,
          StepIds: [stepId],
          StepCancellationOption: 'TERMINATE_PROCESS',
        }),
      ),
    );
    return r.CancelStepsInfoList?.[0];
  }

  async runCluster(o: {
    name: string;
    release: string;
    instanceType: string;
    coreInstances: number;
    tags: Record<string, string>;
    logUri?: string;
  }) {
    const r = await this.call(`RunJobFlow ${o.name}`, () =>
      this.once.send(
        new RunJobFlowCommand({
          Name: o.name,
          ReleaseLabel: o.release,
          LogUri: o.logUri,
          Applications: [{ Name: 'Spark' }, { Name: 'Hive' }],
          Instances: {
            InstanceGroups: [
              { Name: 'primary', InstanceRole: 'MASTER', InstanceType: o.instanceType, InstanceCount: 1 },
              { Name: 'core', InstanceRole: 'CORE', InstanceType: o.instanceType, InstanceCount: o.coreInstances },
            ],
            KeepJobFlowAliveWhenNoSteps: true,
          },
          JobFlowRole: 'EMR_EC2_DefaultRole',
          ServiceRole: 'EMR_DefaultRole',
          Tags: Object.entries(o.tags).map(([Key, Value]) => ({ Key, Value })),
        }),
      ),
    );
    return answered(r.JobFlowId, `RunJobFlow ${o.name}`, 'a cluster id');
  }

  /** The active (not terminated) clusters, a page (one ListClusters call) at a time, as far as the caller reads. */
  private async *activeClusterPages() {
    let marker: string | undefined;
    do {
      const page = await this.call('ListClusters', () =>
        this.emr.send(
          new ListClustersCommand({
            ClusterStates: ['STARTING', 'BOOTSTRAPPING', 'RUNNING', 'WAITING'],
            Marker: marker,
          }),
        ),
      );
      yield page.Clusters ?? [];
      marker = page.Marker;
    } while (marker);
  }

  /** An active (not terminated) cluster of this name: RunJobFlow has no client token. */
  async findActiveCluster(name: string): Promise<string | undefined> {
    for await (const clusters of this.activeClusterPages()) {
      const hit = clusters.find((c) => c.Name === name);
      if (hit?.Id) return hit.Id;
    }
    return undefined;
  }

  /** Active clusters whose name starts with `prefix`, with their tags (ListClusters, then DescribeCluster each). */
  async listActiveClusters(prefix: string): Promise<{ id: string; name: string; tags: Record<string, string> }[]> {
    const found: { id: string; name: string }[] = [];
    for await (const clusters of this.activeClusterPages())
      for (const c of clusters) if (c.Id && c.Name?.startsWith(prefix)) found.push({ id: c.Id, name: c.Name });
    const out = [];
    for (const c of found) {
      const d = await this.describeCluster(c.id);
      out.push({ ...c, tags: Object.fromEntries((d.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])) });
    }
    return out;
  }

  async describeCluster(clusterId: string) {
    const r = await this.call(`DescribeCluster ${clusterId}`, () =>
      this.emr.send(new DescribeClusterCommand({ ClusterId: clusterId })),
    );
    return answered(r.Cluster, `DescribeCluster ${clusterId}`, 'the cluster');
  }

  async resizeCore(clusterId: string, count: number) {
    const groups = await this.call(`ListInstanceGroups ${clusterId}`, () =>
      this.emr.send(new ListInstanceGroupsCommand({ ClusterId: clusterId })),
    );
    const core = groups.InstanceGroups?.find((g) => g.InstanceGroupType === 'CORE');
    if (!core?.Id)
      throw new EmrError('NoCoreGroup', 400, `cluster ${clusterId} has no CORE instance group to resize`, false);
    await this.call(`ModifyInstanceGroups ${clusterId}`, () =>
      this.emr.send(
        new ModifyInstanceGroupsCommand({
          ClusterId: clusterId,
          InstanceGroups: [{ InstanceGroupId: core.Id, InstanceCount: count }],
        }),
      ),
    );
  }

  async terminate(clusterId: string) {
    await this.call(`TerminateJobFlows ${clusterId}`, () =>
      this.emr.send(new TerminateJobFlowsCommand({ JobFlowIds: [clusterId] })),
    );
  }
}
