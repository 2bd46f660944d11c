/** Builds SparkApplication and SparkConnect manifests from task specs (pure). */
import type { RunContext } from '../../schemas/run.js';
import { SPARK_APP_VERSION, SPARK_CONNECT_VERSION, SPARK_GROUP, type K8sObject } from './client.js';

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
  image: 'apache/spark:3.5.3-python3',
  sparkVersion: '3.5.3',
  serviceAccount: 'spark',
  sqlRunnerFile: 'local:///opt/strata/sql_runner.py',
};

/** `strata-{tenant}`, a valid namespace name. */
export function tenantNamespace(tenant: string): string {
  const t = tenant.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 50);
  if (!t) throw new Error(`tenant "${tenant}" gives no valid namespace name`);
  return `strata-${t}`;
}

const labelValue = (v: string) => v.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '') || 'x';

export function runLabels(run: RunContext, taskId?: string): Record<string, string> {
  return {
    'app.kubernetes.io/managed-by': 'strata',
    'strata.dev/tenant': labelValue(run.tenant),
    'strata.dev/pipeline': labelValue(run.pipelineId),
    ...(taskId ? { 'strata.dev/task': labelValue(taskId) } : {}),
  };
}

type T = Record<string, any>;

/** S3 credentials by reference to a Secret: the values never enter the spec, history or logs. */
function s3Env(secret: string | undefined) {
  if (!secret) return undefined;
  return [
    { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: secret, key: 'AWS_ACCESS_KEY_ID' } } },
    { name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: secret, key: 'AWS_SECRET_ACCESS_KEY' } } },
  ];
}

export function buildSparkApplication(o: { name: string; namespace: string; task: T; run: RunContext; defaults: SparkDefaults; remote?: string }): K8sObject {
  const { task, defaults } = o;
  const isSql = task.kind === 'sql';
  const env = s3Env(task.s3Secret);
  const sa = task.serviceAccount ?? defaults.serviceAccount;
  const labels = runLabels(o.run, task.id);
  const sparkConf: Record<string, string> = { ...(task.sparkConf ?? {}) };
  if (env) sparkConf['spark.hadoop.fs.s3a.aws.credentials.provider'] ??= 'com.amazonaws.auth.EnvironmentVariableCredentialsProvider';
  if (defaults.s3Endpoint) sparkConf['spark.hadoop.fs.s3a.endpoint'] ??= defaults.s3Endpoint;
  if (o.remote) sparkConf['spark.remote'] = o.remote;
  const dyn = task.dynamicAllocation;
  const spec: T = {
    type: 'Python',
    mode: 'cluster',
    pythonVersion: '3',
    image: task.image ?? defaults.image,
    sparkVersion: task.sparkVersion ?? defaults.sparkVersion,
    mainApplicationFile: isSql ? defaults.sqlRunnerFile : task.file,
    arguments: isSql ? ['--sql', String(task.sql), ...(task.args ?? [])] : (task.args ?? []),
    restartPolicy: { type: 'Never' },
    sparkConf,
    driver: {
      cores: task.driver?.cores ?? 1,
      memory: task.driver?.memory ?? '1g',
      serviceAccount: sa,
      labels,
      ...(env ? { env } : {}),
    },
    executor: {
      cores: task.executor?.cores ?? 1,
      memory: task.executor?.memory ?? '1g',
      instances: task.executor?.instances ?? 1,
      labels,
      ...(env ? { env } : {}),
    },
  };
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
    metadata: { name: o.name, namespace: o.namespace, labels },
    spec,
  };
}

export function buildSparkConnect(o: { name: string; namespace: string; run: Pick<RunContext, 'tenant'>; image: string; sparkVersion: string; executors: number; cores: number; memoryGi: number }): K8sObject {
  const labels = { 'app.kubernetes.io/managed-by': 'strata', 'strata.dev/tenant': labelValue(o.run.tenant), 'strata.dev/cluster': labelValue(o.name) };
  return {
    apiVersion: `${SPARK_GROUP}/${SPARK_CONNECT_VERSION}`,
    kind: 'SparkConnect',
    metadata: { name: o.name, namespace: o.namespace, labels },
    spec: {
      sparkVersion: o.sparkVersion,
      image: o.image,
      server: { cores: 1, memory: '1g' },
      executor: { instances: o.executors, cores: o.cores, memory: `${o.memoryGi}g` },
    },
  };
}
