/**
 * External-engine clients from the worker's environment. Each is optional: a worker
 * without one refuses that engine's tasks with a ConfigError that says what to set.
 * Secrets (Airbyte client secret, AWS keys) are read here and never logged.
 */
import type { ActivityDeps } from '../activities/index.js';
import { airbyteClientFromEnv } from '../activities/airbyte/client.js';
import { EmrJobsClient } from '../activities/emr/client.js';
import { sparkClientFromEnv } from '../activities/spark-k8s/client.js';
import { parseTenantTiers } from '../schemas/external.js';
import { parseAirbyteWorkspaces } from '../schemas/ingestion.js';
import { sparkPolicyFromEnv } from '../schemas/spark-policy.js';

export function externalDepsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<ActivityDeps> {
  const deps: Partial<ActivityDeps> = {
    tenantTiers: parseTenantTiers(env.STRATA_TENANT_TIERS),
    sparkPolicy: sparkPolicyFromEnv(env),
    airbyteWorkspaces: parseAirbyteWorkspaces(env.STRATA_AIRBYTE_WORKSPACES),
  };
  const spark = sparkClientFromEnv(env);
  if (spark) deps.spark = spark;
  deps.sparkDefaults = {
    ...(env.STRATA_SPARK_IMAGE ? { image: env.STRATA_SPARK_IMAGE } : {}),
    ...(env.STRATA_SPARK_SQL_RUNNER ? { sqlRunnerFile: env.STRATA_SPARK_SQL_RUNNER } : {}),
    ...(env.STRATA_SPARK_SERVICE_ACCOUNT ? { serviceAccount: env.STRATA_SPARK_SERVICE_ACCOUNT } : {}),
    ...(env.STRATA_S3_ENDPOINT ? { s3Endpoint: env.STRATA_S3_ENDPOINT } : {}),
  };
  const region = env.STRATA_EMR_REGION ?? env.AWS_REGION;
  if (region) {
    deps.emr = new EmrJobsClient({ region, ...(env.STRATA_EMR_ENDPOINT ? { endpoint: env.STRATA_EMR_ENDPOINT } : {}) });
    // EMR's buckets (scripts, step logs) are on AWS S3: the AWS default credential chain, not the lake's STRATA_S3_* settings.
    deps.emrS3 = { region };
  }
  if (env.STRATA_EMR_LOG_URI) {
    if (!/^s3[na]?:\/\/[^/]+/.test(env.STRATA_EMR_LOG_URI))
      throw new Error(`STRATA_EMR_LOG_URI "${env.STRATA_EMR_LOG_URI}" should be s3://BUCKET/PREFIX`);
    deps.clusterDefaults = { ...deps.clusterDefaults, emrLogUri: env.STRATA_EMR_LOG_URI };
  }
  if (env.STRATA_EMR_SCRIPTS_URI) {
    if (!/^s3[na]?:\/\/[^/]+/.test(env.STRATA_EMR_SCRIPTS_URI))
      throw new Error(`STRATA_EMR_SCRIPTS_URI "${env.STRATA_EMR_SCRIPTS_URI}" should be s3://BUCKET/PREFIX`);
    deps.emrScriptsUri = env.STRATA_EMR_SCRIPTS_URI;
  }
  const airbyte = airbyteClientFromEnv(env);
  if (airbyte) deps.airbyte = airbyte;
  return deps;
}
