/**
 * External-engine clients from the worker's environment. Each is optional: a worker
 * without one refuses that engine's tasks with a ConfigError that says what to set.
 * Secrets (Airbyte client secret, AWS keys) are read here and never logged.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ActivityDeps } from '../activities/index.js';
import { airbyteClientFromEnv } from '../activities/airbyte/client.js';
import { EmrJobsClient } from '../activities/emr/client.js';
import { SparkK8sClient } from '../activities/spark-k8s/client.js';
import { parseTenantTiers } from '../schemas/external.js';

export { parseTenantTiers };

export function externalDepsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<ActivityDeps> {
  const deps: Partial<ActivityDeps> = { tenantTiers: parseTenantTiers(env.STRATA_TENANT_TIERS) };
  const kubeconfig = env.STRATA_KUBECONFIG;
  const hasKube = kubeconfig || env.KUBECONFIG || env.KUBERNETES_SERVICE_HOST || existsSync(path.join(os.homedir(), '.kube', 'config'));
  if (hasKube) deps.spark = SparkK8sClient.fromKubeconfig(kubeconfig);
  deps.sparkDefaults = {
    ...(env.STRATA_SPARK_IMAGE ? { image: env.STRATA_SPARK_IMAGE } : {}),
    ...(env.STRATA_SPARK_SQL_RUNNER ? { sqlRunnerFile: env.STRATA_SPARK_SQL_RUNNER } : {}),
    ...(env.STRATA_SPARK_SERVICE_ACCOUNT ? { serviceAccount: env.STRATA_SPARK_SERVICE_ACCOUNT } : {}),
    ...(env.STRATA_S3_ENDPOINT ? { s3Endpoint: env.STRATA_S3_ENDPOINT } : {}),
  };
  const region = env.STRATA_EMR_REGION ?? env.AWS_REGION;
  if (region) deps.emr = new EmrJobsClient({ region, ...(env.STRATA_EMR_ENDPOINT ? { endpoint: env.STRATA_EMR_ENDPOINT } : {}) });
  const airbyte = airbyteClientFromEnv(env);
  if (airbyte) deps.airbyte = airbyte;
  return deps;
}
