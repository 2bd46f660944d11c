import { Context } from '@temporalio/activity';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { tenantFolder } from '../s3/tenant.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { taskActivity } from '../core/task.js';
import { resolveConnection, type Connections } from './connections.js';
import { runDuckdb } from './duckdb.js';
import { taskMacroLibraries } from './macros.js';
import { runMysql } from './mysql.js';
import { runPostgres } from './postgres.js';
import { isLakeSql, runLakeSql } from '../lake/activities.js';
import { parseJobTask } from '../../schemas/external.js';
import { z } from 'zod';
import type { LakeDeps } from '../lake/engine.js';

export interface SqlDeps {
  lakeRoot: string;
  connections: Connections;
  /** The dataset lake (store + catalog); duckdb tasks with dataset outputs run there. */
  lake?: LakeDeps;
  /** STRATA_LEDGER_KEY: unlocks the protected exactly-once ledgers (strata ledger-setup). */
  ledgerKey?: string;
}

/** A duckdb task's file output: a path under the tenant's lake folder, when it has one. */
const DuckdbOutput = z.object({ id: z.string(), output: z.string().optional() });

export function createSqlActivities(deps: SqlDeps) {
  return {
    runSql: taskActivity(async ({ task, run }, signal) => {
      const engine = typeof task.engine === 'string' ? task.engine : 'duckdb';
      const sql = String(task.sql);
      const key = { workflowId: run.workflowId, taskId: task.id };
      switch (engine) {
        case 'duckdb': {
          if (isLakeSql(task)) {
            if (!deps.lake)
              throw new NonRetryableError(
                'this task writes a dataset, but the worker has no lake catalog: configure the metastore',
                'ConfigError',
              );
            return runLakeSql(deps.lake, { task, run }, signal, await taskMacroLibraries(deps.lake, run.tenant, task));
          }
          const info = Context.current().info;
          const tag = `${(info.workflowExecution?.runId ?? 'run').slice(0, 8)}-${info.activityId}-${info.attempt}`;
          const root = tenantFolder(deps.lakeRoot, run.tenant);
          const scratch = path.join(os.tmpdir(), 'strata-sql', run.tenant, tag);
          const macros = await taskMacroLibraries(deps.lake, run.tenant, task);
          try {
            return await runDuckdb({
              lakeRoot: root,
              sql,
              macros,
              output: parseJobTask(DuckdbOutput, task).output,
              attemptTag: tag,
              signal,
              scratch,
            });
          } finally {
            await rm(scratch, { recursive: true, force: true });
          }
        }
        case 'postgres':
          return runPostgres(
            resolveConnection(deps.connections, String(task.connection), engine, run.tenant),
            key,
            sql,
            signal,
            deps.ledgerKey,
          );
        case 'mysql':
          return runMysql(
            resolveConnection(deps.connections, String(task.connection), engine, run.tenant),
            key,
            sql,
            signal,
            deps.ledgerKey,
          );
        default:
          throw new NonRetryableError(`engine ${engine} is not served by this worker`, 'ConfigError');
      }
    }),
  };
}
