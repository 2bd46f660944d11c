/**
 * SQLSTATE classes a retry can fix: connection trouble (08), transaction rollbacks such
 * as deadlocks and serialization failures (40), resources (53), operator intervention
 * (57), system errors (58) and the server going away. Everything else (syntax, missing
 * table, constraint, data errors) is the query's fault and fails at once.
 */
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
  const err = e as { code?: string; sqlState?: string; errno?: number };
  const state = err.sqlState ?? (err.code && /^[0-9A-Z]{5}$/.test(err.code) ? err.code : undefined);
  if (state) return RETRYABLE_CLASSES.has(state.slice(0, 2));
  if (err.code && RETRYABLE_NODE_CODES.has(err.code)) return true;
  if (err.code?.startsWith('ER_')) return err.code === 'ER_LOCK_DEADLOCK' || err.code === 'ER_LOCK_WAIT_TIMEOUT';
  return true;
}
