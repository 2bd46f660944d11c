/** The HTTP API as a user drives it: real HTTP, worker, dev server and Postgres. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAnswer, stackApi } from '../harness/api.js';
import { waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

const BOOT = 'bootstrap-admin-key-for-tests-0123';
let stack: TestStack;
let base: string;
let close: () => Promise<void>;
const keys: Record<string, string> = {};

async function call(
  method: string,
  url: string,
  o: { key?: string; body?: unknown; yaml?: string; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...(o.key ? { authorization: `Bearer ${o.key}` } : {}), ...o.headers };
  let body: string | undefined;
  if (o.yaml !== undefined) {
    headers['content-type'] = 'application/yaml';
    body = o.yaml;
  } else if (o.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
  }
  const res = await readAnswer(await fetch(base + url, { method, headers, body }));
  return { ...res, type: res.headers.get('content-type') ?? '' };
}
const enc = encodeURIComponent;

const SPEC = `
id: orders
params: { region: eu }
tasks:
  - { id: extract, kind: noop }
  - { id: transform, kind: sql, needs: [extract], sql: "SELECT {{ params.region | literal }} AS region, DATE '{{ ds }}' AS day", output: "out/{{ ds }}.parquet" }
  - { id: load, kind: noop, needs: [transform] }
`;

beforeAll(async () => {
  stack = await testStack('api');
  // Runs triggered through the API start at once (the trigger dispatcher is on).
  const { app, base: url } = await stackApi(stack, {
    env: { STRATA_BOOTSTRAP_ADMIN_KEY: BOOT },
    dispatcher: undefined,
  });
  base = url;
  const stopWorker = await stack.startWorker();
  close = async () => {
    await app.close();
    await stopWorker();
  };
  for (const [name, tenant, role] of [
    ['acmeAdmin', 'acme', 'admin'],
    ['acmeOps', 'acme', 'operator'],
    ['acmeViewer', 'acme', 'viewer'],
    ['globex', 'globex', 'admin'],
  ] as const) {
    const r = await call('POST', '/api/v1/keys', { key: BOOT, body: { tenant, role, name } });
    expect(r.status).toBe(201);
    keys[name] = r.json.key;
  }
});
afterAll(async () => {
  await close?.();
  await stack?.close();
});

async function finished(runId: string, key = keys.acmeViewer) {
  let r: Awaited<ReturnType<typeof call>> | undefined;
  await waitFor(async () => {
    r = await call('GET', `/api/v1/runs/${enc(runId)}`, { key });
    return r.status === 200 && r.json.status !== 'running' && r.json.status !== 'queued';
  }, 60_000);
  return r!.json;
}

describe('HTTP API', () => {
  it('registers versioned pipelines, triggers, follows, lists and inspects runs', async () => {
    const reg = await call('POST', '/api/v1/pipelines', { key: keys.acmeAdmin, yaml: SPEC });
    expect(reg.status).toBe(201);
    expect(reg.json).toMatchObject({ pipelineId: 'orders', version: 1, created: true });
    const again = await call('POST', '/api/v1/pipelines', { key: keys.acmeAdmin, yaml: SPEC });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ version: 1, created: false });

    const t = await call('POST', '/api/v1/pipelines/orders/runs', {
      key: keys.acmeOps,
      body: { params: { region: 'us' }, logicalDate: '2026-05-06' },
    });
    expect(t.status).toBe(202);
    expect(t.json.runId).toMatch(/^pipeline\/acme\/orders\/api-/);
    expect(t.json.uiUrl).toContain(enc(t.json.runId));
    const run = await finished(t.json.runId);
    expect(run.status).toBe('success');
    expect(run.logicalDate).toBe('2026-05-06T00:00:00.000Z');
    expect(run.tasks.transform.output).toMatchObject({ rowCount: 1, location: 'out/2026-05-06.parquet' });

    expect((await call('GET', '/api/v1/runs?status=queued', { key: keys.acmeViewer })).status).toBe(200);
    const list = await call('GET', '/api/v1/runs?pipeline=orders&limit=10', { key: keys.acmeViewer });
    expect(list.json.data.map((r: { runId: string }) => r.runId)).toContain(t.json.runId);
    expect(list.json.data.find((r: { runId: string }) => r.runId === t.json.runId)).toMatchObject({
      status: 'success',
      version: 1,
      trigger: 'api',
    });

    const task = await call('GET', `/api/v1/runs/${enc(t.json.runId)}/tasks/transform`, { key: keys.acmeViewer });
    expect(task.json).toMatchObject({ status: 'success', attempts: 1 });
    expect((await call('GET', `/api/v1/runs/${enc(t.json.runId)}/tasks/nope`, { key: keys.acmeViewer })).status).toBe(
      404,
    );

    const svg = await call('GET', `/api/v1/runs/${enc(t.json.runId)}/graph?format=svg`, { key: keys.acmeViewer });
    expect(svg.type).toContain('image/svg+xml');
    expect(svg.text).toContain('data-task="transform" data-status="success"');
    const mermaid = await call('GET', `/api/v1/runs/${enc(t.json.runId)}/graph?format=mermaid`, {
      key: keys.acmeViewer,
    });
    expect(mermaid.text).toContain('extract --> transform');
    const dot = await call('GET', `/api/v1/runs/${enc(t.json.runId)}/graph?format=dot`, { key: keys.acmeViewer });
    expect(dot.text).toContain('"transform" -> "load"');
    const page = await call('GET', `/runs/${enc(t.json.runId)}`, { key: keys.acmeViewer });
    expect(page.text).toContain('open in the Temporal UI');

    // a new content is a new version, and runs can pick a version
    const v2 = await call('POST', '/api/v1/pipelines', {
      key: keys.acmeAdmin,
      body: { id: 'orders', tasks: [{ id: 'only', kind: 'noop' }] },
    });
    expect(v2.json).toMatchObject({ version: 2, created: true });
    const versions = await call('GET', '/api/v1/pipelines/orders/versions', { key: keys.acmeViewer });
    expect(versions.json.data.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    const old = await call('POST', '/api/v1/pipelines/orders/runs', { key: keys.acmeOps, body: { version: 1 } });
    expect((await finished(old.json.runId)).tasks).toHaveProperty('transform');
  });

  it('makes a retried trigger with the same Idempotency-Key return the same run', async () => {
    await call('POST', '/api/v1/pipelines', {
      key: keys.acmeAdmin,
      body: { id: 'idem', tasks: [{ id: 'a', kind: 'noop' }] },
    });
    const h = { 'idempotency-key': 'order-batch-42' };
    const [a, b] = await Promise.all([
      call('POST', '/api/v1/pipelines/idem/runs', { key: keys.acmeOps, body: {}, headers: h }),
      call('POST', '/api/v1/pipelines/idem/runs', { key: keys.acmeOps, body: {}, headers: h }),
    ]);
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(a.json.runId).toBe(b.json.runId);
    await finished(a.json.runId);
    const c = await call('POST', '/api/v1/pipelines/idem/runs', { key: keys.acmeOps, body: {}, headers: h });
    expect(c.json).toMatchObject({ runId: a.json.runId, existing: true });
    const list = await call('GET', '/api/v1/runs?pipeline=idem', { key: keys.acmeViewer });
    expect(list.json.data).toHaveLength(1);
  });

  it('cancels and repairs runs', async () => {
    await mkdir(path.join(stack.lakeRoot, 'acme'), { recursive: true });
    await writeFile(path.join(stack.lakeRoot, 'acme', 'x.csv'), 'a\n1\n');
    await call('POST', '/api/v1/pipelines', {
      key: keys.acmeAdmin,
      yaml: 'id: slow\ntasks:\n  - { id: nap, kind: wait, duration: 5m }\n',
    });
    const s = await call('POST', '/api/v1/pipelines/slow/runs', { key: keys.acmeOps, body: {} });
    const c = await call('POST', `/api/v1/runs/${enc(s.json.runId)}/cancel`, { key: keys.acmeOps });
    expect(c.status).toBe(202);
    expect((await finished(s.json.runId)).status).toBe('cancelled');
    await stack.client.workflow
      .getHandle(s.json.runId)
      .result()
      .catch(() => {}); // the workflow has closed too
    expect((await call('POST', `/api/v1/runs/${enc(s.json.runId)}/cancel`, { key: keys.acmeOps })).status).toBe(409);

    await call('POST', '/api/v1/pipelines', {
      key: keys.acmeAdmin,
      yaml: 'id: flaky\ntasks:\n  - { id: ok, kind: noop }\n  - { id: bad, kind: fail, needs: [ok] }\n',
    });
    const f = await call('POST', '/api/v1/pipelines/flaky/runs', { key: keys.acmeOps, body: {} });
    expect((await finished(f.json.runId)).status).toBe('failed');
    const rep = await call('POST', `/api/v1/runs/${enc(f.json.runId)}/repair`, { key: keys.acmeOps });
    expect(rep.status).toBe(202);
    const repaired = await finished(rep.json.runId);
    expect(repaired.tasks.ok).toMatchObject({ status: 'success', reusedFrom: f.json.runId });
    expect(repaired.trigger).toBe('repair');
    expect((await call('POST', `/api/v1/runs/${enc(f.json.runId)}/repair`, { key: keys.acmeViewer })).status).toBe(403);
  });

  it('keeps tenants apart: another tenant’s pipelines and runs are 404 on every endpoint', async () => {
    const t = await call('POST', '/api/v1/pipelines/orders/runs', { key: keys.acmeOps, body: { version: 2 } });
    await finished(t.json.runId);
    const run = enc(t.json.runId);
    const g = keys.globex;
    const probes: [string, string, unknown?][] = [
      ['GET', '/api/v1/pipelines/orders'],
      ['GET', '/api/v1/pipelines/orders/versions'],
      ['DELETE', '/api/v1/pipelines/orders'],
      ['POST', '/api/v1/pipelines/orders/runs', {}],
      ['GET', '/api/v1/pipelines/orders/schedules'],
      ['POST', '/api/v1/pipelines/orders/schedules', { id: 'x', cron: '0 * * * *' }],
      ['GET', `/api/v1/runs/${run}`],
      ['GET', `/api/v1/runs/${run}/tasks/only`],
      ['GET', `/api/v1/runs/${run}/tasks/only/logs`],
      ['GET', `/api/v1/runs/${run}/graph`],
      ['POST', `/api/v1/runs/${run}/cancel`],
      ['POST', `/api/v1/runs/${run}/repair`],
      ['GET', `/runs/${run}`],
    ];
    for (const [m, u, b] of probes) {
      const r = await call(m, u, { key: g, body: b });
      expect(r.status, `${m} ${u}`).toBe(404);
      expect(r.text).not.toContain('"spec"');
      expect(r.json.requestId).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect((await call('GET', '/api/v1/pipelines', { key: g })).json.data).toEqual([]);
    expect((await call('GET', '/api/v1/runs', { key: g })).json.data).toEqual([]);
    expect((await call('GET', '/api/v1/keys?tenant=acme', { key: g })).status).toBe(403);
    // a revoked key stops working at once
    const tmp = await call('POST', '/api/v1/keys', { key: keys.acmeAdmin, body: { role: 'viewer', name: 'temp' } });
    expect((await call('GET', '/api/v1/pipelines', { key: tmp.json.key })).status).toBe(200);
    const listed = await call('GET', '/api/v1/keys', { key: keys.acmeAdmin });
    expect(JSON.stringify(listed.json)).not.toContain(tmp.json.key);
    expect((await call('DELETE', `/api/v1/keys/${tmp.json.id}`, { key: keys.acmeAdmin })).status).toBe(204);
    expect((await call('GET', '/api/v1/pipelines', { key: tmp.json.key })).status).toBe(401);
  });

  it('answers bad requests with a 4xx that names the problem, and writes nothing', async () => {
    const before = (await call('GET', '/api/v1/pipelines', { key: keys.acmeViewer })).json.data.length;
    const cases: [string, string, { key?: string; body?: unknown; yaml?: string }, number, RegExp][] = [
      ['GET', '/api/v1/pipelines', {}, 401, /Authorization: Bearer/],
      ['GET', '/api/v1/pipelines', { key: 'nope-nope-nope' }, 401, /unknown or revoked/],
      ['POST', '/api/v1/pipelines', { key: keys.acmeViewer, yaml: SPEC }, 403, /needs the admin role/],
      [
        'POST',
        '/api/v1/pipelines',
        {
          key: keys.acmeAdmin,
          yaml: 'id: bad\ntasks:\n  - { id: a, kind: nope }\n  - { id: b, kind: noop, needs: [zz] }\n',
        },
        400,
        /2 problem.*unknown kind "nope".*unknown task "zz"/,
      ],
      ['POST', '/api/v1/pipelines', { key: keys.acmeAdmin, yaml: 'id: [unclosed' }, 400, /not valid YAML/],
      ['POST', '/api/v1/pipelines', { key: keys.acmeAdmin, body: '{"id": "x", ' }, 400, /JSON/i],
      [
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.acmeOps, body: { parms: {} } },
        400,
        /body: unknown field\(s\) "parms"/,
      ],
      [
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.acmeOps, body: { params: { nope: 1 } } },
        400,
        /unknown param "nope"/,
      ],
      [
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.acmeOps, body: { only: ['ghost'] } },
        400,
        /unknown task "ghost"/,
      ],
      [
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.acmeOps, body: { logicalDate: 'yesterday' } },
        400,
        /logicalDate: write an ISO date/,
      ],
      ['POST', '/api/v1/pipelines/missing/runs', { key: keys.acmeOps, body: {} }, 404, /no pipeline missing/],
      ['POST', '/api/v1/pipelines/orders/runs', { key: keys.acmeOps, body: { version: 99 } }, 404, /has no version 99/],
      ['GET', `/api/v1/runs/${enc('pipeline/acme/orders/nope')}`, { key: keys.acmeViewer }, 404, /no run/],
      ['GET', '/api/v1/runs?limit=0', { key: keys.acmeViewer }, 400, /query.limit/],
      ['GET', '/api/v1/runs?cursor=garbage', { key: keys.acmeViewer }, 400, /cursor/],
      [
        'POST',
        '/api/v1/pipelines/orders/schedules',
        { key: keys.acmeAdmin, body: { id: 'bad', cron: '61 * * * *' } },
        400,
        /not a valid cron expression/,
      ],
      [
        'POST',
        '/api/v1/pipelines/orders/schedules',
        { key: keys.acmeAdmin, body: { id: 'bad', cron: '0 * * *' } },
        400,
        /has 4 fields: write 5/,
      ],
      [
        'POST',
        '/api/v1/pipelines/orders/schedules',
        { key: keys.acmeAdmin, body: { id: 'bad', cron: '0 * * * *', timezone: 'Mars/Olympus' } },
        400,
        /unknown time zone "Mars\/Olympus"/,
      ],
      [
        'POST',
        '/api/v1/pipelines/orders/schedules',
        { key: keys.acmeAdmin, body: { id: 'Bad Id', cron: '0 * * * *' } },
        400,
        /body.id/,
      ],
      ['GET', '/api/v1/pipelines/orders/schedules/none', { key: keys.acmeViewer }, 404, /no schedule "none"/],
      [
        'POST',
        '/api/v1/transform',
        { key: keys.acmeOps, body: { sql: 'SELECT 1', engine: 'postgres' } },
        400,
        /needs a named connection/,
      ],
      ['POST', '/api/v1/reconciliations', { key: keys.acmeOps, body: { left: 'a.csv' } }, 400, /right/],
      ['GET', '/api/v1/reconciliations/reconcile%2Fglobex%2Fx', { key: keys.acmeViewer }, 404, /no reconciliation/],
      [
        'POST',
        '/api/v1/keys',
        { key: keys.acmeAdmin, body: { tenant: 'globex', role: 'admin' } },
        403,
        /own tenant only/,
      ],
      ['GET', '/api/v1/nothing-here', { key: keys.acmeViewer }, 404, /no route/],
    ];
    for (const [m, u, o, status, re] of cases) {
      const r = await call(m, u, o);
      expect(r.status, `${m} ${u} → ${r.text}`).toBe(status);
      expect(r.json?.error ?? r.text, `${m} ${u}`).toMatch(re);
    }
    expect((await call('GET', '/api/v1/pipelines', { key: keys.acmeViewer })).json.data.length).toBe(before);
  });

  it('serves health, readiness, metrics, the OpenAPI docs, transform and reconciliations', async () => {
    expect((await call('GET', '/health')).json).toEqual({ ok: true });
    expect((await call('GET', '/ready')).json).toMatchObject({ ok: true, checks: { metastore: 'ok', temporal: 'ok' } });
    const metrics = await call('GET', '/metrics');
    expect(metrics.text).toMatch(/strata_runs_started_total\{trigger="api"\} \d+/);
    expect(metrics.text).toMatch(/strata_runs\{status="success"\} \d+/);
    expect(metrics.text).toMatch(/strata_triggers_queued\{measure="count"\} \d+/);
    const doc = await call('GET', '/docs/json');
    expect(Object.keys(doc.json.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/pipelines',
        '/api/v1/pipelines/{id}/runs',
        '/api/v1/runs/{run}',
        '/api/v1/reconciliations',
      ]),
    );
    expect(doc.json.paths['/api/v1/pipelines/{id}/runs'].post.requestBody).toBeDefined();
    expect((await call('GET', '/docs')).status).toBeLessThan(400);

    const t = await call('POST', '/api/v1/transform', {
      key: keys.acmeOps,
      body: { sql: 'SELECT 42 AS answer', output: 'adhoc/answer.parquet' },
    });
    expect(t.status).toBe(202);
    expect((await finished(t.json.runId)).tasks.transform.output).toMatchObject({ rowCount: 1 });

    await mkdir(path.join(stack.lakeRoot, 'acme'), { recursive: true });
    await writeFile(path.join(stack.lakeRoot, 'acme', 'l.csv'), 'id,v\n1,a\n2,b\n3,c\n');
    await writeFile(path.join(stack.lakeRoot, 'acme', 'r.csv'), 'id,v\n1,a\n2,B\n4,d\n');
    const rc = await call('POST', '/api/v1/reconciliations', {
      key: keys.acmeOps,
      body: { left: 'l.csv', right: 'r.csv', options: { key: ['id'] } },
    });
    expect(rc.status).toBe(202);
    let res: any;
    await waitFor(async () => {
      res = (await call('GET', `/api/v1/reconciliations/${enc(rc.json.id)}`, { key: keys.acmeViewer })).json;
      return res.status === 'completed';
    });
    expect(res.result.counts).toEqual({ left: 3, right: 3, matched: 1, changed: 1, onlyLeft: 1, onlyRight: 1 });
    // the result is kept in the metastore too
    const stored = await stack.db.query<{ tenant: string; differences: string; result: { counts: unknown } }>(
      'SELECT tenant, differences, result FROM reconciliations WHERE id = $1',
      [rc.json.id],
    );
    expect(stored.rows[0]).toMatchObject({ tenant: 'acme', differences: '3', result: { counts: res.result.counts } });
    expect((await call('GET', `/api/v1/reconciliations/${enc(rc.json.id)}`, { key: keys.globex })).status).toBe(404);
  });

  it('schedules runs as Temporal Schedules: preview, trigger, backfill, pause, and a real cron fire', async () => {
    const yaml =
      'id: nightly\ntasks:\n  - id: stamp\n    kind: sql\n    sql: "SELECT DATE \'{{ ds }}\' AS d"\n    output: "stamps/{{ logical_date }}.parquet"\n';
    await call('POST', '/api/v1/pipelines', { key: keys.acmeAdmin, yaml });
    const every = await call('POST', '/api/v1/pipelines/nightly/schedules', {
      key: keys.acmeAdmin,
      body: { id: 'every-minute', cron: '* * * * *', overlap: 'allow_all' },
    });
    expect(every.status).toBe(201);
    const hourly = await call('POST', '/api/v1/pipelines/nightly/schedules', {
      key: keys.acmeAdmin,
      body: { id: 'hourly', cron: '0 * * * *', timezone: 'Asia/Kolkata', paused: true },
    });
    expect(hourly.status).toBe(201);
    // Kolkata is UTC+5:30: an hourly cron there fires at :30 UTC
    expect(hourly.json.nextFires).toHaveLength(5);
    for (const f of hourly.json.nextFires) expect(f).toMatch(/T\d\d:30:00\.000Z$/);
    const preview = await call('GET', '/api/v1/pipelines/nightly/schedules/hourly?next=3', { key: keys.acmeViewer });
    expect(preview.json.nextFires).toEqual(hourly.json.nextFires.slice(0, 3));
    expect(preview.json.paused).toBe(true);
    expect(
      (
        await call('POST', '/api/v1/pipelines/nightly/schedules', {
          key: keys.acmeAdmin,
          body: { id: 'hourly', cron: '0 * * * *' },
        })
      ).status,
    ).toBe(409);

    const bf = await call('POST', '/api/v1/pipelines/nightly/schedules/hourly/backfill', {
      key: keys.acmeOps,
      body: { from: '2026-01-01T00:00:00Z', to: '2026-01-01T03:00:00Z' },
    });
    expect(bf.status).toBe(202);
    expect(bf.json.logicalDates).toEqual([
      '2026-01-01T00:30:00.000Z',
      '2026-01-01T01:30:00.000Z',
      '2026-01-01T02:30:00.000Z',
    ]);
    let backfilled: any[] = [];
    await waitFor(async () => {
      const l = await call('GET', '/api/v1/runs?pipeline=nightly&limit=50', { key: keys.acmeViewer });
      backfilled = l.json.data.filter(
        (r: any) =>
          r.trigger === 'schedule' && r.status === 'success' && String(r.logicalDate).startsWith('2026-01-01'),
      );
      return backfilled.length === 3;
    }, 60_000);
    expect(backfilled.map((r) => new Date(r.logicalDate).toISOString()).sort()).toEqual(bf.json.logicalDates);

    const patched = await call('PATCH', '/api/v1/pipelines/nightly/schedules/hourly', {
      key: keys.acmeAdmin,
      body: { cron: '15 6 * * *' },
    });
    expect(patched.status).toBe(200);
    expect(patched.json.nextFires[0]).toMatch(/T00:45:00\.000Z$/); // 06:15 in Kolkata
    expect(
      (await call('POST', '/api/v1/pipelines/nightly/schedules/hourly/unpause', { key: keys.acmeOps })).json.paused,
    ).toBe(false);
    expect(
      (await call('POST', '/api/v1/pipelines/nightly/schedules/hourly/pause', { key: keys.acmeOps })).json.paused,
    ).toBe(true);

    const trig = await call('POST', '/api/v1/pipelines/nightly/schedules/hourly/trigger', { key: keys.acmeOps });
    expect(trig.status).toBe(202);

    // The every-minute cron fires on its own at a minute's turn (Temporal's scheduler may start
    // it late on a machine loaded by the whole suite: a fire counts for up to two minutes more).
    await waitFor(async () => {
      const s = await call('GET', '/api/v1/pipelines/nightly/schedules/every-minute', { key: keys.acmeViewer });
      return s.json.recentRuns.length > 0;
    }, 180_000);
    const fired = (await call('GET', '/api/v1/pipelines/nightly/schedules/every-minute', { key: keys.acmeViewer })).json
      .recentRuns[0];
    expect(fired.scheduledAt).toMatch(/:00\.000Z$/);
    const st = await finished(fired.workflowId);
    expect(st.trigger).toBe('schedule');
    expect(st.logicalDate).toBe(fired.scheduledAt);

    // Deleting a pipeline with schedules needs force, and takes its schedules with it.
    expect((await call('DELETE', '/api/v1/pipelines/nightly', { key: keys.acmeAdmin })).status).toBe(409);
    expect((await call('DELETE', '/api/v1/pipelines/nightly?force=true', { key: keys.acmeAdmin })).status).toBe(204);
    const gone = await stack.client.schedule
      .getHandle('schedule/acme/nightly/every-minute')
      .describe()
      .catch((e) => e);
    expect(gone).toBeInstanceOf(Error);
  }, 360_000);
});
