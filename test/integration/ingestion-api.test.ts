/**
 * /api/v1/ingestion over real HTTP against the Airbyte protocol double: tenants map to
 * workspaces (STRATA_AIRBYTE_WORKSPACES), never see each other's connectors, and the API says
 * what to configure when Airbyte or the mapping is missing.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AirbyteClient } from '../../activities/airbyte/client.js';
import { buildApi } from '../../api/app.js';
import { loadConfig } from '../../schemas/config.js';
import { AirbyteDouble } from '../fakes/airbyte-double.js';
import { extTestStack } from '../fakes/ext-stack.js';
import type { TestStack } from '../harness/temporal.js';

const BOOT = 'bootstrap-admin-key-for-ingestion-0123';
const PASSWORD = 'pg-password-do-not-echo';
let stack: TestStack;
let ab: AirbyteDouble;
const apps: FastifyInstance[] = [];
let base: string;
let bareBase: string;
let downBase: string;
let wsA: string;
let wsB: string;
let tenantA: string;
let tenantB: string;
const keys: Record<string, string> = {};

async function call(method: string, url: string, key: string, body?: unknown, at = base) {
  const res = await fetch(at + url, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, text };
}

const pgSource = (name: string) => ({
  name,
  configuration: {
    sourceType: 'postgres',
    host: 'db.internal',
    port: 5432,
    database: 'shop',
    username: 'etl',
    password: PASSWORD,
  },
});
const s3Destination = (name: string) => ({
  name,
  configuration: {
    destinationType: 's3',
    s3_bucket_name: 'lake',
    s3_bucket_path: 'raw',
    access_key_id: 'AKIDEXAMPLE',
    secret_access_key: 'secret-key-do-not-echo',
  },
});

beforeAll(async () => {
  [stack, ab] = await Promise.all([extTestStack('ingestapi'), AirbyteDouble.start()]);
  wsA = ab.addWorkspace();
  wsB = ab.addWorkspace();
  tenantA = `ing-a-${stack.tenant}`;
  tenantB = `ing-b-${stack.tenant}`;
  const config = loadConfig({
    STRATA_TASK_QUEUE: stack.taskQueue,
    STRATA_BOOTSTRAP_ADMIN_KEY: BOOT,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    STRATA_AIRBYTE_WORKSPACES: `${tenantA}=${wsA}, ${tenantB}=${wsB.toUpperCase()}`,
  });
  const start = async (airbyte?: AirbyteClient) => {
    const { app } = await buildApi({ db: stack.db, client: stack.client, config, airbyte });
    apps.push(app);
    return app.listen({ host: '127.0.0.1', port: 0 });
  };
  base = await start(new AirbyteClient({ baseUrl: ab.baseUrl, clientId: ab.clientId, clientSecret: ab.clientSecret }));
  bareBase = await start(undefined);
  downBase = await start(
    new AirbyteClient({ baseUrl: 'http://127.0.0.1:9/api/public/v1', clientId: 'x', clientSecret: 'y' }),
  );
  for (const [name, tenant, role] of [
    ['opsA', tenantA, 'operator'],
    ['viewA', tenantA, 'viewer'],
    ['opsB', tenantB, 'operator'],
    ['unmapped', `ing-none-${stack.tenant}`, 'operator'],
  ] as const) {
    const r = await call('POST', '/api/v1/keys', BOOT, { tenant, role, name });
    expect(r.status).toBe(201);
    keys[name] = r.json.key;
  }
});
afterAll(async () => {
  for (const a of apps) await a.close();
  await ab?.close();
  await stack?.close();
});

describe('/api/v1/ingestion', () => {
  it('creates, lists, reads, renames and deletes a source, a destination and a connection in the tenant’s workspace', async () => {
    const src = await call('POST', '/api/v1/ingestion/sources', keys.opsA, pgSource('shop-db'));
    expect(src.status).toBe(201);
    expect(src.json).toMatchObject({
      name: 'shop-db',
      sourceType: 'postgres',
      workspaceId: wsA,
      configuration: { host: 'db.internal', password: '**********' },
    });
    // Airbyte received the tenant's workspace and the real secret; the answer carries neither the secret nor more.
    const sent = ab.received.filter((r) => r.method === 'POST' && r.path.endsWith('/sources')).at(-1)!.body as Record<
      string,
      any
    >;
    expect(sent).toMatchObject({ name: 'shop-db', workspaceId: wsA, configuration: { password: PASSWORD } });
    expect(src.text).not.toContain(PASSWORD);
    const sourceId = src.json.sourceId as string;

    const dst = await call('POST', '/api/v1/ingestion/destinations', keys.opsA, {
      ...s3Destination('lake-raw'),
      workspaceId: wsA.toUpperCase(),
    });
    expect(dst.status).toBe(201);
    expect(dst.json).toMatchObject({ name: 'lake-raw', destinationType: 's3', workspaceId: wsA });
    expect(dst.text).not.toContain('secret-key-do-not-echo');
    const destinationId = dst.json.destinationId as string;

    const conn = await call('POST', '/api/v1/ingestion/connections', keys.opsA, {
      name: 'shop-to-lake',
      sourceId,
      destinationId,
      schedule: { scheduleType: 'cron', cronExpression: '0 0 * * * ?' },
      status: 'inactive',
    });
    expect(conn.status).toBe(201);
    expect(conn.json).toMatchObject({
      name: 'shop-to-lake',
      sourceId,
      destinationId,
      workspaceId: wsA,
      status: 'inactive',
      schedule: { scheduleType: 'cron', cronExpression: '0 0 * * * ?' },
    });
    const connectionId = conn.json.connectionId as string;
    expect(ab.connections.has(connectionId)).toBe(true);

    // A viewer lists and reads.
    for (const [kind, idKey, id] of [
      ['sources', 'sourceId', sourceId],
      ['destinations', 'destinationId', destinationId],
      ['connections', 'connectionId', connectionId],
    ] as const) {
      const list = await call('GET', `/api/v1/ingestion/${kind}`, keys.viewA);
      expect(list.status).toBe(200);
      expect(list.json.data.map((r: Record<string, string>) => r[idKey])).toEqual([id]);
      const one = await call('GET', `/api/v1/ingestion/${kind}/${id}`, keys.viewA);
      expect(one.status).toBe(200);
      expect(one.json[idKey]).toBe(id);
    }
    expect(
      ab.requests.filter((r) => r.method === 'GET' && /\/(sources|destinations|connections)$/.test(r.path)).length,
    ).toBeGreaterThanOrEqual(3);

    // Rename each; a patch changes only what it names.
    const renamed = await call('PATCH', `/api/v1/ingestion/sources/${sourceId}`, keys.opsA, {
      name: 'shop-db-primary',
      configuration: { host: 'db2.internal' },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.json).toMatchObject({
      name: 'shop-db-primary',
      configuration: { host: 'db2.internal', database: 'shop', password: '**********' },
    });
    expect(
      (await call('PATCH', `/api/v1/ingestion/destinations/${destinationId}`, keys.opsA, { name: 'lake-raw-2' })).json
        .name,
    ).toBe('lake-raw-2');
    expect(
      (
        await call('PATCH', `/api/v1/ingestion/connections/${connectionId}`, keys.opsA, {
          name: 'shop-to-lake-2',
          status: 'active',
        })
      ).json,
    ).toMatchObject({ name: 'shop-to-lake-2', status: 'active', sourceId });
    expect((await call('GET', `/api/v1/ingestion/sources/${sourceId}`, keys.viewA)).json.name).toBe('shop-db-primary');
    expect((await call('GET', `/api/v1/ingestion/connections/${connectionId}`, keys.viewA)).json.name).toBe(
      'shop-to-lake-2',
    );

    // Delete the connection: gone (404), out of the list, back with includeDeleted.
    const del = await call('DELETE', `/api/v1/ingestion/connections/${connectionId}`, keys.opsA);
    expect(del.status).toBe(204);
    expect(del.text).toBe('');
    const gone = await call('GET', `/api/v1/ingestion/connections/${connectionId}`, keys.viewA);
    expect(gone.status).toBe(404);
    expect(gone.json.error).toBe(`no connection ${connectionId} in the Airbyte workspace of tenant ${tenantA}`);
    expect((await call('DELETE', `/api/v1/ingestion/connections/${connectionId}`, keys.opsA)).status).toBe(404);
    expect((await call('GET', '/api/v1/ingestion/connections', keys.viewA)).json.data).toEqual([]);
    expect(
      (await call('GET', '/api/v1/ingestion/connections?includeDeleted=true', keys.viewA)).json.data.map(
        (c: { connectionId: string }) => c.connectionId,
      ),
    ).toEqual([connectionId]);
    expect(ab.connections.has(connectionId)).toBe(false);

    // Deleting the source and destination leaves the tenant's workspace empty.
    expect((await call('DELETE', `/api/v1/ingestion/sources/${sourceId}`, keys.opsA)).status).toBe(204);
    expect((await call('DELETE', `/api/v1/ingestion/destinations/${destinationId}`, keys.opsA)).status).toBe(204);
    expect((await call('GET', `/api/v1/ingestion/sources/${sourceId}`, keys.viewA)).status).toBe(404);
    expect((await call('GET', '/api/v1/ingestion/sources', keys.viewA)).json.data).toEqual([]);
  });

  it('pages lists with limit and offset, linking next and previous pages of the Strata API', async () => {
    const ids: string[] = [];
    for (const n of ['p1', 'p2', 'p3'])
      ids.push((await call('POST', '/api/v1/ingestion/sources', keys.opsA, pgSource(n))).json.sourceId);
    const first = await call('GET', '/api/v1/ingestion/sources?limit=2', keys.viewA);
    expect(first.json.data.map((s: { sourceId: string }) => s.sourceId)).toEqual(ids.slice(0, 2));
    expect(first.json.next).toBe('/api/v1/ingestion/sources?limit=2&offset=2');
    expect(first.json.previous).toBeUndefined();
    const second = await call('GET', first.json.next, keys.viewA);
    expect(second.json.data.map((s: { sourceId: string }) => s.sourceId)).toEqual(ids.slice(2));
    expect(second.json.next).toBeUndefined();
    expect(second.json.previous).toBe('/api/v1/ingestion/sources?limit=2&offset=0');
    const badQuery = await call('GET', '/api/v1/ingestion/sources?limit=500&offset=-1&colour=red', keys.viewA);
    expect(badQuery.status).toBe(400);
    expect(badQuery.json.error).toMatch(/query\.limit: at most 100/);
    expect(badQuery.json.error).toMatch(/query\.offset/);
    expect(badQuery.json.error).toMatch(/unknown field\(s\) "colour"/);
    for (const id of ids) expect((await call('DELETE', `/api/v1/ingestion/sources/${id}`, keys.opsA)).status).toBe(204);
  });

  it('refuses bad bodies with 400 naming every field, before anything reaches Airbyte', async () => {
    const posts = () => ab.received.filter((r) => r.method !== 'GET' && !r.path.endsWith('/applications/token')).length;
    const before = posts();
    const empty = await call('POST', '/api/v1/ingestion/sources', keys.opsA, {});
    expect(empty.status).toBe(400);
    expect(empty.json.problems.map((p: { path: string }) => p.path).sort()).toEqual([
      'body.configuration',
      'body.name',
    ]);

    const bad = await call('POST', '/api/v1/ingestion/sources', keys.opsA, {
      name: '',
      configuration: 'host=db;password=x',
      definitionId: 'postgres',
      bogus: 1,
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/body\.name: write a name/);
    expect(bad.json.error).toMatch(/body\.configuration: configuration is an object/);
    expect(bad.json.error).toMatch(/body\.definitionId: a source definition id is a UUID/);
    expect(bad.json.error).toMatch(/unknown field\(s\) "bogus"/);
    expect(bad.text).not.toContain('password=x');

    const untyped = await call('POST', '/api/v1/ingestion/destinations', keys.opsA, {
      name: 'x',
      configuration: { host: 'h' },
    });
    expect(untyped.status).toBe(400);
    expect(untyped.json.error).toMatch(/body\.configuration\.destinationType: name the connector/);

    const conn = await call('POST', '/api/v1/ingestion/connections', keys.opsA, {
      sourceId: 'nope',
      schedule: { scheduleType: 'cron' },
      status: 'exploded',
    });
    expect(conn.status).toBe(400);
    expect(conn.json.problems.map((p: { path: string }) => p.path).sort()).toEqual([
      'body.destinationId',
      'body.name',
      'body.schedule.cronExpression',
      'body.sourceId',
      'body.status',
    ]);

    const nothing = await call('PATCH', `/api/v1/ingestion/sources/${crypto.randomUUID()}`, keys.opsA, {});
    expect(nothing.status).toBe(400);
    expect(nothing.json.error).toMatch(/nothing to change/);
    expect(
      (
        await call('PATCH', `/api/v1/ingestion/connections/${crypto.randomUUID()}`, keys.opsA, {
          sourceId: crypto.randomUUID(),
        })
      ).json.error,
    ).toMatch(/unknown field\(s\) "sourceId"/);
    expect(posts()).toBe(before);

    // Another workspace named in a body: 403 saying what to write.
    const foreign = await call('POST', '/api/v1/ingestion/sources', keys.opsA, { ...pgSource('x'), workspaceId: wsB });
    expect(foreign.status).toBe(403);
    expect(foreign.json.error).toBe(
      `body.workspaceId: tenant ${tenantA} works in Airbyte workspace ${wsA}; leave workspaceId out or write ${wsA}`,
    );
    expect(posts()).toBe(before);
  });

  it('maps Airbyte’s refusals to the same status with its detail, never quoting the configuration', async () => {
    const unknownType = await call('POST', '/api/v1/ingestion/sources', keys.opsA, {
      name: 'x',
      configuration: { sourceType: 'oracle-hunter2', password: PASSWORD },
    });
    expect(unknownType.status).toBe(400);
    expect(unknownType.json.error).toMatch(
      /^Airbyte refused the request: configuration\.sourceType: unknown source type "\*\*\*"$/,
    );
    expect(unknownType.text).not.toContain('oracle-hunter2');
    expect(unknownType.text).not.toContain(PASSWORD);
    const unknownDef = await call('POST', '/api/v1/ingestion/destinations', keys.opsA, {
      name: 'x',
      definitionId: '00000000-0000-4000-8000-000000000000',
      configuration: {},
    });
    expect(unknownDef.status).toBe(404);
    expect(unknownDef.json.error).toBe(
      'Airbyte refused the request: Could not find a destination definition with id: 00000000-0000-4000-8000-000000000000',
    );
    // Airbyte unreachable: 502.
    const down = await call('GET', '/api/v1/ingestion/sources', keys.viewA, undefined, downBase);
    expect(down.status).toBe(502);
    expect(down.json.error).toMatch(/^Airbyte is unavailable \(no answer\)/);
  });

  it('keeps tenants apart: another workspace’s resources answer 404 and its lists are empty', async () => {
    const sourceId = (await call('POST', '/api/v1/ingestion/sources', keys.opsA, pgSource('a-only'))).json
      .sourceId as string;
    const destinationId = (await call('POST', '/api/v1/ingestion/destinations', keys.opsA, s3Destination('a-dest')))
      .json.destinationId as string;
    const connectionId = (
      await call('POST', '/api/v1/ingestion/connections', keys.opsA, { name: 'a-conn', sourceId, destinationId })
    ).json.connectionId as string;

    for (const [kind, id] of [
      ['sources', sourceId],
      ['destinations', destinationId],
      ['connections', connectionId],
    ] as const) {
      const one = kind.slice(0, -1);
      const get = await call('GET', `/api/v1/ingestion/${kind}/${id}`, keys.opsB);
      expect(get.status).toBe(404);
      expect(get.json.error).toBe(`no ${one} ${id} in the Airbyte workspace of tenant ${tenantB}`);
      // The same answer as for an id that exists nowhere.
      const nowhere = crypto.randomUUID();
      expect((await call('GET', `/api/v1/ingestion/${kind}/${nowhere}`, keys.opsB)).json.error).toBe(
        `no ${one} ${nowhere} in the Airbyte workspace of tenant ${tenantB}`,
      );
      expect((await call('PATCH', `/api/v1/ingestion/${kind}/${id}`, keys.opsB, { name: 'stolen' })).status).toBe(404);
      expect((await call('DELETE', `/api/v1/ingestion/${kind}/${id}`, keys.opsB)).status).toBe(404);
      expect((await call('GET', `/api/v1/ingestion/${kind}`, keys.opsB)).json.data).toEqual([]);
      // Still there, unchanged, for its own tenant.
      const mine = await call('GET', `/api/v1/ingestion/${kind}/${id}`, keys.viewA);
      expect(mine.status).toBe(200);
      expect(mine.json.name).not.toBe('stolen');
    }

    // B cannot wire A's connectors into a connection, even with its own destination.
    const bDest = (await call('POST', '/api/v1/ingestion/destinations', keys.opsB, s3Destination('b-dest'))).json;
    expect(bDest.workspaceId).toBe(wsB);
    const cross = await call('POST', '/api/v1/ingestion/connections', keys.opsB, {
      name: 'steal',
      sourceId,
      destinationId: bDest.destinationId,
    });
    expect(cross.status).toBe(404);
    expect(cross.json.error).toBe(`body.sourceId: no source ${sourceId} in the Airbyte workspace of tenant ${tenantB}`);
    expect([...ab.connectionRecs.values()].filter((c) => c.name === 'steal')).toEqual([]);
    expect(
      (await call('GET', '/api/v1/ingestion/destinations', keys.opsB)).json.data.map(
        (d: { destinationId: string }) => d.destinationId,
      ),
    ).toEqual([bDest.destinationId]);

    // A resource Airbyte holds in a workspace no tenant is mapped to is invisible too.
    const direct = new AirbyteClient({ baseUrl: ab.baseUrl, clientId: ab.clientId, clientSecret: ab.clientSecret });
    const stray = await direct.createSource({
      name: 'stray',
      workspaceId: ab.addWorkspace(),
      configuration: { sourceType: 'faker' },
    });
    expect((await call('GET', `/api/v1/ingestion/sources/${stray.sourceId}`, keys.viewA)).status).toBe(404);
    expect(
      (await call('GET', '/api/v1/ingestion/sources', keys.viewA)).json.data.map(
        (s: { sourceId: string }) => s.sourceId,
      ),
    ).toEqual([sourceId]);
  });

  it('needs the operator role to write; a viewer reads', async () => {
    const sourceId = (await call('POST', '/api/v1/ingestion/sources', keys.opsA, pgSource('roles'))).json
      .sourceId as string;
    const w = await call('POST', '/api/v1/ingestion/sources', keys.viewA, pgSource('nope'));
    expect(w.status).toBe(403);
    expect(w.json.error).toBe('this needs the operator role; your key is viewer');
    expect((await call('PATCH', `/api/v1/ingestion/sources/${sourceId}`, keys.viewA, { name: 'nope' })).status).toBe(
      403,
    );
    expect((await call('DELETE', `/api/v1/ingestion/sources/${sourceId}`, keys.viewA)).status).toBe(403);
    expect(
      (
        await call('POST', '/api/v1/ingestion/connections', keys.viewA, {
          name: 'n',
          sourceId,
          destinationId: sourceId,
        })
      ).status,
    ).toBe(403);
    const still = await call('GET', `/api/v1/ingestion/sources/${sourceId}`, keys.viewA);
    expect(still.status).toBe(200);
    expect(still.json.name).toBe('roles');
    expect((await call('GET', '/api/v1/ingestion/sources', undefined as unknown as string)).status).toBe(401);
  });

  it('says what to configure: 409 for a tenant without a workspace, 503 for an API without Airbyte', async () => {
    const tenant = `ing-none-${stack.tenant}`;
    for (const [m, u] of [
      ['GET', '/api/v1/ingestion/sources'],
      ['POST', '/api/v1/ingestion/destinations'],
      ['GET', `/api/v1/ingestion/connections/${crypto.randomUUID()}`],
    ] as const) {
      const r = await call(m, u, keys.unmapped, m === 'POST' ? s3Destination('x') : undefined);
      expect(r.status).toBe(409);
      expect(r.json.error).toBe(
        `tenant ${tenant} has no Airbyte workspace: add ${tenant}=<workspace uuid> to STRATA_AIRBYTE_WORKSPACES in the API's environment`,
      );
    }
    const bare = await call('GET', '/api/v1/ingestion/sources', keys.viewA, undefined, bareBase);
    expect(bare.status).toBe(503);
    expect(bare.json.error).toMatch(
      /^Airbyte is not configured for this API: set AIRBYTE_URL, AIRBYTE_CLIENT_ID and AIRBYTE_CLIENT_SECRET/,
    );
    expect((await call('POST', '/api/v1/ingestion/sources', keys.opsA, pgSource('x'), bareBase)).status).toBe(503);
  });

  it('documents the bodies in OpenAPI', async () => {
    const doc = (await call('GET', '/docs/json', keys.viewA)).json;
    const body = (p: string, m: string) => doc.paths[p][m].requestBody.content['application/json'].schema;
    expect(body('/api/v1/ingestion/sources', 'post').required).toEqual(
      expect.arrayContaining(['name', 'configuration']),
    );
    expect(body('/api/v1/ingestion/connections', 'post').required).toEqual(
      expect.arrayContaining(['name', 'sourceId', 'destinationId']),
    );
    expect(Object.keys(body('/api/v1/ingestion/destinations/{id}', 'patch').properties)).toEqual(
      expect.arrayContaining(['name', 'configuration']),
    );
    expect(doc.paths['/api/v1/ingestion/connections/{id}'].delete).toBeDefined();
  });
});
