/**
 * A worker killed with SIGKILL mid-run, then restarted, finishes the run, and no task's
 * side effect is applied twice. Real processes, real Postgres.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inject } from 'vitest';
import { spec, waitFor } from '../harness/specs.js';
import { startProcess, type Proc } from '../harness/processes.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let pgc: pg.Client;
const procs: Proc[] = [];
beforeAll(async () => {
  stack = await testStack('crash');
  pgc = new pg.Client({ connectionString: stack.connections.warehouse.url });
  await pgc.connect();
});
afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await pgc?.end();
  await stack?.close();
});

function worker(): Proc {
  const p = startProcess('workers/worker.ts', [], {
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    STRATA_TASK_QUEUE: stack.taskQueue,
    STRATA_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
    STRATA_LAKE_ROOT: stack.lakeRoot,
    STRATA_CONN_WAREHOUSE: stack.connections.warehouse.url,
    STRATA_CONN_WAREHOUSE_TENANTS: stack.tenant,
    DATABASE_URL: inject('databases').postgresUrl,
  });
  procs.push(p);
  return p;
}

it('finishes the run after the worker is killed mid-task, applying each side effect once', async () => {
  await pgc.query('DROP TABLE IF EXISTS crash_log; CREATE TABLE crash_log (task text, at timestamptz default now())');
  const s = spec(`
id: crashy
defaults:
  retry: { attempts: 5, initialInterval: 200ms }
tasks:
  - id: first
    kind: sql
    engine: postgres
    connection: warehouse
    sql: "INSERT INTO crash_log (task) VALUES ('first'); SELECT pg_sleep(10)"
  - id: second
    kind: sql
    engine: postgres
    connection: warehouse
    needs: [first]
    sql: "INSERT INTO crash_log (task) VALUES ('second')"
`);
  const w1 = worker();
  await w1.waitForOutput(/strata worker: task queue/);
  const h = await stack.runs.start({
    spec: s,
    tenant: stack.tenant,
    trigger: 'manual',
    options: { heartbeatTimeoutMs: 1500 },
  });
  // Wait until the first task's statement is in flight on Postgres, then kill the worker.
  await waitFor(
    async () =>
      (
        await pgc.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'INSERT INTO crash_log%pg_sleep%' AND state = 'active'",
        )
      ).rows[0].n > 0,
  );
  w1.child.kill('SIGKILL');
  await w1.exited();

  const w2 = worker();
  await w2.waitForOutput(/strata worker: task queue/);
  const st = await stack.runs.wait(h.runId);
  expect(st.status).toBe('success');
  expect(st.tasks.first.attempts).toBeGreaterThanOrEqual(2); // it really was interrupted
  const rows = (await pgc.query('SELECT task, count(*)::int AS n FROM crash_log GROUP BY task ORDER BY task')).rows;
  expect(rows).toEqual([
    { task: 'first', n: 1 },
    { task: 'second', n: 1 },
  ]);
  w2.child.kill('SIGTERM');
  expect(await w2.exited()).toBe(0);
});
