/**
 * The error types every layer shares. A `RequestError` is the caller's to fix (the API
 * answers with its status and problems); a `NonRetryableError` is a task failure a retry
 * cannot fix (bad SQL, missing table, bad config) — the activity adapter turns it into a
 * non-retryable Temporal failure of its `type`.
 */
import type { Problem } from './pipeline.js';

/** A request the caller must fix; `status` is the HTTP status to answer with. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status = 400,
    readonly problems: Problem[] = [],
  ) {
    super(message);
  }
}

/** An error the user must fix (bad SQL, missing table, bad config): never retried. */
export class NonRetryableError extends Error {
  constructor(
    message: string,
    readonly type = 'TaskError',
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = type;
  }
}

/** The non-retryable failure of a task whose fields do not parse: each field and what is wrong. */
export function taskFieldError(
  id: string,
  error: { issues: { path: PropertyKey[]; message: string }[] },
): NonRetryableError {
  const where = error.issues.map((i) => `${i.path.map(String).join('.') || '(task)'}: ${i.message}`).join('; ');
  return new NonRetryableError(`task ${id}: ${where}`, 'TaskError');
}

/** An error's message, whatever was thrown. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A field of whatever was thrown (driver and SDK errors carry `code`, `errno`, `status`,
 * `$metadata`…), as `unknown` for the caller to check; undefined when there is none.
 */
export function errorField(e: unknown, key: string): unknown {
  if (typeof e !== 'object' || e === null) return undefined;
  const v: unknown = Reflect.get(e, key);
  return v;
}

/** A string field of a thrown error (`code`, `sqlState`…), or undefined. */
export function errorString(e: unknown, key: string): string | undefined {
  const v = errorField(e, key);
  return typeof v === 'string' ? v : undefined;
}

/** A numeric field of a thrown error (`status`, `errno`, `responseCode`…), or undefined. */
export function errorNumber(e: unknown, key: string): number | undefined {
  const v = errorField(e, key);
  return typeof v === 'number' ? v : undefined;
}
