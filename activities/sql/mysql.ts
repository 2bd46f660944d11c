/**
 * SQL on MySQL/MariaDB with the same ledger as Postgres (see postgres.ts). MySQL commits
 * implicitly around DDL (CREATE/ALTER/DROP), so only DML is exactly-once there.
 */
import mysql from 'mysql2/promise';
import { z } from 'zod';
import { isRecord } from '../../schemas/guards.js';
import type { ConnectionConfig } from './connections.js';
import { sqlFailure } from './errors.js';
import { LEDGER_TABLE, type SqlRunner } from './postgres.js';
import { myClaim, myFinish, myLedgerProtected, myRows } from './ledger.js';

export const runMysql: SqlRunner = async (conn, key, sql, signal, ledgerKey) => {
  let c: mysql.Connection;
  try {
    c = await mysql.createConnection({ uri: conn.url.replace(/^mariadb:/, 'mysql:'), multipleStatements: true });
  } catch (e) {
    throw classify(e, conn);
  }
  const onAbort = () => void killQuery(conn, c.threadId);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const ldb = await myLedgerProtected(c);
    if (ldb) {
      await c.beginTransaction();
      const claim = await myClaim(c, ldb, conn.name, ledgerKey, key.workflowId, key.taskId);
      if (!claim.claimed) {
        await c.rollback();
        return { rowCount: claim.rowCount, alreadyApplied: true };
      }
      const [res] = await c.query(sql);
      const rowCount = countOf(res);
      await myFinish(c, ldb, conn.name, ledgerKey, key.workflowId, key.taskId, rowCount);
      await c.commit();
      return { rowCount, alreadyApplied: false };
    }
    await c.query(
      `CREATE TABLE IF NOT EXISTS ${LEDGER_TABLE} (workflow_id VARCHAR(255) NOT NULL, task_id VARCHAR(128) NOT NULL, row_count BIGINT NULL, committed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (workflow_id, task_id)) ENGINE=InnoDB`,
    );
    await c.beginTransaction();
    const [claim] = await c.query(`INSERT IGNORE INTO ${LEDGER_TABLE} (workflow_id, task_id) VALUES (?, ?)`, [
      key.workflowId,
      key.taskId,
    ]);
    if (!isHeader(claim)) throw new Error('MySQL answered the ledger INSERT without an affected-row count');
    if (claim.affectedRows === 0) {
      await c.rollback();
      const rows = await myRows(
        c,
        z.object({ row_count: z.union([z.number(), z.string()]).nullable() }),
        `SELECT row_count FROM ${LEDGER_TABLE} WHERE workflow_id = ? AND task_id = ?`,
        [key.workflowId, key.taskId],
      );
      return { rowCount: Number(rows[0]?.row_count ?? 0), alreadyApplied: true, ledger: 'unprotected' };
    }
    const [res] = await c.query(sql);
    const rowCount = countOf(res);
    await c.query(`UPDATE ${LEDGER_TABLE} SET row_count = ? WHERE workflow_id = ? AND task_id = ?`, [
      rowCount,
      key.workflowId,
      key.taskId,
    ]);
    await c.commit();
    return { rowCount, alreadyApplied: false, ledger: 'unprotected' };
  } catch (e) {
    await c.rollback().catch(() => {});
    throw classify(e, conn);
  } finally {
    signal.removeEventListener('abort', onAbort);
    await c.end().catch(() => {});
  }
};

function countOf(res: unknown): number {
  const results: unknown[] =
    Array.isArray(res) && res.length && (Array.isArray(res[0]) || isHeader(res[0])) ? res : [res];
  const last = results[results.length - 1];
  return Array.isArray(last) ? last.length : isHeader(last) ? last.affectedRows : 0;
}

function isHeader(x: unknown): x is { affectedRows: number } {
  return isRecord(x) && typeof x.affectedRows === 'number';
}

export async function killQuery(conn: ConnectionConfig, threadId: number) {
  try {
    const k = await mysql.createConnection({ uri: conn.url.replace(/^mariadb:/, 'mysql:') });
    await k.query(`KILL QUERY ${Number(threadId)}`);
    await k.end();
  } catch {
    /* ends with the connection anyway */
  }
}

function classify(e: unknown, conn: ConnectionConfig): Error {
  return sqlFailure('mysql', conn.name, e);
}
