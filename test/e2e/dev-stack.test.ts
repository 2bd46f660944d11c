/** `npm start`: the whole local stack comes up, runs the example, and Ctrl-C stops it all. */
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect, inject, it } from 'vitest';
import { startProcess } from '../harness/processes.js';
import { freePort } from '../../workers/dev-server.js';

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });

it('starts server, UI, worker and the example run, and stops cleanly on SIGINT', async () => {
  const [port, uiPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const p = startProcess('workers/dev-stack.ts', [], {
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    TEMPORAL_UI_URL: `http://127.0.0.1:${uiPort}`,
    STRATA_DATA_DIR: path.join(inject('scratchDir'), 'devstack'),
    STRATA_TASK_QUEUE: 'devstack',
    STRATA_API_PORT: String(apiPort),
    STRATA_DEMO_ORDERS: '2000',
  });
  try {
    await p.waitForOutput(/The stack is up/, 150_000);
    expect(p.output()).toContain('run success');
    expect(p.output()).toMatch(
      /gold\.daily_revenue: [1-9]\d* rows \(v1\) -> file:\/\/.*\/gold\/default\/daily_revenue\//,
    );
    expect(p.output()).toMatch(/gold\.customer_360: [1-9]\d* rows/);
    expect(p.output()).toMatch(/bronze\.orders_quarantine: [1-9]\d* rows/);
    expect(p.output()).toContain(
      `Temporal UI: http://127.0.0.1:${uiPort}/namespaces/default/workflows/pipeline%2Fdefault%2Fshop_medallion%2F`,
    );
    const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
    expect(ui.status).toBe(200);
    // The API is up on the embedded metastore, and the example run is in its runs index.
    expect(p.output()).toContain(`HTTP API on http://127.0.0.1:${apiPort}`);
    const key = (await readFile(path.join(inject('scratchDir'), 'devstack', 'admin-key'), 'utf8')).trim();
    expect(p.output()).not.toContain(key);
    const runs = await (
      await fetch(`http://127.0.0.1:${apiPort}/api/v1/runs?pipeline=shop_medallion`, {
        headers: { authorization: `Bearer ${key}` },
      })
    ).json();
    expect(runs.data[0]).toMatchObject({ pipeline: 'shop_medallion', status: 'success', trigger: 'manual' });
    expect((await fetch(`http://127.0.0.1:${apiPort}/api/v1/runs`)).status).toBe(401);
    // the catalog through the API
    const auth = { headers: { authorization: `Bearer ${key}` } };
    const datasets = await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/datasets?layer=gold`, auth)).json();
    expect(datasets.data.map((d: { dataset?: string; name?: string }) => JSON.stringify(d))).toEqual(
      expect.arrayContaining([expect.stringContaining('daily_revenue')]),
    );
    const preview = await (
      await fetch(`http://127.0.0.1:${apiPort}/api/v1/datasets/gold.daily_revenue/preview?limit=3`, auth)
    ).json();
    expect(preview.rows.length).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${apiPort}/api/v1/datasets/gold.nothing`, auth)).status).toBe(404);
    // A trigger through the API goes through the outbox on the embedded metastore and runs.
    const post = (url: string, body: unknown) =>
      fetch(`http://127.0.0.1:${apiPort}${url}`, {
        method: 'POST',
        headers: { ...auth.headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect((await post('/api/v1/pipelines', { id: 'hello', tasks: [{ id: 'a', kind: 'noop' }] })).status).toBe(201);
    const t = await (await post('/api/v1/pipelines/hello/runs', {})).json();
    expect(t.status).toBe('queued');
    let status = '';
    for (let i = 0; i < 200 && status !== 'success'; i++) {
      status = (
        await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/runs/${encodeURIComponent(t.runId)}`, auth)).json()
      ).status;
      if (status !== 'success') await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe('success');
    expect(await portOpen(port)).toBe(true);
    p.child.kill('SIGINT');
    expect(await p.exited()).toBe(0);
    expect(p.output()).toContain('Stopped.');
    expect(await portOpen(port)).toBe(false);
    expect(await portOpen(uiPort)).toBe(false);
    expect(await portOpen(apiPort)).toBe(false);
  } finally {
    p.child.kill('SIGKILL');
  }
  // Longer than the stack's own start-up wait (150 s), so that a stack that never comes up fails
  // with its output, not with the runner's bare timeout; alone it takes about 30 s.
}, 240_000);
