/**
 * The Spark Operator objects the test cluster's CRDs accept (spark-crds.ts) and the operator
 * simulator reports, written out by the project as JSON Schemas: `SparkApplication`
 * (sparkoperator.k8s.io/v1beta2) and `SparkConnect` (v1alpha1), the fields Strata sends and
 * the status the simulator writes,
 * with the operator CRDs' types, enums, minimums and required fields. Objects stay open
 * (unknown fields pass), as in the CRDs.
 *
 * test/unit/doubles-vs-specs.test.ts checks, when the real CRDs are present, that each
 * schema here is a restriction of its CRD (same types, enums a subset, minimums at least
 * as high, every field the CRD requires required here): what this accepts, the CRD accepts.
 */

type Schema = Record<string, unknown>;

const str: Schema = { type: 'string' };
const bool: Schema = { type: 'boolean' };
const int: Schema = { type: 'integer' };
const intMin = (minimum: number): Schema => ({ type: 'integer', minimum });
const strings: Schema = { type: 'array', items: str };
const stringMap: Schema = { type: 'object', additionalProperties: str };
const obj = (properties: Record<string, Schema>, required: string[] = []): Schema => ({
  type: 'object',
  properties,
  ...(required.length ? { required } : {}),
});
const oneOf = (...values: string[]): Schema => ({ type: 'string', enum: values });

const seccompProfile = obj({ type: oneOf('Localhost', 'RuntimeDefault', 'Unconfined'), localhostProfile: str }, [
  'type',
]);
const podSecurityContext = obj({ runAsNonRoot: bool, runAsUser: int, runAsGroup: int, fsGroup: int, seccompProfile });
const containerSecurityContext = obj({
  runAsNonRoot: bool,
  runAsUser: int,
  runAsGroup: int,
  allowPrivilegeEscalation: bool,
  privileged: bool,
  readOnlyRootFilesystem: bool,
  capabilities: obj({ add: strings, drop: strings }),
  seccompProfile,
});
const env = {
  type: 'array',
  items: obj(
    { name: str, value: str, valueFrom: obj({ secretKeyRef: obj({ name: str, key: str, optional: bool }, ['key']) }) },
    ['name'],
  ),
};
const pod = (extra: Record<string, Schema>) =>
  obj({
    cores: intMin(1),
    memory: str,
    serviceAccount: str,
    labels: stringMap,
    annotations: stringMap,
    env,
    podSecurityContext,
    securityContext: containerSecurityContext,
    ...extra,
  });
const metadata = obj({
  name: str,
  namespace: str,
  labels: stringMap,
  annotations: stringMap,
  resourceVersion: str,
  uid: str,
});
const dynamicAllocation = obj({
  enabled: bool,
  initialExecutors: int,
  minExecutors: int,
  maxExecutors: int,
  shuffleTrackingEnabled: bool,
});

/** SparkApplication, sparkoperator.k8s.io/v1beta2. */
export const SPARK_APPLICATION_SCHEMA: Schema = obj(
  {
    apiVersion: str,
    kind: str,
    metadata,
    spec: obj(
      {
        type: oneOf('Java', 'Python', 'Scala', 'R'),
        mode: oneOf('cluster', 'client'),
        pythonVersion: oneOf('2', '3'),
        image: str,
        imagePullPolicy: str,
        sparkVersion: str,
        mainApplicationFile: str,
        mainClass: str,
        arguments: strings,
        sparkConf: stringMap,
        hadoopConf: stringMap,
        restartPolicy: obj({
          type: oneOf('Never', 'Always', 'OnFailure'),
          onFailureRetries: intMin(0),
          onSubmissionFailureRetries: intMin(0),
        }),
        deps: obj({ jars: strings, files: strings, pyFiles: strings, packages: strings, archives: strings }),
        timeToLiveSeconds: int,
        dynamicAllocation,
        driver: pod({}),
        executor: pod({ instances: intMin(1) }),
      },
      ['driver', 'executor', 'mainApplicationFile', 'sparkVersion', 'type'],
    ),
    status: obj(
      {
        applicationState: obj({ state: str, errorMessage: str }, ['state']),
        driverInfo: obj({ podName: str, webUIAddress: str, webUIPort: int, webUIServiceName: str }),
        executorState: stringMap,
        executionAttempts: int,
        submissionAttempts: int,
        sparkApplicationId: str,
        submissionID: str,
        lastSubmissionAttemptTime: str,
        terminationTime: str,
      },
      ['driverInfo'],
    ),
  },
  ['metadata', 'spec'],
);

const template = { type: 'object' };

/** SparkConnect, sparkoperator.k8s.io/v1alpha1. */
export const SPARK_CONNECT_SCHEMA: Schema = obj(
  {
    apiVersion: str,
    kind: str,
    metadata,
    spec: obj(
      {
        sparkVersion: str,
        image: str,
        sparkConf: stringMap,
        hadoopConf: stringMap,
        dynamicAllocation,
        server: obj({ cores: intMin(1), memory: str, template }),
        executor: obj({ instances: intMin(0), cores: intMin(1), memory: str, template }),
      },
      ['executor', 'server', 'sparkVersion'],
    ),
    status: obj({
      state: str,
      server: obj({ podName: str, podIp: str, serviceName: str }),
      executors: { type: 'object', additionalProperties: int },
    }),
  },
  ['metadata', 'spec'],
);

/**
 * Where `ours` is not a restriction of `theirs` (a CRD's openAPIV3Schema): a property here
 * that the CRD lacks or types differently, an enum value the CRD lacks, a minimum lower than
 * the CRD's, a field the CRD requires that is optional here.
 */
export function schemaRestrictionProblems(ours: Schema, theirs: Schema | undefined, at = '(root)'): string[] {
  if (!theirs) return [`${at}: not in the CRD`];
  // x-kubernetes-preserve-unknown-fields without a type: anything goes there.
  if (theirs.type === undefined && theirs['x-kubernetes-preserve-unknown-fields']) return [];
  const out: string[] = [];
  if (ours.type !== theirs.type) out.push(`${at}: type ${String(ours.type)} vs ${String(theirs.type)}`);
  if (Array.isArray(theirs.enum)) {
    if (!Array.isArray(ours.enum)) out.push(`${at}: the CRD has an enum, this schema has none`);
    else
      for (const v of ours.enum) if (!theirs.enum.includes(v)) out.push(`${at}: ${String(v)} is not in the CRD's enum`);
  }
  if (typeof theirs.minimum === 'number' && !(typeof ours.minimum === 'number' && ours.minimum >= theirs.minimum))
    out.push(
      `${at}: minimum ${ours.minimum === undefined ? 'none' : JSON.stringify(ours.minimum)} where the CRD has ${theirs.minimum}`,
    );
  for (const r of (theirs.required as string[] | undefined) ?? [])
    if (!((ours.required as string[] | undefined) ?? []).includes(r))
      out.push(`${at}.${r}: required by the CRD, not here`);
  // An object the CRD leaves open (metadata: the API server checks it itself) constrains nothing below.
  if (theirs.type === 'object' && !theirs.properties && !theirs.additionalProperties) return out;
  const props = (ours.properties ?? {}) as Record<string, Schema>;
  const theirProps = (theirs.properties ?? {}) as Record<string, Schema>;
  for (const [k, v] of Object.entries(props))
    out.push(...schemaRestrictionProblems(v, theirProps[k], at === '(root)' ? k : `${at}.${k}`));
  if (ours.items)
    out.push(...schemaRestrictionProblems(ours.items as Schema, theirs.items as Schema | undefined, `${at}[]`));
  if (typeof ours.additionalProperties === 'object')
    out.push(
      ...schemaRestrictionProblems(
        ours.additionalProperties as Schema,
        typeof theirs.additionalProperties === 'object' ? (theirs.additionalProperties as Schema) : undefined,
        `${at}{}`,
      ),
    );
  return out;
}
