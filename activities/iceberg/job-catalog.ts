/**
 * What an external job is given to write its declared outputs through Strata's Iceberg
 * catalog: the catalog's URI, the tenant's warehouse and a credential scoped to the run
 * (activities/iceberg/audit.ts), as Spark settings. Temporal-free.
 */
import type { ExternalJobInput } from '../../schemas/external.js';
import { NonRetryableError } from '../../schemas/errors.js';
import type { LakeDeps } from '../lake/engine.js';
import { issueCatalogAccess, jobOutputs, sparkCatalogConf } from './audit.js';

export interface CatalogDeps {
  lake?: LakeDeps;
  /** The Iceberg REST catalog's URI as jobs reach it (STRATA_ICEBERG_URI; default `{publicUrl}/iceberg`). */
  icebergUri?: string;
  publicUrl?: string;
}

/** A run credential lives the task's timeout (default a day) and an hour more; the audit revokes it. */
const DEFAULT_TTL_MS = 24 * 3600_000;

/**
 * The catalog settings for a task with outputs (undefined without): Spark's settings without
 * the run credential, and the credential apart, for the job to read from elsewhere (a
 * Kubernetes Secret, an S3 object). Never logged or returned by an activity.
 */
export async function catalogAccessFor(
  deps: CatalogDeps,
  input: Pick<ExternalJobInput, 'run' | 'task' | 'timeoutMs'>,
): Promise<{ conf: Record<string, string>; token: string } | undefined> {
  const outputs = jobOutputs(input.task);
  if (!outputs.length) return undefined;
  if (!deps.lake)
    throw new NonRetryableError(
      `task ${input.task.id} declares outputs, but this worker has no lake catalog (metastore) to audit them`,
      'ConfigError',
    );
  const access = await issueCatalogAccess(deps.lake, {
    uri: deps.icebergUri ?? (deps.publicUrl ? `${deps.publicUrl.replace(/\/+$/, '')}/iceberg` : undefined),
    run: input.run,
    task: input.task,
    ttlMs: (input.timeoutMs ?? DEFAULT_TTL_MS) + 3600_000,
  });
  return access && { conf: sparkCatalogConf(access, outputs), token: access.token };
}
