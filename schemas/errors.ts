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
  ) {
    super(message);
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
