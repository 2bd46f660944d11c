/**
 * Strata's Iceberg REST catalog, read and written by an implementation nobody here wrote
 * (apache/iceberg-go, test/iceberg-reader): it loads Strata's tables, scans the current
 * snapshot, an old one and a filtered one, and the rows equal DuckDB's over the same
 * version; it creates a partitioned table and appends, and Strata reads that back; two of
 * its writers race and the loser gets the 409 and retries. Plus the catalog's own rules:
 * requirements, idempotency keys, one warehouse per tenant.
 */
import type { FastifyInstance } from 'fastify';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TableMetadata } from '../../activities/iceberg/metadata.js';
import { keyOf, snapshotFiles } from '../../activities/iceberg/writer.js';
import { parseJson, stringifyJson } from '../../schemas/json64.js';
import { localFile } from '../../activities/lake/engine.js';
import { forTenant } from '../../activities/lake/open.js';
import type { RunState } from '../../schemas/run.js';
import { createKey } from '../../store/keys.js';
import { stackApi } from '../harness/api.js';
import { canon, datasetRows, parquetRows as duck } from '../harness/duck.js';
import { jsonLines, readStackIceberg, runIcebergReader } from '../harness/iceberg-reader.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';
import { HAVE_SPECS, NEEDS_SPECS } from '../fakes/specs-dir.js';
import { icebergSpecChecker } from '../fakes/iceberg-spec.js';

let stack: TestStack;
let app: FastifyInstance;
let uri: string;
let proxy: http.Server;
const key: Record<string, string> = {};
/** Every exchange iceberg-go had with the catalog (through a recording proxy), for the spec checks. */
const exchanges: { method: string; path: string; status: number; request?: string; response: string }[] = [];

/** Forwards to the API and records each request and answer. */
function recordingProxy(target: string): Promise<string> {
  proxy = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on(
      'end',
      () =>
        void (async () => {
          const body = Buffer.concat(chunks);
          const headers = Object.fromEntries(
            Object.entries(req.headers).filter(([k]) => !['host', 'content-length', 'connection'].includes(k)),
          ) as Record<string, string>;
          const r = await fetch(`${target}${req.url}`, {
            method: req.method,
            headers,
            body: body.length ? body : undefined,
          });
          const text = await r.text();
          exchanges.push({
            method: req.method!,
            path: req.url!.split('?')[0],
            status: r.status,
            request: body.length ? body.toString() : undefined,
            response: text,
          });
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
          res.end(text);
        })(),
    );
  });
  return new Promise((resolve) =>
    proxy.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`)),
  );
}

beforeAll(async () => {
  stack = await testStack('iceberg-rest', { lake: 's3' });
  let addr: string;
  ({ app, base: addr } = await stackApi(stack, { env: { STRATA_ICEBERG_VENDING: '*=sts,nosts=none' } }));
  uri = `${await recordingProxy(addr)}/iceberg`;
  for (const [name, tenant, role] of [
    ['writer', stack.tenant, 'operator'],
    ['viewer', stack.tenant, 'viewer'],
    ['other', 'globex', 'admin'],
  ] as const)
    key[name] = (await createKey(stack.db, tenant, role, name)).secret;
}, 600_000);
afterAll(async () => {
  await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
  await app?.close();
  await stack?.close();
});

const run = (s: ReturnType<typeof spec>): Promise<RunState> => stack.withWorker(() => stack.runToEnd(s));

const pipeline = (sql: string) =>
  spec(`
id: iceberg_rest
tasks:
  - id: orders
    kind: sql
    layer: silver
    sql: ${JSON.stringify(sql)}
    output: silver.orders
`);

/** The iceberg-go reader, as the writer key's tenant, with S3 access for a store without credential vending. */
const reader = (args: string[], who = 'writer') => readStackIceberg(stack, uri, key[who], args);

const versionRows = (version: number, where = '') =>
  datasetRows(stack, { layer: 'silver', name: 'orders' }, version, where);

const api = (method: string, path: string, body?: unknown, who = 'writer', headers: Record<string, string> = {}) =>
  app
    .inject({
      method: method as 'GET',
      url: `/iceberg/v1${path}`,
      headers: {
        authorization: `Bearer ${key[who]}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      payload: body ? stringifyJson(body) : undefined,
    })
    .then((r) => Object.assign(r, { json: () => parseJson<any>(r.body) })); // 64-bit snapshot ids stay exact

describe('the Iceberg REST catalog, through iceberg-go', () => {
  it('iceberg-go reads what Strata wrote: current, an old snapshot and a filter equal DuckDB over the same version', async () => {
    const sql1 = `SELECT i::BIGINT AS id, 'c' || (i % 3) AS customer, (i * 1.25)::DOUBLE AS amount, DATE '2026-01-01' + i::INT AS day FROM range(1, 21) t(i)`;
    expect((await run(pipeline(sql1))).status).toBe('success');
    const sql2 = `SELECT i::BIGINT AS id, 'c' || (i % 4) AS customer, (i * 2)::DOUBLE AS amount, DATE '2026-02-01' + i::INT AS day, i % 2 = 0 AS even FROM range(100, 130) t(i)`;
    expect((await run(pipeline(sql2))).status).toBe('success');

    const current = jsonLines((await reader(['scan', '-table', 'silver.orders'])).stdout);
    expect(current).toHaveLength(30);
    expect(canon(current)).toEqual(canon(await versionRows(2)));

    const old = jsonLines((await reader(['scan', '-table', 'silver.orders', '-snapshot', '1'])).stdout);
    expect(old).toHaveLength(20);
    // An old snapshot is read with its own schema (no `even` column then).
    expect(canon(old)).toEqual(canon(await versionRows(1)));

    const filtered = await reader(['scan', '-table', 'silver.orders', '-filter', 'customer=c1']);
    const want = await versionRows(2, `WHERE customer = 'c1'`);
    expect(want.length).toBeGreaterThan(0);
    expect(canon(jsonLines(filtered.stdout))).toEqual(canon(want));
    // The manifest's bounds let the reader skip the whole file for a value outside them.
    const none = await reader(['scan', '-table', 'silver.orders', '-filter', 'id=5000']);
    expect(none.stdout.trim()).toBe('');
    expect(none.stderr).toContain('files scanned: 0');
  });

  it('iceberg-go creates a partitioned table and appends through the catalog; Strata reads it back; a partition filter prunes files', async () => {
    expect((await api('POST', `/${stack.tenant}/namespaces`, { namespace: ['bronze'] })).statusCode).toBeLessThan(500);
    const rows = [
      { id: 1, name: 'a' },
      { id: 2, name: 'b' },
      { id: 3, name: 'b' },
    ];
    const out = parseJson<any>(
      (await reader(['append', '-create', '-table', 'bronze.events', '-rows', JSON.stringify(rows)])).stdout,
    );
    const loaded = await api('GET', `/${stack.tenant}/namespaces/bronze/tables/events`, undefined, 'viewer');
    expect(loaded.statusCode).toBe(200);
    const meta = loaded.json().metadata as TableMetadata;
    expect(meta['current-snapshot-id']).toBe(out['snapshot-id']);
    expect(meta['partition-specs'][0].fields).toEqual([
      { 'source-id': 2, 'field-id': 1000, name: 'name', transform: 'identity' },
    ]);
    // In the tenant's warehouse, under the layer's own layout.
    expect(meta.location).toBe(stack.store!.uri('bronze/default/events'));

    // Strata reads iceberg-go's snapshot: manifests through avsc, files through DuckDB.
    const store = stack.store!;
    const lake = forTenant(stack.lake!, stack.tenant);
    const files = await snapshotFiles(store, meta);
    expect(files.length).toBe(2); // one file per partition
    const back = await duck(await Promise.all(files.map((f) => localFile(lake, keyOf(store, f)))));
    expect(canon(back)).toEqual(canon(rows));

    // And Strata's SQL reads it by name, as any dataset.
    const copy = await run(
      spec(`
id: read_events
tasks:
  - id: copy
    kind: sql
    layer: silver
    sql: SELECT id, name FROM bronze.events
    output: silver.events_copy
`),
    );
    expect(copy.status, JSON.stringify(copy.tasks.copy)).toBe('success');
    const cv = await stack.lake!.catalog.current(stack.tenant, {
      layer: 'silver',
      namespace: 'default',
      name: 'events_copy',
    });
    expect(canon(await duck(await Promise.all(cv!.files.map((f) => localFile(lake, f)))))).toEqual(canon(rows));

    const b = await reader(['scan', '-table', 'bronze.events', '-filter', 'name=b']);
    expect(canon(jsonLines(b.stdout))).toEqual(canon(rows.filter((r) => r.name === 'b')));
    expect(b.stderr).toContain('files scanned: 1');
  });

  it('vended credentials: iceberg-go reads with only what the catalog vends, scoped to the one table', async () => {
    const s3 = stack.s3!;
    // No storage keys of its own: only the catalog's X-Iceberg-Access-Delegation answer.
    const out = await runIcebergReader(['scan', '-table', 'silver.orders', '-uri', uri, '-warehouse', stack.tenant], {
      STRATA_KEY: key.viewer,
      S3_REGION: s3.region,
    });
    expect(jsonLines(out.stdout)).toHaveLength(30);

    const t = `/${stack.tenant}/namespaces/silver/tables/orders`;
    const loaded = (
      await api('GET', t, undefined, 'viewer', { 'x-iceberg-access-delegation': 'vended-credentials' })
    ).json();
    const [cred] = loaded['storage-credentials'];
    expect(cred.prefix).toBe(loaded.metadata.location);
    expect(cred.config['s3.session-token']).toBeTruthy();
    expect(cred.config['s3.access-key-id']).not.toBe(s3.accessKeyId);
    expect(cred.config['s3.remote-signing-enabled']).toBe('false');
    expect((await api('GET', t, undefined, 'viewer')).json()['storage-credentials']).toBeUndefined();

    const { S3Client, GetObjectCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: {
        accessKeyId: cred.config['s3.access-key-id'],
        secretAccessKey: cred.config['s3.secret-access-key'],
        sessionToken: cred.config['s3.session-token'],
      },
    });
    const [, bucket, key0] = /^s3:\/\/([^/]+)\/(.+)$/.exec(loaded['metadata-location'])!;
    const own = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key0 }));
    expect(JSON.parse(await own.Body!.transformToString())['table-uuid']).toBe(loaded.metadata['table-uuid']);
    const tableKey = /^s3:\/\/[^/]+\/(.+)$/.exec(loaded.metadata.location)![1];
    const sibling = tableKey.replace(/silver\/default\/orders$/, 'bronze/default/events/metadata/x');
    await expect(client.send(new PutObjectCommand({ Bucket: bucket, Key: sibling, Body: 'x' }))).rejects.toMatchObject({
      name: 'AccessDenied',
    });
    // A name that is a prefix of another's (orders → orders_2) is not reached either.
    await expect(
      client.send(new PutObjectCommand({ Bucket: bucket, Key: `${tableKey}_2/x`, Body: 'x' })),
    ).rejects.toMatchObject({ name: 'AccessDenied' });
  });

  it('two writers commit at once: one wins, the other gets the 409 and retries on the new metadata; both appends are there', async () => {
    const before = (await api('GET', `/${stack.tenant}/namespaces/bronze/tables/events`)).json()
      .metadata as TableMetadata;
    const r = parseJson<any>(
      (
        await reader([
          'race',
          '-table',
          'bronze.events',
          '-rows',
          JSON.stringify([{ id: 10, name: 'x' }]),
          '-rows2',
          JSON.stringify([{ id: 20, name: 'y' }]),
        ])
      ).stdout,
    );
    expect(r.conflict).toMatch(/409|CommitFailed|requirement/i);
    const after = (await api('GET', `/${stack.tenant}/namespaces/bronze/tables/events`)).json()
      .metadata as TableMetadata;
    expect(after.snapshots).toHaveLength(before.snapshots.length + 2);
    expect(after['current-snapshot-id']).toBe(r.retried);
    const ids = jsonLines((await reader(['scan', '-table', 'bronze.events'])).stdout).map((x) => Number(x.id));
    expect(ids.sort((a, b) => a - b)).toEqual([1, 2, 3, 10, 20]);
  });

  it('a stale requirement is a 409 in the spec error shape; an idempotency key applies a commit once', async () => {
    const t = `/${stack.tenant}/namespaces/bronze/tables/events`;
    const meta = (await api('GET', t)).json().metadata as TableMetadata;
    const stale = await api('POST', t, {
      requirements: [{ type: 'assert-ref-snapshot-id', ref: 'main', 'snapshot-id': meta.snapshots[0]['snapshot-id'] }],
      updates: [{ action: 'set-properties', updates: { owner: 'x' } }],
    });
    expect(stale.statusCode).toBe(409);
    expect(stale.json()).toEqual({
      error: { message: expect.stringContaining('main'), type: 'CommitFailedException', code: 409 },
    });

    const k = randomUUID();
    const body = {
      requirements: [{ type: 'assert-ref-snapshot-id', ref: 'main', 'snapshot-id': meta['current-snapshot-id'] }],
      updates: [{ action: 'set-properties', updates: { owner: 'etl' } }],
    };
    const first = await api('POST', t, body, 'writer', { 'idempotency-key': k });
    expect(first.statusCode).toBe(200);
    const again = await api('POST', t, body, 'writer', { 'idempotency-key': k });
    expect(again.statusCode).toBe(200);
    expect(again.json()['metadata-location']).toBe(first.json()['metadata-location']);
    const now = (await api('GET', t)).json();
    expect(now['metadata-location']).toBe(first.json()['metadata-location']);
    expect(now.metadata['metadata-log']).toHaveLength(meta['metadata-log'].length + 1);
    expect(now.metadata.properties.owner).toBe('etl');
  });

  it('one warehouse per tenant: another tenant sees none of it; a viewer cannot commit; bad names are 400s', async () => {
    const mine = `/${stack.tenant}/namespaces`;
    expect((await api('GET', mine, undefined, 'other')).statusCode).toBe(404);
    expect((await api('GET', `${mine}/silver/tables/orders`, undefined, 'other')).json().error.type).toBe(
      'NoSuchWarehouseException',
    );
    expect((await api('GET', '/globex/namespaces', undefined, 'other')).json()).toEqual({ namespaces: [] });
    expect((await api('GET', `/config?warehouse=${stack.tenant}`, undefined, 'other')).statusCode).toBe(404);
    const cfg = (await api('GET', '/config', undefined, 'viewer')).json();
    expect(cfg.overrides).toEqual({ prefix: stack.tenant, warehouse: stack.tenant });
    expect(cfg.defaults['s3.endpoint']).toBe(stack.s3!.endpoint);
    const denied = await api('POST', `${mine}/bronze/tables/events`, { requirements: [], updates: [] }, 'viewer');
    expect(denied.statusCode).toBe(403);
    expect(denied.json().error.type).toBe('ForbiddenException');
    const bad = await api('POST', `${mine}/bronze/tables`, { name: '../x', schema: { type: 'struct', fields: [] } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toContain('letters, digits');
    // A table may not point its files outside the warehouse.
    const outside = await api('POST', `${mine}/bronze/tables`, {
      name: 'escape',
      location: 's3://lake/elsewhere/escape',
      schema: { type: 'struct', fields: [] },
    });
    expect(outside.statusCode).toBe(403);
    // Strata's own datasets are dropped and renamed through Strata.
    const drop = await api('DELETE', `${mine}/silver/tables/orders`);
    expect(drop.statusCode).toBe(403);
    expect(drop.json().error.message).toContain('through Strata');
    const listed = (await api('GET', `${mine}/silver/tables`, undefined, 'viewer')).json();
    expect(listed.identifiers).toEqual([
      { namespace: ['silver'], name: 'events_copy' },
      { namespace: ['silver'], name: 'orders' },
    ]);
  });
});

describe('the catalog against the Iceberg REST OpenAPI document', () => {
  it.runIf(HAVE_SPECS)(`every request iceberg-go sent and every answer fit the published spec${NEEDS_SPECS}`, () => {
    const check = icebergSpecChecker();
    expect(exchanges.length).toBeGreaterThan(10);
    const problems = exchanges.flatMap((x) =>
      check.problems(
        x.method,
        x.path.replace(/^\/iceberg/, ''),
        x.status,
        x.request ? JSON.parse(x.request) : undefined,
        x.response ? JSON.parse(x.response) : undefined,
      ),
    );
    expect(problems).toEqual([]);
    // The conflict iceberg-go met was the spec's 409 body.
    expect(
      exchanges.some((x) => x.status === 409 && JSON.parse(x.response).error.type === 'CommitFailedException'),
    ).toBe(true);
  });

  it.runIf(HAVE_SPECS)(
    `every route the catalog serves and advertises is in the spec with its method${NEEDS_SPECS}`,
    async () => {
      const check = icebergSpecChecker();
      const { ENDPOINTS } = await import('../../api/iceberg-service.js');
      for (const e of ENDPOINTS) {
        const [method, path] = e.split(' ');
        expect(check.spec.paths[path]?.[method.toLowerCase()], e).toBeDefined();
      }
      const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
      const served = Object.entries(doc.paths as Record<string, object>)
        .filter(([p]) => p.startsWith('/iceberg/'))
        .flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/^\/iceberg/, '')}`));
      expect(served.length).toBeGreaterThan(10);
      for (const r of served) {
        const [method, path] = r.split(' ');
        expect(check.spec.paths[path]?.[method.toLowerCase()], r).toBeDefined();
      }
      // Answers Strata made in these tests (not only iceberg-go's) fit too.
      const mine = await app.inject({
        method: 'GET',
        url: `/iceberg/v1/${stack.tenant}/namespaces/silver/tables/orders`,
        headers: { authorization: `Bearer ${key.viewer}` },
      });
      const load = `/v1/${stack.tenant}/namespaces/silver/tables/orders`;
      expect(check.problems('GET', load, 200, undefined, mine.json())).toEqual([]);
      // The checker has teeth: a load answer without metadata, an undocumented route, a bad commit body.
      expect(check.problems('GET', load, 200, undefined, { config: {} })).not.toEqual([]);
      expect(check.problems('GET', `/v1/${stack.tenant}/nowhere`, 200, undefined, {})).not.toEqual([]);
      expect(check.problems('POST', load, 200, { updates: 'x' }, mine.json())).not.toEqual([]);
    },
  );

  it.runIf(!HAVE_SPECS)(
    '[specs] the Iceberg REST OpenAPI document is not in this checkout: the spec checks are skipped',
    () => {
      expect(HAVE_SPECS).toBe(false);
    },
  );
});
