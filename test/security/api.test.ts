/**
 * The API surface under hostile requests: raw HTTP (no client-side URL normalising) against
 * buildApi on the harness's Postgres and Temporal. Two tenants whose names share a prefix
 * (`t…` and `t…-evil`) with every role, plus a tenant named `constructor`. Every refused
 * request must answer its status with a message saying what to change, carry a request id,
 * and leave the metastore exactly as it was.
 */
import { AirbyteClient } from '../../activities/airbyte/client.js';
import type { FastifyInstance } from 'fastify';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { idTenant } from '../../api/auth.js';
import type { ApiLog } from '../../api/errors.js';
import { PARAM_LIMITS } from '../../schemas/params.js';
import { LIMITS } from '../../schemas/limits.js';
import { SA_TENANT } from '../../schemas/workflow-ids.js';
import { loadConfig } from '../../schemas/config.js';
import { openDb } from '../../store/db.js';
import { testStack, type TestStack } from '../harness/temporal.js';

const BOOT = 'bootstrap-admin-key-for-security-0123';
let stack: TestStack;
let app: FastifyInstance;
let base: URL;
let A: string; // tenant
let B: string; // `${A}-evil`: A's name is a prefix of B's
const C = 'constructor'; // a legal tenant name that is also a property of every object
const keys: Record<string, string> = {};
const logs: Parameters<ApiLog>[0][] = [];
const started: string[] = []; // workflows this file starts (terminated at the end)
let runA: string; // a queued run of A (the dispatcher is off: it stays in the outbox)
let recA: string; // a reconciliation of A
let keyIdA: string;

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

/** One request, the path sent byte for byte as given (fetch would normalise `//`, `..` and case). */
function raw(
  method: string,
  path: string,
  o: { key?: string; auth?: string; body?: string | Buffer; type?: string; at?: URL } = {},
): Promise<Res> {
  const at = o.at ?? base;
  const headers: Record<string, string> = {};
  if (o.key) headers.authorization = `Bearer ${o.key}`;
  if (o.auth !== undefined) headers.authorization = o.auth;
  if (o.type) headers['content-type'] = o.type;
  if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
  return new Promise((resolve, reject) => {
    const req = http.request({ host: at.hostname, port: at.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}
const json = (method: string, path: string, key: string | undefined, body?: unknown) =>
  raw(method, path, {
    key,
    body: body === undefined ? undefined : JSON.stringify(body),
    type: body === undefined ? undefined : 'application/json',
  });
const enc = encodeURIComponent;

/** Everything the API could write for this file's tenants, as one comparable string. */
async function snapshot(): Promise<string> {
  const tenants = [A, B, C];
  const out: string[] = [];
  for (const [table, col] of [
    ['tenants', 'id'],
    ['api_keys', 'tenant'],
    ['pipelines', 'tenant'],
    ['pipeline_versions', 'tenant'],
    ['schedules', 'tenant'],
    ['run_triggers', 'tenant'],
    ['runs', 'tenant'],
  ] as const) {
    const r = await stack.db.query<{ h: string; n: number }>(
      `SELECT count(*)::int AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h FROM ${table} t WHERE ${col} = ANY($1)`,
      [tenants],
    );
    out.push(`${table}:${r.rows[0].n}:${r.rows[0].h}`);
  }
  return out.join(' ');
}

const SPEC = {
  id: 'orders',
  params: { region: 'eu' },
  tasks: [
    { id: 'extract', kind: 'noop' },
    { id: 'load', kind: 'noop', needs: ['extract'] },
  ],
};

beforeAll(async () => {
  stack = await testStack('security-api');
  A = stack.tenant;
  B = `${A}-evil`;
  const config = loadConfig({
    STRATA_TASK_QUEUE: stack.taskQueue,
    STRATA_BOOTSTRAP_ADMIN_KEY: BOOT,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
  });
  // Airbyte is "configured" at an address nothing answers: a tenant without a workspace must never reach it.
  const airbyte = new AirbyteClient({ baseUrl: 'http://127.0.0.1:9', clientId: 'x', clientSecret: 'y' });
  ({ app } = await buildApi({
    db: stack.db,
    client: stack.client,
    config,
    dispatcher: false,
    airbyte,
    log: (e) => logs.push(e),
  }));
  base = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  for (const [tenant, t] of [
    [A, 'A'],
    [B, 'B'],
    [C, 'C'],
  ] as const)
    for (const role of ['admin', 'operator', 'viewer'] as const) {
      const r = await json('POST', '/api/v1/keys', BOOT, { tenant, role, name: `${t}-${role}` });
      expect(r.status, r.text).toBe(201);
      keys[`${t}${role}`] = r.json.key;
      if (t === 'A' && role === 'viewer') keyIdA = r.json.id;
    }
  expect((await json('POST', '/api/v1/pipelines', keys.Aadmin, SPEC)).status).toBe(201);
  expect((await json('POST', '/api/v1/pipelines', keys.Badmin, SPEC)).status).toBe(201);
  expect(
    (
      await json('POST', '/api/v1/pipelines/orders/schedules', keys.Aadmin, {
        id: 'nightly',
        cron: '0 2 * * *',
        paused: true,
      })
    ).status,
  ).toBe(201);
  started.push(`schedule:schedule/${A}/orders/nightly`);
  const t = await json('POST', '/api/v1/pipelines/orders/runs', keys.Aoperator, { logicalDate: '2026-05-06' });
  expect(t.status).toBe(202);
  runA = t.json.runId;
  const rc = await json('POST', '/api/v1/reconciliations', keys.Aoperator, { left: 'l.csv', right: 'r.csv' });
  expect(rc.status).toBe(202);
  recA = rc.json.id;
  started.push(recA);
});

afterAll(async () => {
  for (const id of started)
    if (id.startsWith('schedule:'))
      await stack.client.schedule
        .getHandle(id.slice(9))
        .delete()
        .catch(() => undefined);
    else
      await stack.client.workflow
        .getHandle(id)
        .terminate('test over')
        .catch(() => undefined);
  await app?.close();
  await stack?.close();
});

type Case = [
  name: string,
  method: string,
  path: string,
  o: { key?: string; auth?: string; body?: string | Buffer; type?: string; json?: unknown },
  status: number,
  error: RegExp,
];

/** Runs a table of refused requests: status, a message saying what to change, a request id, nothing written. */
async function refuse(cases: Case[]) {
  const before = await snapshot();
  for (const [name, method, path, o, status, error] of cases) {
    const r = o.json !== undefined ? await json(method, path, o.key, o.json) : await raw(method, path, o);
    expect(r.status, `${name}: ${method} ${path.slice(0, 120)} → ${r.text.slice(0, 300)}`).toBe(status);
    expect(r.json?.error, `${name}: error message`).toMatch(error);
    expect(String(r.headers['x-request-id']), `${name}: x-request-id ${r.text}`).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.json.requestId, `${name}: requestId`).toBe(r.headers['x-request-id']);
    expect(r.text, `${name}: no internal text`).not.toMatch(/call stack|at [A-Za-z.]+ \(|node_modules|postgres|pool/i);
  }
  expect(await snapshot(), 'nothing written').toBe(before);
}

describe('authentication is decided on the matched route', () => {
  it('refuses every spelling of a protected path without a key, and 404s unknown paths without asking for one', async () => {
    await refuse([
      ['no key', 'GET', '/api/v1/pipelines', {}, 401, /Authorization: Bearer/],
      ['percent-encoded prefix', 'GET', '/%61pi/v1/pipelines', {}, 401, /Authorization: Bearer/],
      ['percent-encoded run page', 'GET', `/%72uns/${enc(runA)}`, {}, 401, /Authorization: Bearer/],
      ['query naming a public route', 'GET', '/api/v1/pipelines?x=/health', {}, 401, /Authorization: Bearer/],
      ['query with a traversal', 'GET', '/api/v1/pipelines?/../health', {}, 401, /Authorization: Bearer/],
      ['encoded run id traversal', 'GET', `/api/v1/runs/..%2F..%2Fhealth`, {}, 401, /Authorization: Bearer/],
      ['double slash', 'GET', '//api/v1/pipelines', {}, 404, /no route/],
      ['upper case', 'GET', '/API/v1/pipelines', {}, 404, /no route/],
      ['dot segments', 'GET', '/api/../api/v1/pipelines', {}, 404, /no route/],
      ['dot segments to a public route', 'GET', '/api/v1/../../health', {}, 404, /no route/],
      ['trailing slash (the :id route, empty id)', 'GET', '/api/v1/pipelines/', {}, 401, /Authorization: Bearer/],
      ['matrix parameter', 'GET', '/api/v1/pipelines;/health', {}, 404, /no route/],
      ['unknown /api path', 'GET', '/api/v1/nothing-here', {}, 404, /no route GET \/api\/v1\/nothing-here/],
      ['docs static traversal', 'GET', '/docs/static/..%2F..%2F..%2Fpackage.json', {}, 404, /./],
      ['empty bearer', 'GET', '/api/v1/pipelines', { auth: 'Bearer ' }, 401, /unknown or revoked|Bearer/],
      ['lower-case scheme', 'GET', '/api/v1/pipelines', { auth: `bearer ${BOOT}` }, 401, /Authorization: Bearer/],
      [
        'basic auth',
        'GET',
        '/api/v1/pipelines',
        { auth: `Basic ${Buffer.from('a:b').toString('base64')}` },
        401,
        /Authorization: Bearer/,
      ],
      [
        'bad percent-encoding',
        'GET',
        '/api/v1/pipelines/%E0%A4%A',
        { key: keys.Aviewer },
        400,
        /the URL is not valid: check its percent-encoding/,
      ],
    ]);
    // HEAD (no body to carry a message) is the GET route's twin: it needs a key too.
    const head = await raw('HEAD', '/api/v1/pipelines');
    expect(head.status).toBe(401);
    expect((await raw('HEAD', '/api/v1/pipelines', { key: keys.Aviewer })).status).toBe(200);
    // The public routes stay public; the docs do not list anything a key would show.
    for (const p of ['/health', '/ready', '/metrics', '/docs/json']) expect((await raw('GET', p)).status, p).toBe(200);
    expect((await raw('GET', '/health?/api/v1/pipelines')).status).toBe(200);
    const docs = await raw('GET', '/docs/json');
    expect(docs.text).not.toContain(A);
    // The matched route decides: with a key the encoded spelling is the same route.
    const enc61 = await raw('GET', '/%61pi/v1/pipelines', { key: keys.Aviewer });
    expect(enc61.status).toBe(200);
    expect(enc61.json.data.map((p: { id: string }) => p.id)).toEqual(['orders']);
  });
});

describe('prototype keys reach no object prototype', () => {
  it('answers __proto__, constructor and toString as ids, task names, params and tenants like any unknown name', async () => {
    const run = enc(runA);
    const cases: Case[] = [];
    for (const id of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      cases.push(
        [
          `pipeline ${id}`,
          'GET',
          `/api/v1/pipelines/${id}`,
          { key: keys.Aviewer },
          404,
          new RegExp(`no pipeline ${id}`),
        ],
        [
          `pipeline ${id} versions`,
          'GET',
          `/api/v1/pipelines/${id}/versions`,
          { key: keys.Aviewer },
          404,
          /no pipeline/,
        ],
        [
          `trigger ${id}`,
          'POST',
          `/api/v1/pipelines/${id}/runs`,
          { key: keys.Aoperator, json: {} },
          404,
          /no pipeline/,
        ],
        [
          `task ${id}`,
          'GET',
          `/api/v1/runs/${run}/tasks/${id}`,
          { key: keys.Aviewer },
          404,
          new RegExp(`has no task ${id}: it has extract, load`),
        ],
        [
          `task ${id} logs`,
          'GET',
          `/api/v1/runs/${run}/tasks/${id}/logs`,
          { key: keys.Aviewer },
          404,
          new RegExp(`has no task ${id}`),
        ],
        [
          `schedule ${id}`,
          'GET',
          `/api/v1/pipelines/orders/schedules/${id}`,
          { key: keys.Aviewer },
          404,
          /no schedule/,
        ],
        [`run ${id}`, 'GET', `/api/v1/runs/${id}`, { key: keys.Aviewer }, 404, /no run/],
        [
          `reconciliation ${id}`,
          'GET',
          `/api/v1/reconciliations/${id}`,
          { key: keys.Aviewer },
          404,
          /no reconciliation/,
        ],
        [`cluster ${id}`, 'GET', `/api/v1/clusters/${id}`, { key: keys.Aviewer }, 404, /no cluster/],
        [`key ${id}`, 'DELETE', `/api/v1/keys/${id}`, { key: keys.Aadmin }, 404, /no active key/],
        [`dataset ${id}`, 'GET', `/api/v1/datasets/${id}`, { key: keys.Aviewer }, 503, /no lake configured/],
      );
      if (id !== '__proto__')
        cases.push([
          `param ${id}`,
          'POST',
          '/api/v1/pipelines/orders/runs',
          { key: keys.Aoperator, json: { params: { [id]: 'x' } } },
          400,
          new RegExp(`unknown param "${id}"`),
        ]);
    }
    cases.push(
      [
        '__proto__ key in a JSON body',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '{"params":{"__proto__":{"region":"x"}}}', type: 'application/json' },
        400,
        /reserved key "__proto__"/,
      ],
      [
        'constructor.prototype in a JSON body',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '{"params":{"constructor":{"prototype":{"x":1}}}}', type: 'application/json' },
        400,
        /reserved key/,
      ],
      [
        '__proto__ as a keys tenant',
        'GET',
        '/api/v1/keys?tenant=__proto__',
        { key: keys.Aadmin },
        403,
        /own tenant only/,
      ],
      // The tenant named "constructor": its tier and Airbyte workspace are its own (none), not Object's.
      [
        'constructor tenant over the free tier',
        'POST',
        '/api/v1/clusters',
        { key: keys.Coperator, json: { name: 'big', instances: 1000 } },
        403,
        /over the free tier of tenant constructor/,
      ],
      [
        'constructor tenant has no Airbyte workspace',
        'GET',
        '/api/v1/ingestion/sources',
        { key: keys.Cviewer },
        409,
        /tenant constructor has no Airbyte workspace/,
      ],
    );
    await refuse(cases);
    const tier = await json('GET', '/api/v1/clusters', keys.Cviewer);
    expect(tier.status).toBe(200);
    expect(tier.json.tier).toEqual({ name: 'free', maxCores: 8, maxMemoryGi: 32, maxInstances: 4, maxClusters: 1 });
  });
});

describe('malformed values are 400s that say what to change', () => {
  it('refuses bad versions, dates, cursors, repeated and control-character parameters', async () => {
    const cursor = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    await refuse([
      [
        'huge version',
        'GET',
        '/api/v1/pipelines/orders?version=99999999999999999999',
        { key: keys.Aviewer },
        400,
        /version is at most 2147483647/,
      ],
      [
        'version one over int',
        'GET',
        '/api/v1/pipelines/orders?version=2147483648',
        { key: keys.Aviewer },
        400,
        /at most 2147483647/,
      ],
      ['version 0', 'GET', '/api/v1/pipelines/orders?version=0', { key: keys.Aviewer }, 400, /positive whole number/],
      ['version -1', 'GET', '/api/v1/pipelines/orders?version=-1', { key: keys.Aviewer }, 400, /positive whole number/],
      [
        'version 1e3',
        'GET',
        '/api/v1/pipelines/orders?version=1e3',
        { key: keys.Aviewer },
        400,
        /positive whole number/,
      ],
      [
        'version 1.5',
        'GET',
        '/api/v1/pipelines/orders?version=1.5',
        { key: keys.Aviewer },
        400,
        /positive whole number/,
      ],
      [
        'unknown query',
        'GET',
        '/api/v1/pipelines/orders?verison=1',
        { key: keys.Aviewer },
        400,
        /unknown field\(s\) "verison"/,
      ],
      [
        'huge version in a body',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, json: { version: 1e20 } },
        400,
        /body.version: a pipeline version is at most/,
      ],
      [
        'repeated query',
        'GET',
        '/api/v1/pipelines/orders?version=1&version=2',
        { key: keys.Aviewer },
        400,
        /query parameter version is given 2 times: give it once/,
      ],
      [
        'repeated status',
        'GET',
        '/api/v1/runs?status=queued&status=failed',
        { key: keys.Aviewer },
        400,
        /given 2 times/,
      ],
      [
        'NUL in a path id',
        'GET',
        '/api/v1/pipelines/%00',
        { key: keys.Aviewer },
        400,
        /path parameter id holds a control character/,
      ],
      [
        'NUL in a run id',
        'GET',
        `/api/v1/runs/${enc(`pipeline/${A}/x/`)}%00`,
        { key: keys.Aviewer },
        400,
        /control character/,
      ],
      [
        'NUL in a query',
        'GET',
        '/api/v1/runs?pipeline=a%00b',
        { key: keys.Aviewer },
        400,
        /query parameter pipeline holds a control character/,
      ],
      ['since not a date', 'GET', '/api/v1/runs?since=1', { key: keys.Aviewer }, 400, /query.since: write an ISO date/],
      [
        'since 30 February',
        'GET',
        '/api/v1/runs?since=2026-02-30',
        { key: keys.Aviewer },
        400,
        /there is no day 2026-02-30/,
      ],
      ['since year 0', 'GET', '/api/v1/runs?since=0000-01-01', { key: keys.Aviewer }, 400, /there is no day/],
      [
        'since hour 25',
        'GET',
        '/api/v1/runs?since=2026-01-01T25:00:00Z',
        { key: keys.Aviewer },
        400,
        /write an ISO date/,
      ],
      [
        'since far future',
        'GET',
        '/api/v1/runs?since=%2B275760-09-13',
        { key: keys.Aviewer },
        400,
        /write an ISO date/,
      ],
      ['limit 0', 'GET', '/api/v1/runs?limit=0', { key: keys.Aviewer }, 400, /query.limit/],
      ['limit huge', 'GET', '/api/v1/runs?limit=1e9', { key: keys.Aviewer }, 400, /query.limit/],
      ['limit text', 'GET', '/api/v1/runs?limit=abc', { key: keys.Aviewer }, 400, /query.limit/],
      ['cursor garbage', 'GET', '/api/v1/runs?cursor=garbage', { key: keys.Aviewer }, 400, /pass the "next" value/],
      [
        'cursor a number',
        'GET',
        `/api/v1/runs?cursor=${cursor(1)}`,
        { key: keys.Aviewer },
        400,
        /pass the "next" value/,
      ],
      [
        'cursor with a bad date',
        'GET',
        `/api/v1/runs?cursor=${cursor({ startedAt: 'x', runId: 'y' })}`,
        { key: keys.Aviewer },
        400,
        /pass the "next" value/,
      ],
      [
        'cursor with 30 February',
        'GET',
        `/api/v1/runs?cursor=${cursor({ startedAt: '2026-02-30T00:00:00Z', runId: 'y' })}`,
        { key: keys.Aviewer },
        400,
        /pass the "next" value/,
      ],
      [
        'cursor with extra fields',
        'GET',
        `/api/v1/runs?cursor=${cursor({ startedAt: '2026-01-01T00:00:00Z', runId: 'y', tenant: B })}`,
        { key: keys.Aviewer },
        400,
        /pass the "next" value/,
      ],
      [
        'logicalDate 13th month',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, json: { logicalDate: '2026-13-01' } },
        400,
        /body.logicalDate: write an ISO date.*no day 2026-13-01/,
      ],
      [
        'logicalDate year 0',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, json: { logicalDate: '0000-06-01' } },
        400,
        /body.logicalDate/,
      ],
      [
        'logicalDate far future',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, json: { logicalDate: '+275760-09-13T00:00:00Z' } },
        400,
        /body.logicalDate/,
      ],
      [
        'backfill 30 February',
        'POST',
        '/api/v1/pipelines/orders/schedules/nightly/backfill',
        { key: keys.Aoperator, json: { from: '2026-02-30', to: '2026-03-05' } },
        400,
        /body.from: .*no day 2026-02-30/,
      ],
      [
        'schedule startAt bad',
        'PATCH',
        '/api/v1/pipelines/orders/schedules/nightly',
        { key: keys.Aadmin, json: { startAt: '2026-04-31' } },
        400,
        /body.startAt/,
      ],
      [
        'next huge',
        'GET',
        '/api/v1/pipelines/orders/schedules/nightly?next=1e400',
        { key: keys.Aviewer },
        400,
        /next must be a whole number from 1 to 100/,
      ],
      [
        'graph format',
        'GET',
        `/api/v1/runs/${enc(runA)}/graph?format=png`,
        { key: keys.Aviewer },
        400,
        /format must be svg, mermaid or dot/,
      ],
      [
        'logs tail',
        'GET',
        `/api/v1/runs/${enc(runA)}/tasks/load/logs?tail=-1`,
        { key: keys.Aviewer },
        400,
        /tail is a number of lines/,
      ],
    ]);
  });

  it('refuses deep, non-object, empty, broken and wrongly typed bodies', async () => {
    const deep = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    const deepSpec = (n: number) => `{"id":"deep","tasks":[{"id":"a","kind":"noop","x":${deep(n)}}]}`;
    await refuse([
      [
        'deep body',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: `{"params":${deep(100_000)}}`, type: 'application/json' },
        400,
        /body nests deeper than 64 levels.*flatten it/,
      ],
      [
        'deep JSON spec',
        'POST',
        '/api/v1/pipelines',
        { key: keys.Aadmin, body: deepSpec(20_000), type: 'application/json' },
        400,
        /nests deeper than 64 levels/,
      ],
      [
        'deep array body',
        'POST',
        '/api/v1/reconciliations',
        { key: keys.Aoperator, body: `{"left":${'['.repeat(20_000)}${']'.repeat(20_000)}}`, type: 'application/json' },
        400,
        /nests deeper than 64/,
      ],
      [
        'deep YAML spec',
        'POST',
        '/api/v1/pipelines',
        {
          key: keys.Aadmin,
          body: `id: deep\ntasks: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`,
          type: 'application/yaml',
        },
        400,
        /nests deeper than the parser follows: at most 64 levels/,
      ],
      [
        'array body',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '[]', type: 'application/json' },
        400,
        /JSON body must be an object \(\{…\}\), not an array/,
      ],
      [
        'number body',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '1', type: 'application/json' },
        400,
        /not a number/,
      ],
      [
        'string body',
        'POST',
        '/api/v1/keys',
        { key: keys.Aadmin, body: '"admin"', type: 'application/json' },
        400,
        /not a string/,
      ],
      [
        'null body',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: 'null', type: 'application/json' },
        400,
        /not null/,
      ],
      [
        'null spec',
        'POST',
        '/api/v1/pipelines',
        { key: keys.Aadmin, body: 'null', type: 'application/json' },
        400,
        /not null/,
      ],
      [
        'empty JSON',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '', type: 'application/json' },
        400,
        /body is empty but content-type says JSON/,
      ],
      [
        'broken JSON',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '{"params":', type: 'application/json' },
        400,
        /not valid JSON/,
      ],
      [
        'NUL in a JSON string',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, json: { params: { region: 'a\u0000b' } } },
        400,
        /body.params.region: a string holds a NUL character/,
      ],
      [
        'NUL in a JSON key',
        'POST',
        '/api/v1/pipelines',
        { key: keys.Aadmin, body: '{"id":"x","tasks":[],"a\\u0000":1}', type: 'application/json' },
        400,
        /a key holds a NUL character/,
      ],
      [
        'lone surrogate',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '{"params":{"region":"\\ud800"}}', type: 'application/json' },
        400,
        /lone surrogate/,
      ],
      [
        'lone surrogate in a YAML spec',
        'POST',
        '/api/v1/pipelines',
        {
          key: keys.Aadmin,
          body: 'id: sur\ntasks:\n  - { id: a, kind: sql, sql: "SELECT \'\\uD800\'" }\n',
          type: 'application/yaml',
        },
        400,
        /spec.tasks\[0\].sql: a string holds a NUL character or a lone surrogate/,
      ],
      [
        'NUL in a YAML spec',
        'POST',
        '/api/v1/pipelines',
        { key: keys.Aadmin, body: 'id: nul\ntasks: []\n# \u0000\n', type: 'application/yaml' },
        400,
        /NUL character/,
      ],
      [
        'xml',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, body: '<run/>', type: 'application/xml' },
        415,
        /content-type application\/xml is not accepted: send application\/json/,
      ],
      [
        'form',
        'POST',
        '/api/v1/keys',
        { key: keys.Aadmin, body: 'role=admin', type: 'application/x-www-form-urlencoded' },
        415,
        /not accepted/,
      ],
      [
        'multipart',
        'POST',
        '/api/v1/pipelines',
        { key: keys.Aadmin, body: '--x\r\n\r\n--x--', type: 'multipart/form-data; boundary=x' },
        415,
        /not accepted/,
      ],
      [
        'text to a JSON route',
        'POST',
        '/api/v1/keys',
        { key: keys.Aadmin, body: 'role: admin', type: 'text/plain' },
        400,
        /body: .*object/i,
      ],
    ]);
  });
});

describe('limits', () => {
  it('answers oversize bodies, specs, params and crons with the limit, and accepts what the scale work needs', async () => {
    const tasks = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `t${i}`, kind: 'noop' }));
    const bigParams = { region: 'x'.repeat(LIMITS.paramsBytes) };
    await refuse([
      [
        'body over 1 MiB',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, json: { params: { region: 'x'.repeat(LIMITS.bodyBytes) } } },
        413,
        /over this route's limit of 1 MiB: send less/,
      ],
      [
        'spec over 32 MiB',
        'POST',
        '/api/v1/pipelines',
        { key: keys.Aadmin, body: 'id: huge\n#' + 'x'.repeat(LIMITS.specBytes), type: 'application/yaml' },
        413,
        /limit of 32 MiB: send less \(split the pipeline/,
      ],
      [
        'key body over 16 KiB',
        'POST',
        '/api/v1/keys',
        { key: keys.Aadmin, json: { role: 'viewer', name: 'n'.repeat(17 * 1024) } },
        413,
        /over this route's limit of 16 KiB/,
      ],
      [
        'cluster body over 16 KiB',
        'POST',
        '/api/v1/clusters',
        { key: keys.Aoperator, json: { name: 'c1', release: 'r'.repeat(17 * 1024) } },
        413,
        /limit of 16 KiB/,
      ],
      [
        'reconciliation body over 64 KiB',
        'POST',
        '/api/v1/reconciliations',
        { key: keys.Aoperator, json: { left: 'l'.repeat(65 * 1024), right: 'r.csv' } },
        413,
        /limit of 64 KiB/,
      ],
      [
        'too many tasks',
        'POST',
        '/api/v1/pipelines',
        { key: keys.Aadmin, json: { id: 'huge', tasks: tasks(LIMITS.tasksPerSpec + 1) } },
        400,
        /tasks: 50,001 tasks; a pipeline has at most 50,000: split it/,
      ],
      [
        'params over 64 KiB',
        'POST',
        '/api/v1/pipelines/orders/runs',
        { key: keys.Aoperator, json: { params: bigParams } },
        400,
        /body.params: 65,542 bytes of names and values; at most 64 KiB: pass large values by reference/,
      ],
      [
        'schedule params over 64 KiB',
        'PATCH',
        '/api/v1/pipelines/orders/schedules/nightly',
        { key: keys.Aadmin, json: { params: bigParams } },
        400,
        /body.params: .*at most 64 KiB/,
      ],
      [
        'transform params over 64 KiB',
        'POST',
        '/api/v1/transform',
        { key: keys.Aoperator, json: { sql: 'SELECT 1', params: bigParams } },
        400,
        /body.params: .*at most 64 KiB/,
      ],
      [
        '21 crons',
        'POST',
        '/api/v1/pipelines/orders/schedules',
        { key: keys.Aadmin, json: { id: 'many', cron: Array.from({ length: 21 }, (_, i) => `${i} * * * *`) } },
        400,
        /at most 20 cron expressions \(got 21\): split it into several schedules/,
      ],
      [
        'long cron',
        'POST',
        '/api/v1/pipelines/orders/schedules',
        { key: keys.Aadmin, json: { id: 'long', cron: `0 ${'1,'.repeat(120)}2 * * *` } },
        400,
        /a cron expression is at most 200 characters/,
      ],
      [
        'idle 1s',
        'POST',
        '/api/v1/clusters',
        { key: keys.Aoperator, json: { name: 'c1', idleTimeout: '1s' } },
        400,
        /body.idleTimeout: idleTimeout must be from 1m to 7d \(got 1s\)/,
      ],
      [
        'lifetime a year',
        'POST',
        '/api/v1/clusters',
        { key: keys.Aoperator, json: { name: 'c1', maxLifetime: '365d' } },
        400,
        /maxLifetime must be from 1m to 30d/,
      ],
      [
        'poll 0',
        'POST',
        '/api/v1/clusters',
        { key: keys.Aoperator, json: { name: 'c1', pollInterval: 0 } },
        400,
        /pollInterval must be from 100ms to 10m/,
      ],
      [
        'reconcile memory 1 TB',
        'POST',
        '/api/v1/reconciliations',
        { key: keys.Aoperator, json: { left: 'a.csv', right: 'b.csv', options: { memoryLimitBytes: 1e12 } } },
        400,
        /body.options.memoryLimitBytes: at most 4 GiB/,
      ],
    ]);
    // At the limits: 50,000 tasks register; a param value of the longest length and 20 crons are accepted.
    const big = await json('POST', '/api/v1/pipelines', keys.Aadmin, { id: 'wide', tasks: tasks(LIMITS.tasksPerSpec) });
    expect(big.status, big.text.slice(0, 300)).toBe(201);
    const edge = await json('POST', '/api/v1/pipelines/orders/schedules', keys.Aadmin, {
      id: 'twenty',
      paused: true,
      cron: Array.from({ length: 20 }, (_, i) => `${i} * * * *`),
      params: { region: 'x'.repeat(PARAM_LIMITS.valueLength) },
    });
    expect(edge.status, edge.text.slice(0, 300)).toBe(201);
    started.push(`schedule:schedule/${A}/orders/twenty`);
  }, 180_000);
});

describe('tenants', () => {
  it('answers every endpoint with an id of tenant A and a key of tenant B (whose name A prefixes) with 404', async () => {
    const run = enc(runA);
    const rec = enc(recA);
    const probes: [string, string, unknown?][] = [
      ['GET', '/api/v1/pipelines/orders/schedules/nightly'],
      ['PATCH', '/api/v1/pipelines/orders/schedules/nightly', { paused: false }],
      ['DELETE', '/api/v1/pipelines/orders/schedules/nightly'],
      ['POST', '/api/v1/pipelines/orders/schedules/nightly/pause'],
      ['POST', '/api/v1/pipelines/orders/schedules/nightly/unpause'],
      ['POST', '/api/v1/pipelines/orders/schedules/nightly/trigger'],
      ['POST', '/api/v1/pipelines/orders/schedules/nightly/backfill', { from: '2026-01-01', to: '2026-01-02' }],
      ['GET', `/api/v1/runs/${run}`],
      ['GET', `/api/v1/runs/${run}/tasks/load`],
      ['GET', `/api/v1/runs/${run}/tasks/load/logs`],
      ['GET', `/api/v1/runs/${run}/graph`],
      ['POST', `/api/v1/runs/${run}/cancel`],
      ['POST', `/api/v1/runs/${run}/repair`],
      ['GET', `/runs/${run}`],
      ['GET', `/api/v1/reconciliations/${rec}`],
      ['POST', `/api/v1/reconciliations/${rec}/cancel`],
      ['DELETE', `/api/v1/keys/${keyIdA}`],
    ];
    const before = await snapshot();
    for (const [m, u, b] of probes)
      for (const role of ['admin', 'operator', 'viewer']) {
        const r = await json(m, u, keys[`B${role}`], b);
        // A role too low is refused first (a 403 that says nothing about A's records).
        if (
          r.status === 403 &&
          /^this needs the (admin|operator) role; your key is (operator|viewer)$/.test(r.json.error)
        )
          continue;
        expect(r.status, `${role} ${m} ${u} → ${r.text}`).toBe(404);
        expect(r.text).not.toContain('"tasks"');
      }
    expect(await snapshot()).toBe(before);
    // B's own "orders" is B's: its list holds no A run, and A's schedule is still paused.
    expect((await json('GET', '/api/v1/runs', keys.Bviewer)).json.data).toEqual([]);
    expect((await json('GET', '/api/v1/pipelines/orders/schedules/nightly', keys.Aviewer)).json.paused).toBe(true);
    const trig = await stack.db.query<{ started_at: Date | null }>(
      'SELECT started_at FROM run_triggers WHERE workflow_id = $1',
      [runA],
    );
    expect(trig.rows[0].started_at).toBeNull();
  });

  it('checks the tenant stored with a record, not only the id: a forged id prefix is still 404', async () => {
    expect(idTenant(`pipeline/${A}/orders/k`, 'pipeline')).toBe(A);
    expect(idTenant(`pipeline/${B}/orders/k`, 'pipeline')).toBe(B);
    expect(idTenant(`pipeline/${A}`, 'pipeline')).toBeUndefined();
    expect(idTenant(`pipeline//${A}/x`, 'pipeline')).toBeUndefined();
    expect(idTenant(`reconcile/${A}/x`, 'pipeline')).toBeUndefined();

    // An outbox row whose id names A but which belongs to B (as a bug or a bad import could leave one).
    const forged = `pipeline/${A}/orders/forged-${Date.now()}`;
    const request = {
      workflowId: forged,
      input: { spec: SPEC, tenant: B, trigger: 'api', params: {} },
      idempotent: false,
      memo: {},
      summary: 'forged',
    };
    await stack.db.query(
      'INSERT INTO run_triggers (workflow_id, tenant, pipeline_id, task_queue, request) VALUES ($1, $2, $3, $4, $5)',
      [forged, B, 'orders', `${stack.taskQueue}-nobody`, JSON.stringify(request)],
    );
    for (const u of [
      `/api/v1/runs/${enc(forged)}`,
      `/api/v1/runs/${enc(forged)}/tasks/load`,
      `/api/v1/runs/${enc(forged)}/graph`,
      `/runs/${enc(forged)}`,
    ]) {
      const r = await json('GET', u, keys.Aviewer);
      expect(r.status, `${u} → ${r.text}`).toBe(404);
      expect(r.json.error).toBe(`no run ${forged}`);
    }
    const c = await json('POST', `/api/v1/runs/${enc(forged)}/cancel`, keys.Aoperator);
    expect(c.status, c.text).toBe(404);
    expect(
      (
        await stack.db.query<{ started_at: Date | null }>(
          'SELECT started_at FROM run_triggers WHERE workflow_id = $1',
          [forged],
        )
      ).rows[0].started_at,
    ).toBeNull();

    // Workflows whose ids name A but whose StrataTenant is B: A cannot read or cancel them.
    const wfRun = `pipeline/${A}/orders/forged-wf-${Date.now()}`;
    const wfRec = `reconcile/${A}/forged-${Date.now()}`;
    for (const [id, type] of [
      [wfRun, 'pipelineRun'],
      [wfRec, 'reconciliationRun'],
    ] as const) {
      await stack.client.workflow.start(type, {
        workflowId: id,
        taskQueue: `${stack.taskQueue}-nobody`,
        args: [{}],
        typedSearchAttributes: [{ key: SA_TENANT, value: B }],
      });
      started.push(id);
    }
    expect((await json('POST', `/api/v1/runs/${enc(wfRun)}/cancel`, keys.Aoperator)).status).toBe(404);
    expect((await json('POST', `/api/v1/runs/${enc(wfRun)}/repair`, keys.Aoperator)).status).toBe(404);
    expect((await json('GET', `/api/v1/reconciliations/${enc(wfRec)}`, keys.Aviewer)).status).toBe(404);
    expect((await json('POST', `/api/v1/reconciliations/${enc(wfRec)}/cancel`, keys.Aoperator)).status).toBe(404);
    for (const id of [wfRun, wfRec]) {
      const d = await stack.client.workflow.getHandle(id).describe();
      expect(d.status.name, id).toBe('RUNNING');
      expect(d.raw.workflowExecutionInfo?.status).toBeTruthy();
    }
    // And A's own records still answer A.
    expect((await json('GET', `/api/v1/runs/${enc(runA)}`, keys.Aviewer)).json).toMatchObject({
      status: 'queued',
      tenant: A,
    });
    expect((await json('GET', `/api/v1/reconciliations/${enc(recA)}`, keys.Aviewer)).json).toMatchObject({
      id: recA,
      status: 'running',
    });
  });

  it('pages the runs list with the cursor it gives out', async () => {
    const t2 = await json('POST', '/api/v1/pipelines/orders/runs', keys.Aoperator, {});
    expect(t2.status).toBe(202);
    const first = await json('GET', '/api/v1/runs?limit=1', keys.Aviewer);
    expect(first.json.data).toHaveLength(1);
    const second = await json('GET', `/api/v1/runs?limit=1&cursor=${first.json.next}`, keys.Aviewer);
    expect(second.status, second.text).toBe(200);
    expect(second.json.data).toHaveLength(1);
    expect(second.json.data[0].runId).not.toBe(first.json.data[0].runId);
    const since = await json('GET', '/api/v1/runs?since=2000-01-01T00:00:00%2B02:00', keys.Aviewer);
    expect(since.status, since.text).toBe(200);
    expect(since.json.data.length).toBeGreaterThanOrEqual(2);
  });
});

describe('failures inside the API', () => {
  it('answers 500 with a request id and no internal text, and logs the error under that id', async () => {
    const dbs = inject('databases');
    const closed = await openDb({ url: dbs.postgresUrl });
    await closed.close();
    const seen: Parameters<ApiLog>[0][] = [];
    const config = loadConfig({
      STRATA_TASK_QUEUE: stack.taskQueue,
      STRATA_BOOTSTRAP_ADMIN_KEY: BOOT,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
    });
    const broken = (
      await buildApi({ db: closed, client: stack.client, config, dispatcher: false, log: (e) => seen.push(e) })
    ).app;
    const at = new URL(await broken.listen({ host: '127.0.0.1', port: 0 }));
    try {
      for (const [path, key] of [
        ['/api/v1/pipelines', BOOT], // the handler's query fails
        ['/api/v1/runs', keys.Aviewer], // the key lookup fails, in the auth hook
      ]) {
        const r = await raw('GET', path, { key, at });
        expect(r.status, r.text).toBe(500);
        const id = r.headers['x-request-id'] as string;
        expect(id).toMatch(/^[0-9a-f-]{36}$/);
        expect(r.json).toEqual({ error: `internal error: the API logged it under request id ${id}`, requestId: id });
        const entry = seen.find((e) => e.requestId === id);
        expect(entry, 'logged under the request id').toBeDefined();
        expect(entry).toMatchObject({ level: 'error', method: 'GET', route: path });
        expect(entry!.error).toMatch(/pool/i);
      }
      // A 4xx from the same broken app still says what is wrong.
      const bad = await raw('GET', '/api/v1/pipelines', { at });
      expect(bad.status).toBe(401);
    } finally {
      await broken.close();
    }
    // The main app has logged no 500 through all the hostile requests above.
    expect(logs).toEqual([]);
  });
});
