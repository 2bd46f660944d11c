/**
 * SQLSTATE classes a retry can fix: connection trouble (08), transaction rollbacks such
 * as deadlocks and serialization failures (40), resources (53), operator intervention
 * (57), system errors (58) and the server going away. Everything else (syntax, missing
 * table, constraint, data errors) is the query's fault and fails at once.
 */
import { NonRetryableError, errorMessage } from '../../schemas/errors.js';
import { redact } from './connections.js';

const RETRYABLE_CLASSES = new Set(['08', '40', '53', '57', '58', 'HY', 'XX']);
const RETRYABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'PROTOCOL_CONNECTION_LOST',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

export function isRetryableSqlError(e: unknown): boolean {
  const err = sqlErrorFields(e);
  const state = err.sqlState ?? (err.code && /^[0-9A-Z]{5}$/.test(err.code) ? err.code : undefined);
  if (state) return RETRYABLE_CLASSES.has(state.slice(0, 2));
  if (err.code && RETRYABLE_NODE_CODES.has(err.code)) return true;
  if (err.code?.startsWith('ER_')) return err.code === 'ER_LOCK_DEADLOCK' || err.code === 'ER_LOCK_WAIT_TIMEOUT';
  return true;
}

/** The fields drivers put on their errors (pg: code is the SQLSTATE; mysql2: sqlState and an ER_ code). */
function sqlErrorFields(e: unknown): { message: string; code?: string; sqlState?: string } {
  const o: Record<string, unknown> = e && typeof e === 'object' ? { ...e } : {};
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return { message: errorMessage(e), code: str(o.code), sqlState: str(o.sqlState) };
}

/**
 * A Postgres or MySQL error as a task failure: its message redacted (no connection string)
 * with the SQLSTATE, retryable (SqlConnectionError) when a retry can fix it, else SqlError.
 */
export function sqlFailure(engine: 'postgres' | 'mysql', connection: string, e: unknown): Error {
  const err = sqlErrorFields(e);
  const state = err.sqlState ?? (err.code && /^[0-9A-Z]{5}$/.test(err.code) ? err.code : undefined);
  const msg = redact(`${engine} (${connection}): ${err.message}${state ? ` [SQLSTATE ${state}]` : ''}`);
  if (isRetryableSqlError(e)) {
    const r = new Error(msg);
    r.name = 'SqlConnectionError';
    return r;
  }
  return new NonRetryableError(msg, 'SqlError');
}
