/**
 * The Temporal dev server dies mid-run: `npm start` notices, says so and stops (no worker
 * talking to nothing); started again on the same data folder, the stack finishes the run,
 * and every side effect happened once.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { freePort } from '../../workers/dev-server.js';
import { startProcess, type Proc } from '../harness/processes.js';

let pgc: pg.Client;
const procs: Proc[] = [];
beforeAll(async () => {
  pgc = new pg.Client({ connectionString: inject('databases').postgresUrl });
  await pgc.connect();
  await pgc.query(
    'DROP TABLE IF EXISTS server_crash_log; CREATE TABLE server_crash_log (task text, at timestamptz DEFAULT now())',
  );
});
afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await pgc?.end();
});

const SPEC = {
  id: 'survivor',
  defaults: { retry: { attempts: 5, initialInterval: '200ms' }, timeout: '8s' },
  tasks: [
    {
      id: 'a',
      kind: 'sql',
      engine: 'postgres',
      connection: 'warehouse',
      sql: "INSERT INTO server_crash_log (task) VALUES ('a')",
    },
    { id: 'nap', kind: 'noop', sleep: '4s', needs: ['a'] },
    {
      id: 'b',
      kind: 'sql',
      engine: 'postgres',
      connection: 'warehouse',
      sql: "INSERT INTO server_crash_log (task) VALUES ('b')",
      needs: ['nap'],
    },
    {
      id: 'c',
      kind: 'sql',
      engine: 'postgres',
      connection: 'warehouse',
      sql: "INSERT INTO server_crash_log (task) VALUES ('c')",
      needs: ['b'],
    },
  ],
};

/** The dev server a stack process started (its child `temporal` process). */
function serverPid(stack: Proc): number {
  const out = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(stack.child.pid)], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => /temporal/.test(l));
  if (!line) throw new Error(`no dev server under ${stack.child.pid}: ${out}`);
  return Number(line.trim().split(/\s+/)[0]);
}

it('a dev server killed mid-run: the stack says so and stops; started again, it finishes the run with each side effect once', async () => {
  const [port, uiPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const dataDir = path.join(inject('scratchDir'), 'server-crash');
  const env = {
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    TEMPORAL_UI_URL: `http://127.0.0.1:${uiPort}`,
    STRATA_DATA_DIR: dataDir,
    STRATA_TASK_QUEUE: 'server-crash',
    STRATA_API_PORT: String(apiPort),
    STRATA_CONN_WAREHOUSE: inject('databases').postgresUrl,
    STRATA_CONN_WAREHOUSE_TENANTS: 'default',
  };
  const api = `http://127.0.0.1:${apiPort}`;
  const up = async () => {
    const p = startProcess('workers/dev-stack.ts', ['--no-demo'], env);
    procs.push(p);
    await p.waitForOutput(/The stack is up/, 150_000);
    return p;
  };
  const first = await up();
  const key = (await readFile(path.join(dataDir, 'admin-key'), 'utf8')).trim();
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  expect((await fetch(`${api}/api/v1/pipelines`, { method: 'POST', headers, body: JSON.stringify(SPEC) })).status).toBe(
    201,
  );
  const { runId } = await (
    await fetch(`${api}/api/v1/pipelines/survivor/runs`, { method: 'POST', headers, body: '{}' })
  ).json();
  const rows = async (task: string) =>
    Number((await pgc.query('SELECT count(*)::int AS n FROM server_crash_log WHERE task = $1', [task])).rows[0].n);
  for (let i = 0; i < 300 && (await rows('a')) === 0; i++) await new Promise((r) => setTimeout(r, 100));
  expect(await rows('a')).toBe(1);

  // Mid-run (the nap is running), the dev server dies.
  process.kill(serverPid(first), 'SIGKILL');
  expect(await first.exited()).toBe(1);
  expect(first.output()).toMatch(
    /The Temporal dev server stopped \(SIGKILL\): stopping the stack\. Run npm start again to carry on/,
  );
  expect(await rows('b')).toBe(0);

  // Started again on the same folder: the run carries on from where it was.
  const second = await up();
  let st: any;
  for (let i = 0; i < 600; i++) {
    st = await (await fetch(`${api}/api/v1/runs/${encodeURIComponent(runId)}`, { headers })).json();
    if (st.status !== 'running' && st.status !== 'queued') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(st.status).toBe('success');
  expect(Object.fromEntries(Object.entries(st.tasks).map(([k, v]: [string, any]) => [k, v.status]))).toEqual({
    a: 'success',
    nap: 'success',
    b: 'success',
    c: 'success',
  });
  expect([await rows('a'), await rows('b'), await rows('c')]).toEqual([1, 1, 1]);
  second.child.kill('SIGINT');
  expect(await second.exited()).toBe(0);
  expect(second.output()).not.toContain('The Temporal dev server stopped');
}, 400_000);
