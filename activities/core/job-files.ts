/**
 * Where an external job's code comes from: the tenant's own lake, or a location the platform
 * operator allowed for the tenant (STRATA_TENANT_LOCATIONS). A relative path is a key in the
 * tenant's lake and reaches the engine as the full URI of the tenant's object; a URI outside
 * both is refused before anything is submitted. Checked after templates are rendered.
 */
import type { LakeDeps } from '../lake/engine.js';
import { allowedLocations, forTenant } from '../lake/open.js';
import type { S3Config } from '../s3/client.js';
import { locate, type Located } from '../s3/tenant.js';
import { NonRetryableError } from '../../schemas/errors.js';

export interface JobFileDeps {
  lake?: LakeDeps;
  s3?: S3Config;
}

/** A job file resolved in the tenant's reach, with the URI the engine is given. */
export interface JobFile extends Located {
  uri: string;
}

/** Resolves the job files a task names (`field` says which, for the message). */
export function jobFileLocator(
  deps: JobFileDeps,
  tenant: string,
  taskId: string,
): (p: string, field: string) => JobFile {
  return (p, field) => {
    if (!deps.lake)
      throw new NonRetryableError(
        `task ${taskId}: ${field} "${p}" is read from your lake, but this worker has no lake: set STRATA_LAKE_ROOT and DATABASE_URL on the worker`,
        'ConfigError',
      );
    // Hadoop's s3a:// and s3n:// name the same objects as s3://.
    const name = p.replace(/^s3[an]:\/\//i, 's3://');
    let at: Located;
    try {
      at = locate(
        { lake: forTenant(deps.lake, tenant).store, allowed: allowedLocations(deps.lake, tenant), s3: deps.s3 },
        name,
      );
    } catch (e) {
      if (e instanceof NonRetryableError) throw new NonRetryableError(`task ${taskId}: ${field}: ${e.message}`, e.type);
      throw e;
    }
    if (!at.key || at.key.endsWith('/'))
      throw new NonRetryableError(`task ${taskId}: ${field} "${p}" names a folder: name a file`, 'LocationError');
    return { ...at, uri: at.store.uri(at.key) };
  };
}

/** Each of a task's dependency lists (pyFiles, jars, files), resolved. */
export function jobDeps(task: Record<string, unknown>, resolve: (p: string, field: string) => JobFile) {
  const out: Partial<Record<'pyFiles' | 'jars' | 'files', JobFile[]>> = {};
  for (const k of ['pyFiles', 'jars', 'files'] as const) {
    const list = task[k];
    if (Array.isArray(list) && list.length) out[k] = list.map((p, i) => resolve(String(p), `${k}[${i}]`));
  }
  return out;
}
