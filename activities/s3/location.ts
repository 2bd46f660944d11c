/**
 * A location as a task names it, normalised, in a module of its own: the reconciler's
 * readers need it without the S3 client behind the rest of tenant.ts (a process that only
 * compares local files does not load the AWS SDK).
 */
import { LocationError, normaliseLocation as normalise } from '../../schemas/tenant.js';
import { NonRetryableError } from '../../schemas/errors.js';

/** normaliseLocation, failing the task (not retried) with the reason. */
export function normaliseLocation(p: string): string {
  try {
    return normalise(p);
  } catch (e) {
    if (e instanceof LocationError) throw new NonRetryableError(e.message, 'LocationError');
    throw e;
  }
}
