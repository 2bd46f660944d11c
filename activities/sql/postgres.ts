/**
 * SQL on Postgres, exactly once. The task's statements run in one transaction together
 * with a ledger row keyed by (workflow id, task id). A retried attempt, a second worker
 * or a worker restarted after SIGKILL finds the ledger row and does not apply the
 * statements again; a concurrent attempt blocks on the row and then sees it.
 * Statements that manage their own transactions (COMMIT, VACUUM) break this guarantee.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import { errorString } from '../../schemas/errors.js';
import type { ConnectionConfig } from './connections.js';
import { sqlFailure } from './errors.js';
import { pgClaim, pgFinish, pgLedgerProtected } from './ledger.js';

export const LEDGER_TABLE = 'strata_task_ledger';

export interface SqlRunResult {
  rowCount: number;
  alreadyApplied: boolean;
  [k: string]: unknown;
}

/**
 * Runs a SQL task's statements on a connection, exactly once per (workflow id, task id) where
 * the ledger allows; `signal` cancels the running statement.
 */
export type SqlRunner = (
  conn: ConnectionConfig,
  key: { workflowId: string; taskId: string },
  sql: string,
  signal: AbortSignal,
  ledgerKey?: string,
) => Promise<SqlRunResult>;

export const runPostgres: SqlRunner = async (conn, key, sql, signal, ledgerKey) => {
  // A name of this connection's own: a cancel must reach this backend, never one that took its pid later.
  const appName = backendName(key.taskId);
  const client = new pg.Client({ connectionString: conn.url, application_name: appName });
  try {
    await client.connect();
  } catch (e) {
    throw classify(e, conn);
  }
  const onAbort = () => void cancelBackend(conn, backendPid(client), appName);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (await pgLedgerProtected(client)) {
      await client.query('BEGIN');
      const claim = await pgClaim(client, conn.name, ledgerKey, key.workflowId, key.taskId);
      if (!claim.claimed) {
        await client.query('ROLLBACK');
        return { rowCount: claim.rowCount, alreadyApplied: true };
      }
      const rowCount = countOf(await client.query(sql));
      await pgFinish(client, conn.name, ledgerKey, key.workflowId, key.taskId, rowCount);
      await client.query('COMMIT');
      return { rowCount, alreadyApplied: false };
    }
    await client
      .query(
        `CREATE TABLE IF NOT EXISTS ${LEDGER_TABLE} (workflow_id text NOT NULL, task_id text NOT NULL, row_count bigint, committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (workflow_id, task_id))`,
      )
      .catch((e: unknown) => {
        const code = errorString(e, 'code');
        // Created concurrently by another task: Postgres reports the race as a unique violation on
        // its catalog (23505), the table (42P07) or the table's row type (42710) already existing.
        if (code !== '23505' && code !== '42P07' && code !== '42710') throw e;
      });
    await client.query('BEGIN');
    const claim = await client.query(
      `INSERT INTO ${LEDGER_TABLE} (workflow_id, task_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1`,
      [key.workflowId, key.taskId],
    );
    if (claim.rowCount === 0) {
      await client.query('ROLLBACK');
      const prev = await client.query<{ row_count: string | number }>(
        `SELECT row_count FROM ${LEDGER_TABLE} WHERE workflow_id = $1 AND task_id = $2`,
        [key.workflowId, key.taskId],
      );
      return { rowCount: Number(prev.rows[0]?.row_count ?? 0), alreadyApplied: true, ledger: 'unprotected' };
    }
    const rowCount = countOf(await client.query(sql));
    await client.query(`UPDATE ${LEDGER_TABLE} SET row_count = $3 WHERE workflow_id = $1 AND task_id = $2`, [
      key.workflowId,
      key.taskId,
      rowCount,
    ]);
    await client.query('COMMIT');
    return { rowCount, alreadyApplied: false, ledger: 'unprotected' };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw classify(e, conn);
  } finally {
    signal.removeEventListener('abort', onAbort);
    await client.end().catch(() => {});
  }
};

/** What one statement answered: pg's Result, as far as counting needs it. */
const StatementResult = z.object({
  command: z.string().nullish(),
  rowCount: z.number().nullish(),
  rows: z.array(z.unknown()),
});

/**
 * The rows the task's last statement touched. Several statements answer one result each
 * (an array), though pg's type declarations promise a single one; a result of another
 * shape fails here, saying so.
 */
function countOf(res: unknown): number {
  const r = z.union([StatementResult, z.array(StatementResult)]).safeParse(res);
  if (!r.success)
    throw new Error(`Postgres answered the task's SQL with an unexpected result: ${z.prettifyError(r.error)}`);
  const last = Array.isArray(r.data) ? r.data[r.data.length - 1] : r.data;
  return last?.command === 'SELECT' ? last.rows.length : (last?.rowCount ?? 0);
}

/**
 * The backend process id of a connected client (pg keeps it as `processID`, which its type
 * declarations leave out); undefined before it connects.
 */
export function backendPid(client: pg.Client): number | undefined {
  const pid: unknown = Reflect.get(client, 'processID');
  return typeof pid === 'number' ? pid : undefined;
}

/** A backend's application_name: what it runs for, and a random part that makes it its own. */
export function backendName(what: string): string {
  return `strata:${what.slice(0, 40)}:${randomBytes(6).toString('hex')}`;
}

/** Cancels the statement of the backend with this pid, if it is still the one named `appName`. */
export async function cancelBackend(conn: ConnectionConfig, pid: number | undefined, appName: string) {
  if (pid === undefined) return; // not connected: no statement runs
  const c = new pg.Client({ connectionString: conn.url });
  try {
    await c.connect();
    await c.query('SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2', [
      pid,
      appName,
    ]);
  } catch {
    /* the query ends with the connection anyway */
  } finally {
    await c.end().catch(() => {});
  }
}

function classify(e: unknown, conn: ConnectionConfig): Error {
  return sqlFailure('postgres', conn.name, e);
}
