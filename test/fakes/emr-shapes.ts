/**
 * The part of Amazon EMR's JSON 1.1 API the EMR double speaks, written out by the project:
 * the operations Strata calls and, for each input and output, the members Strata sends or
 * the double answers, with their types, required members and enums. Shape names are
 * EMR's own, so that test/unit/doubles-vs-specs.test.ts can check, when the botocore model
 * is present, that this table is a restriction of it: every member here is a member there
 * with the same shape, every member required there is required here, every enum here is a
 * subset of the enum there. What this table accepts, EMR accepts.
 */

export type Shape =
  | { type: 'structure'; members: Record<string, { shape: string }>; required?: string[] }
  | { type: 'list'; member: { shape: string } }
  | { type: 'map'; key: { shape: string }; value: { shape: string } }
  | { type: 'string'; enum?: string[] }
  | { type: 'integer' | 'long' | 'double' | 'float' | 'boolean' | 'timestamp' };

export interface EmrApi {
  metadata: { protocol: string; targetPrefix: string; jsonVersion: string };
  operations: Record<string, { input?: { shape: string }; output?: { shape: string } }>;
  shapes: Record<string, Shape>;
}

const struct = (members: Record<string, string>, required: string[] = []): Shape => ({
  type: 'structure',
  members: Object.fromEntries(Object.entries(members).map(([k, shape]) => [k, { shape }])),
  ...(required.length ? { required } : {}),
});
const list = (shape: string): Shape => ({ type: 'list', member: { shape } });
const oneOf = (...values: string[]): Shape => ({ type: 'string', enum: values });
const STR: Shape = { type: 'string' };

const op = (name: string, output = true) =>
  [name, { input: { shape: `${name}Input` }, ...(output ? { output: { shape: `${name}Output` } } : {}) }] as const;

export const EMR_API: EmrApi = {
  metadata: { protocol: 'json', targetPrefix: 'ElasticMapReduce', jsonVersion: '1.1' },
  operations: Object.fromEntries([
    op('AddJobFlowSteps'),
    op('DescribeStep'),
    op('ListSteps'),
    op('CancelSteps'),
    op('RunJobFlow'),
    op('DescribeCluster'),
    op('ListClusters'),
    op('TerminateJobFlows', false),
    op('ListInstanceGroups'),
    op('ModifyInstanceGroups', false),
  ]),
  shapes: {
    // Scalars.
    String: STR,
    XmlString: STR,
    XmlStringMaxLen256: STR,
    ClusterId: STR,
    StepId: STR,
    InstanceGroupId: STR,
    InstanceType: STR,
    Marker: STR,
    ArnType: STR,
    Integer: { type: 'integer' },
    Boolean: { type: 'boolean' },
    Date: { type: 'timestamp' },
    // Enums.
    ActionOnFailure: oneOf('TERMINATE_JOB_FLOW', 'TERMINATE_CLUSTER', 'CANCEL_AND_WAIT', 'CONTINUE'),
    StepState: oneOf('PENDING', 'CANCEL_PENDING', 'RUNNING', 'COMPLETED', 'CANCELLED', 'FAILED', 'INTERRUPTED'),
    StepCancellationOption: oneOf('SEND_INTERRUPT', 'TERMINATE_PROCESS'),
    StepStateChangeReasonCode: oneOf('NONE'),
    CancelStepsRequestStatus: oneOf('SUBMITTED', 'FAILED'),
    ClusterState: oneOf(
      'STARTING',
      'BOOTSTRAPPING',
      'RUNNING',
      'WAITING',
      'TERMINATING',
      'TERMINATED',
      'TERMINATED_WITH_ERRORS',
    ),
    ClusterStateChangeReasonCode: oneOf(
      'INTERNAL_ERROR',
      'VALIDATION_ERROR',
      'INSTANCE_FAILURE',
      'INSTANCE_FLEET_TIMEOUT',
      'BOOTSTRAP_FAILURE',
      'USER_REQUEST',
      'STEP_FAILURE',
      'ALL_STEPS_COMPLETED',
    ),
    MarketType: oneOf('ON_DEMAND', 'SPOT'),
    InstanceRoleType: oneOf('MASTER', 'CORE', 'TASK'),
    InstanceGroupType: oneOf('MASTER', 'CORE', 'TASK'),
    // Lists and maps.
    XmlStringList: list('XmlString'),
    StringList: list('String'),
    StepIdsList: list('XmlStringMaxLen256'),
    StepStateList: list('StepState'),
    ClusterStateList: list('ClusterState'),
    StepConfigList: list('StepConfig'),
    ApplicationList: list('Application'),
    TagList: list('Tag'),
    InstanceGroupConfigList: list('InstanceGroupConfig'),
    InstanceGroupModifyConfigList: list('InstanceGroupModifyConfig'),
    StepSummaryList: list('StepSummary'),
    CancelStepsInfoList: list('CancelStepsInfo'),
    ClusterSummaryList: list('ClusterSummary'),
    InstanceGroupList: list('InstanceGroup'),
    StringMap: { type: 'map', key: { shape: 'String' }, value: { shape: 'String' } },
    // Inputs.
    AddJobFlowStepsInput: struct({ JobFlowId: 'XmlStringMaxLen256', Steps: 'StepConfigList' }, ['JobFlowId', 'Steps']),
    StepConfig: struct(
      { Name: 'XmlStringMaxLen256', ActionOnFailure: 'ActionOnFailure', HadoopJarStep: 'HadoopJarStepConfig' },
      ['Name', 'HadoopJarStep'],
    ),
    HadoopJarStepConfig: struct({ Jar: 'XmlString', MainClass: 'XmlString', Args: 'XmlStringList' }, ['Jar']),
    DescribeStepInput: struct({ ClusterId: 'ClusterId', StepId: 'StepId' }, ['ClusterId', 'StepId']),
    ListStepsInput: struct(
      { ClusterId: 'ClusterId', StepStates: 'StepStateList', StepIds: 'XmlStringList', Marker: 'Marker' },
      ['ClusterId'],
    ),
    CancelStepsInput: struct(
      { ClusterId: 'XmlStringMaxLen256', StepIds: 'StepIdsList', StepCancellationOption: 'StepCancellationOption' },
      ['ClusterId', 'StepIds'],
    ),
    RunJobFlowInput: struct(
      {
        Name: 'XmlStringMaxLen256',
        LogUri: 'XmlString',
        ReleaseLabel: 'XmlStringMaxLen256',
        Instances: 'JobFlowInstancesConfig',
        Applications: 'ApplicationList',
        JobFlowRole: 'XmlString',
        ServiceRole: 'XmlString',
        Tags: 'TagList',
      },
      ['Name', 'Instances'],
    ),
    JobFlowInstancesConfig: struct({
      InstanceGroups: 'InstanceGroupConfigList',
      KeepJobFlowAliveWhenNoSteps: 'Boolean',
    }),
    InstanceGroupConfig: struct(
      {
        Name: 'XmlStringMaxLen256',
        Market: 'MarketType',
        InstanceRole: 'InstanceRoleType',
        InstanceType: 'InstanceType',
        InstanceCount: 'Integer',
      },
      ['InstanceRole', 'InstanceType', 'InstanceCount'],
    ),
    Application: struct({ Name: 'String' }),
    Tag: struct({ Key: 'String', Value: 'String' }),
    DescribeClusterInput: struct({ ClusterId: 'ClusterId' }, ['ClusterId']),
    ListClustersInput: struct({ ClusterStates: 'ClusterStateList', Marker: 'Marker' }),
    TerminateJobFlowsInput: struct({ JobFlowIds: 'XmlStringList' }, ['JobFlowIds']),
    ListInstanceGroupsInput: struct({ ClusterId: 'ClusterId', Marker: 'Marker' }, ['ClusterId']),
    ModifyInstanceGroupsInput: struct({ ClusterId: 'ClusterId', InstanceGroups: 'InstanceGroupModifyConfigList' }),
    InstanceGroupModifyConfig: struct({ InstanceGroupId: 'XmlStringMaxLen256', InstanceCount: 'Integer' }, [
      'InstanceGroupId',
    ]),
    // Outputs.
    AddJobFlowStepsOutput: struct({ StepIds: 'StepIdsList' }),
    DescribeStepOutput: struct({ Step: 'Step' }),
    Step: struct({
      Id: 'StepId',
      Name: 'String',
      Config: 'HadoopStepConfig',
      ActionOnFailure: 'ActionOnFailure',
      Status: 'StepStatus',
    }),
    StepSummary: struct({
      Id: 'StepId',
      Name: 'String',
      Config: 'HadoopStepConfig',
      ActionOnFailure: 'ActionOnFailure',
      Status: 'StepStatus',
    }),
    HadoopStepConfig: struct({ Jar: 'String', Properties: 'StringMap', MainClass: 'String', Args: 'StringList' }),
    StepStatus: struct({
      State: 'StepState',
      StateChangeReason: 'StepStateChangeReason',
      FailureDetails: 'FailureDetails',
      Timeline: 'StepTimeline',
    }),
    StepStateChangeReason: struct({ Code: 'StepStateChangeReasonCode', Message: 'String' }),
    FailureDetails: struct({ Reason: 'String', Message: 'String', LogFile: 'String' }),
    StepTimeline: struct({ CreationDateTime: 'Date', StartDateTime: 'Date', EndDateTime: 'Date' }),
    ListStepsOutput: struct({ Steps: 'StepSummaryList', Marker: 'Marker' }),
    CancelStepsOutput: struct({ CancelStepsInfoList: 'CancelStepsInfoList' }),
    CancelStepsInfo: struct({ StepId: 'StepId', Status: 'CancelStepsRequestStatus', Reason: 'String' }),
    RunJobFlowOutput: struct({ JobFlowId: 'XmlStringMaxLen256', ClusterArn: 'ArnType' }),
    DescribeClusterOutput: struct({ Cluster: 'Cluster' }),
    Cluster: struct({
      Id: 'ClusterId',
      Name: 'String',
      Status: 'ClusterStatus',
      LogUri: 'String',
      ReleaseLabel: 'String',
      Tags: 'TagList',
    }),
    ClusterStatus: struct({
      State: 'ClusterState',
      StateChangeReason: 'ClusterStateChangeReason',
      Timeline: 'ClusterTimeline',
    }),
    ClusterStateChangeReason: struct({ Code: 'ClusterStateChangeReasonCode', Message: 'String' }),
    ClusterTimeline: struct({ CreationDateTime: 'Date', ReadyDateTime: 'Date', EndDateTime: 'Date' }),
    ListClustersOutput: struct({ Clusters: 'ClusterSummaryList', Marker: 'Marker' }),
    ClusterSummary: struct({ Id: 'ClusterId', Name: 'String', Status: 'ClusterStatus' }),
    ListInstanceGroupsOutput: struct({ InstanceGroups: 'InstanceGroupList', Marker: 'Marker' }),
    InstanceGroup: struct({
      Id: 'InstanceGroupId',
      Name: 'String',
      Market: 'MarketType',
      InstanceGroupType: 'InstanceGroupType',
      InstanceType: 'InstanceType',
      RequestedInstanceCount: 'Integer',
      RunningInstanceCount: 'Integer',
    }),
  },
};

/**
 * Where `ours` is not a restriction of `theirs` (the real model): empty when every shape
 * here exists there with the same kind, members, list items, map keys/values, required
 * members and enum values (ours a subset).
 */
export function restrictionProblems(
  ours: EmrApi,
  theirs: { shapes: Record<string, any>; operations: Record<string, any>; metadata: Record<string, unknown> },
): string[] {
  const out: string[] = [];
  for (const k of ['protocol', 'targetPrefix', 'jsonVersion'] as const)
    if (ours.metadata[k] !== theirs.metadata[k])
      out.push(`metadata.${k}: ${ours.metadata[k]} vs ${String(theirs.metadata[k])}`);
  for (const [name, o] of Object.entries(ours.operations)) {
    const t = theirs.operations[name];
    if (!t) out.push(`operation ${name}: not in the model`);
    else
      for (const io of ['input', 'output'] as const)
        if (o[io]?.shape !== t[io]?.shape) out.push(`${name}.${io}: ${o[io]?.shape} vs ${t[io]?.shape}`);
  }
  const numeric = new Set(['integer', 'long', 'double', 'float']);
  for (const [name, s] of Object.entries(ours.shapes)) {
    const t = theirs.shapes[name];
    if (!t) {
      out.push(`shape ${name}: not in the model`);
      continue;
    }
    if (s.type !== t.type && !(numeric.has(s.type) && numeric.has(t.type))) out.push(`${name}: ${s.type} vs ${t.type}`);
    else if (s.type === 'structure') {
      for (const [m, ref] of Object.entries(s.members)) {
        if (!t.members[m]) out.push(`${name}.${m}: not a member in the model`);
        else if (t.members[m].shape !== ref.shape)
          out.push(`${name}.${m}: shape ${ref.shape} vs ${t.members[m].shape}`);
      }
      for (const r of t.required ?? [])
        if (!(s.required ?? []).includes(r)) out.push(`${name}.${r}: required in the model, not here`);
    } else if (s.type === 'list' && s.member.shape !== t.member.shape)
      out.push(`${name}[]: ${s.member.shape} vs ${t.member.shape}`);
    else if (s.type === 'map' && (s.key.shape !== t.key.shape || s.value.shape !== t.value.shape))
      out.push(`${name}{}: map shapes differ`);
    else if (s.type === 'string' && t.enum) {
      if (!s.enum) out.push(`${name}: the model has an enum, this table has none`);
      else for (const v of s.enum) if (!t.enum.includes(v)) out.push(`${name}: ${v} is not in the model's enum`);
    }
    // Every shape a member, item or value names is in the table too.
    const refs =
      s.type === 'structure'
        ? Object.values(s.members).map((m) => m.shape)
        : s.type === 'list'
          ? [s.member.shape]
          : s.type === 'map'
            ? [s.key.shape, s.value.shape]
            : [];
    for (const r of refs) if (!ours.shapes[r]) out.push(`${name}: names ${r}, which this table does not define`);
  }
  return out;
}
