/** Builds SparkApplication and SparkConnect manifests from task specs (pure). */
import { createHash } from 'node:crypto';
import { DEFAULT_SPARK_IMAGE, type SparkJobTask } from '../../schemas/external.js';
import type { RunContext } from '../../schemas/run.js';
import { TENANT_RE } from '../../schemas/tenant.js';
import {
  SPARK_APP_VERSION,
  SPARK_CONNECT_VERSION,
  SPARK_DRIVER_CONTAINER,
  SPARK_GROUP,
  type K8sObject,
} from './client.js';

export interface SparkDefaults {
  image: string;
  sparkVersion: string;
  serviceAccount: string;
  /** Main file that runs `--sql TEXT` (sql tasks on engine spark). */
  sqlRunnerFile: string;
  /** S3 endpoint for s3a:// (MinIO or AWS); not a secret. */
  s3Endpoint?: string;
}

export const DEFAULT_SPARK: SparkDefaults = {
  image: DEFAULT_SPARK_IMAGE,
  sparkVersion: '3.5.3',
  serviceAccount: 'spark',
  sqlRunnerFile: 'local:///opt/strata/sql_runner.py',
};

/**
 * The tenant's namespace: `strata-{tenant}` when that fits a DNS label (tenants of up to 55
 * characters), else the first 47 characters and a hash of the whole name, 63 characters
 * long, which no short tenant's name can be. Distinct tenants never share a namespace.
 */
export function tenantNamespace(tenant: string): string {
  if (!TENANT_RE.test(tenant))
    throw new Error(`tenant "${tenant}" is not a valid tenant name (lower-case letters, digits and "-")`);
  if (tenant.length <= 55) return `strata-${tenant}`;
  return `strata-${tenant.slice(0, 47)}-${createHash('sha256').update(tenant).digest('hex').slice(0, 8)}`;
}

/** Pod Security Admission: every pod in a tenant namespace must meet the `restricted` profile. */
export const POD_SECURITY_LABELS: Record<string, string> = {
  'pod-security.kubernetes.io/enforce': 'restricted',
  'pod-security.kubernetes.io/enforce-version': 'latest',
  'pod-security.kubernetes.io/audit': 'restricted',
  'pod-security.kubernetes.io/audit-version': 'latest',
  'pod-security.kubernetes.io/warn': 'restricted',
  'pod-security.kubernetes.io/warn-version': 'latest',
};

/** The uid and gid the Apache Spark images run as (`spark`, 185). */
export const SPARK_UID = 185;

/** The restricted profile for a pod and its containers: never root, no privilege escalation, no capabilities, the runtime's seccomp profile. */
export const POD_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: SPARK_UID,
  runAsGroup: SPARK_UID,
  fsGroup: SPARK_UID,
  seccompProfile: { type: 'RuntimeDefault' },
};
export const CONTAINER_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: SPARK_UID,
  allowPrivilegeEscalation: false,
  privileged: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

const labelValue = (v: string) =>
  v
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '') || 'x';

/**
 * The workflow that owns an object Strata made (the externalJob watching a SparkApplication,
 * the clusterLifecycle of a SparkConnect): an annotation, as a workflow id is no label value.
 * The sweeper stops objects whose owner has closed.
 */
export const OWNER_ANNOTATION = 'strata.dev/owner-workflow';
/** The label every object Strata makes carries (the sweeper's selector). */
export const MANAGED_BY = 'app.kubernetes.io/managed-by=strata';

export function runLabels(run: RunContext, taskId?: string): Record<string, string> {
  return {
    'app.kubernetes.io/managed-by': 'strata',
    'strata.dev/tenant': labelValue(run.tenant),
    'strata.dev/pipeline': labelValue(run.pipelineId),
    ...(taskId ? { 'strata.dev/task': labelValue(taskId) } : {}),
  };
}

const ownerAnnotation = (owner?: string) => (owner ? { annotations: { [OWNER_ANNOTATION]: owner } } : {});

/** S3 credentials by reference to a Secret: the values never enter the spec, history or logs. */
function s3Env(secret: string | undefined) {
  if (!secret) return undefined;
  return [
    { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: secret, key: 'AWS_ACCESS_KEY_ID' } } },
    { name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: secret, key: 'AWS_SECRET_ACCESS_KEY' } } },
  ];
}

/** The Secret holding a job's catalog credential: `{application}-catalog`, key `token`. */
export const catalogSecretName = (app: string) => `${app}-catalog`;
export const CATALOG_SECRET_KEY = 'token';
/** The pods' environment variable holding the credential (from the Secret). */
export const CATALOG_TOKEN_ENV = 'STRATA_CATALOG_TOKEN';
/** The Spark setting it becomes (activities/iceberg/audit.ts leaves it out of the SparkApplication's sparkConf). */
const TOKEN_CONF = 'spark.sql.catalog.strata.token';

/**
 * The run's catalog credential by reference: the driver and executors get it from the Secret
 * (`secretKeyRef`), and the driver's spark-submit reads it as a system property through
 * SPARK_SUBMIT_OPTS (`$(VAR)` is expanded by the kubelet, so the value is only ever in the
 * Secret and the container's environment, never in the SparkApplication).
 */
function catalogEnv(secret: string | undefined, role: 'driver' | 'executor') {
  if (!secret) return [];
  const token = {
    name: CATALOG_TOKEN_ENV,
    valueFrom: { secretKeyRef: { name: secret, key: CATALOG_SECRET_KEY } },
  };
  return role === 'executor'
    ? [token]
    : [token, { name: 'SPARK_SUBMIT_OPTS', value: `-D${TOKEN_CONF}=$(${CATALOG_TOKEN_ENV})` }];
}

/**
 * The Secret `{application}-catalog` with the run's catalog credential, owned by the
 * SparkApplication once it exists (`owner`: deleted with it by the garbage collector), labelled
 * as the application is.
 */
export function buildCatalogSecret(o: {
  app: string;
  namespace: string;
  run: RunContext;
  taskId: string;
  token: string;
  owner?: { apiVersion: string; kind: string; name: string; uid: string };
}) {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: catalogSecretName(o.app),
      namespace: o.namespace,
      labels: runLabels(o.run, o.taskId),
      ...(o.owner ? { ownerReferences: [{ ...o.owner, controller: false }] } : {}),
    },
    stringData: { [CATALOG_SECRET_KEY]: o.token },
  };
}

/** Where the job's code lives, as the engine reads it (already resolved in the tenant's lake). */
export interface SparkFiles {
  main?: string;
  pyFiles?: string[];
  jars?: string[];
  files?: string[];
}

export function buildSparkApplication(o: {
  name: string;
  namespace: string;
  task: SparkJobTask;
  run: RunContext;
  defaults: SparkDefaults;
  remote?: string;
  files?: SparkFiles;
  /** Strata's Iceberg catalog for a task with outputs (set last: a spec cannot override it). */
  catalogConf?: Record<string, string>;
  /** The Secret holding the catalog credential (buildCatalogSecret), referenced from the pods' environment. */
  catalogSecret?: string;
  /** The owning workflow's id (OWNER_ANNOTATION). */
  owner?: string;
}): K8sObject {
  const { task, defaults } = o;
  const files: SparkFiles = o.files ?? { main: task.file };
  const isSql = task.kind === 'sql';
  const s3 = s3Env(task.s3Secret) ?? [];
  const driverEnv = [...s3, ...catalogEnv(o.catalogSecret, 'driver')];
  const executorEnv = [...s3, ...catalogEnv(o.catalogSecret, 'executor')];
  const sa = task.serviceAccount ?? defaults.serviceAccount;
  const labels = runLabels(o.run, task.id);
  const sparkConf: Record<string, string> = { ...task.sparkConf };
  if (s3.length)
    sparkConf['spark.hadoop.fs.s3a.aws.credentials.provider'] ??=
      'com.amazonaws.auth.EnvironmentVariableCredentialsProvider';
  if (defaults.s3Endpoint) sparkConf['spark.hadoop.fs.s3a.endpoint'] ??= defaults.s3Endpoint;
  if (o.remote) sparkConf['spark.remote'] = o.remote;
  Object.assign(sparkConf, o.catalogConf);
  const dyn = task.dynamicAllocation;
  const spec: Record<string, unknown> = {
    type: 'Python',
    mode: 'cluster',
    pythonVersion: '3',
    image: task.image ?? defaults.image,
    sparkVersion: task.sparkVersion ?? defaults.sparkVersion,
    mainApplicationFile: isSql ? defaults.sqlRunnerFile : files.main,
    arguments: isSql ? ['--sql', String(task.sql), ...(task.args ?? [])] : (task.args ?? []),
    restartPolicy: { type: 'Never' },
    sparkConf,
    driver: {
      cores: task.driver?.cores ?? 1,
      memory: task.driver?.memory ?? '1g',
      serviceAccount: sa,
      labels,
      ...(driverEnv.length ? { env: driverEnv } : {}),
      podSecurityContext: POD_SECURITY_CONTEXT,
      securityContext: CONTAINER_SECURITY_CONTEXT,
    },
    executor: {
      cores: task.executor?.cores ?? 1,
      memory: task.executor?.memory ?? '1g',
      instances: task.executor?.instances ?? 1,
      labels,
      ...(executorEnv.length ? { env: executorEnv } : {}),
      podSecurityContext: POD_SECURITY_CONTEXT,
      securityContext: CONTAINER_SECURITY_CONTEXT,
    },
  };
  const deps = Object.fromEntries(
    (['pyFiles', 'jars', 'files'] as const).filter((k) => files[k]?.length).map((k) => [k, files[k]]),
  );
  if (Object.keys(deps).length) spec.deps = deps;
  if (dyn) {
    spec.dynamicAllocation = {
      enabled: dyn.enabled ?? true,
      ...(dyn.minExecutors !== undefined ? { minExecutors: dyn.minExecutors } : {}),
      ...(dyn.maxExecutors !== undefined ? { maxExecutors: dyn.maxExecutors } : {}),
    };
  }
  return {
    apiVersion: `${SPARK_GROUP}/${SPARK_APP_VERSION}`,
    kind: 'SparkApplication',
    metadata: { name: o.name, namespace: o.namespace, labels, ...ownerAnnotation(o.owner) },
    spec,
  };
}

export function buildSparkConnect(o: {
  name: string;
  namespace: string;
  run: Pick<RunContext, 'tenant'>;
  image: string;
  sparkVersion: string;
  executors: number;
  cores: number;
  memoryGi: number;
  owner?: string;
}): K8sObject {
  const labels = {
    'app.kubernetes.io/managed-by': 'strata',
    'strata.dev/tenant': labelValue(o.run.tenant),
    'strata.dev/cluster': labelValue(o.name),
  };
  return {
    apiVersion: `${SPARK_GROUP}/${SPARK_CONNECT_VERSION}`,
    kind: 'SparkConnect',
    metadata: { name: o.name, namespace: o.namespace, labels, ...ownerAnnotation(o.owner) },
    spec: {
      sparkVersion: o.sparkVersion,
      image: o.image,
      server: { cores: 1, memory: '1g', template: restrictedPod(SPARK_DRIVER_CONTAINER) },
      executor: {
        instances: o.executors,
        cores: o.cores,
        memory: `${o.memoryGi}g`,
        template: restrictedPod('spark-kubernetes-executor'),
      },
    },
  };
}

/** A pod template holding only the restricted security settings (the operator fills in the rest). */
function restrictedPod(container: string) {
  return {
    spec: {
      securityContext: POD_SECURITY_CONTEXT,
      containers: [{ name: container, securityContext: CONTAINER_SECURITY_CONTEXT }],
    },
  };
}
