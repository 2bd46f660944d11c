/**
 * The API contract at /docs/json: valid OpenAPI 3.0.3 by a third-party validator
 * (@apidevtools/swagger-parser), no JSON Schema 2020-12 forms, every operation's error
 * answers documented with the one error schema, and that schema fits what the API sends.
 * The API is the real one (buildApi) on an embedded metastore; Temporal is never called.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { Client, Connection } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { ANY_ROLE, matches, NO_KEY, SPECIFIC } from '../../api/openapi.js';
import { loadConfig } from '../../schemas/config.js';
import { openDb, type Db } from '../../store/db.js';
import { migrate } from '../../store/migrate.js';
import { newAjv } from '../fakes/specs-dir.js';

const KEY = 'openapi-test-admin-key-0123456789';
let db: Db;
let app: FastifyInstance;
let doc: any;

beforeAll(async () => {
  db = await openDb({});
  await migrate(db);
  const client = new Client({ connection: Connection.lazy({ address: '127.0.0.1:1' }) });
  ({ app } = await buildApi({
    db,
    client,
    config: loadConfig({ STRATA_BOOTSTRAP_ADMIN_KEY: KEY, STRATA_BOOTSTRAP_TENANT: 'docs' }),
    dispatcher: false,
  }));
  const res = await app.inject({ method: 'GET', url: '/docs/json' });
  expect(res.statusCode).toBe(200);
  doc = res.json();
});
afterAll(async () => {
  await app?.close();
  await db?.close();
});

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'options', 'head'];
const operations = () =>
  Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.includes(m))
      .map(([method, op]) => ({ path, method, op })),
  );

/** Every place a JSON Schema 2020-12 form appears that OpenAPI 3.0 does not have. */
function modernForms(node: unknown, at = '#'): string[] {
  if (Array.isArray(node)) return node.flatMap((v, i) => modernForms(v, `${at}/${i}`));
  if (!node || typeof node !== 'object') return [];
  const o = node as Record<string, unknown>;
  const out: string[] = [];
  for (const k of ['exclusiveMinimum', 'exclusiveMaximum'])
    if (k in o && typeof o[k] !== 'boolean') out.push(`${at}/${k} is a number`);
  for (const k of ['const', '$schema', '$defs', 'prefixItems', 'unevaluatedProperties', 'dependentRequired'])
    if (k in o && !at.endsWith('/properties')) out.push(`${at}/${k}`);
  if (Array.isArray(o.type)) out.push(`${at}/type is an array`);
  for (const [k, v] of Object.entries(o)) out.push(...modernForms(v, `${at}/${k}`));
  return out;
}

describe('the OpenAPI document at /docs/json', () => {
  it('validates as the OpenAPI version it declares (3.0.3) with @apidevtools/swagger-parser', async () => {
    expect(doc.openapi).toBe('3.0.3');
    expect(operations().length).toBeGreaterThan(50);
    const validated = await SwaggerParser.validate(structuredClone(doc));
    expect(Object.keys(validated.paths ?? {})).toEqual(Object.keys(doc.paths));
  });

  it('the validator has teeth: a 2020-12 numeric exclusiveMinimum or a missing error schema fails it', async () => {
    const bad = structuredClone(doc);
    bad.paths['/api/v1/pipelines/{id}/runs'].post.requestBody.content['application/json'].schema.properties.version = {
      type: 'integer',
      exclusiveMinimum: 0,
    };
    await expect(SwaggerParser.validate(bad)).rejects.toThrow(/exclusiveMinimum/);
    const noError = structuredClone(doc);
    delete noError.components.schemas.Error;
    await expect(SwaggerParser.validate(noError)).rejects.toThrow(/Error/);
  });

  it('has no JSON Schema 2020-12 forms anywhere (numeric exclusiveMinimum, const, type arrays, $defs)', () => {
    expect(modernForms(doc)).toEqual([]);
    // The request bodies keep their constraints in 3.0 form: a version must be above 0.
    const version =
      doc.paths['/api/v1/pipelines/{id}/runs'].post.requestBody.content['application/json'].schema.properties.version;
    expect(version).toMatchObject({ type: 'integer', minimum: 0, exclusiveMinimum: true });
  });

  it('documents every operation’s error answers with the shared error schema', () => {
    const byStatus = new Map<string, number>();
    for (const { path, method, op } of operations()) {
      const codes = Object.keys(op.responses);
      const expected = ['400', '500'];
      const keyed = !['/health', '/ready', '/metrics'].includes(path) && !NO_KEY.some((k) => matches(k, method, path));
      if (keyed) expected.push('401');
      if (path.includes('{') && method !== 'options') expected.push('404');
      if (['post', 'patch', 'put'].includes(method)) expected.push('413', '415');
      if (keyed && method !== 'get' && !ANY_ROLE.includes(`${method.toUpperCase()} ${path}`)) expected.push('403');
      expect(codes, `${method.toUpperCase()} ${path}`).toEqual(expect.arrayContaining(expected));
      for (const c of codes.filter((x) => Number(x) >= 400)) {
        byStatus.set(c, (byStatus.get(c) ?? 0) + 1);
        expect(op.responses[c].description, `${method} ${path} ${c}`).toMatch(/\w{4}/);
        if (path === '/ready' && c === '503') continue;
        // The Iceberg REST catalog answers in its own spec's error shape.
        expect(op.responses[c].content['application/json'].schema, `${method} ${path} ${c}`).toEqual({
          $ref: `#/components/schemas/${path.startsWith('/iceberg/') ? 'IcebergError' : 'Error'}`,
        });
      }
    }
    // The route-specific answers are there too.
    expect(Object.keys(doc.paths['/api/v1/runs/{run}/repair'].post.responses)).toEqual(
      expect.arrayContaining(['403', '404', '409', '503']),
    );
    expect(Object.keys(doc.paths['/api/v1/ingestion/sources'].post.responses)).toEqual(
      expect.arrayContaining(['409', '502', '503']),
    );
    expect(Object.keys(doc.paths['/api/v1/datasets/{ref}/preview'].get.responses)).toContain('410');
    expect(Object.keys(doc.paths['/health'].get.responses)).not.toContain('401');
    expect(Object.keys(doc.paths['/iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table}'].post.responses)).toEqual(
      expect.arrayContaining(['403', '404', '409', '503']),
    );
    for (const c of ['400', '401', '403', '404', '409', '413', '415', '500'])
      expect(byStatus.get(c), c).toBeGreaterThan(0);
    expect(doc.components.schemas.Error).toMatchObject({ type: 'object', required: ['error', 'requestId'] });
  });

  it('every route-specific error rule names operations that exist (no stale rules)', () => {
    const ops = operations();
    for (const key of [...Object.keys(SPECIFIC), ...NO_KEY, ...ANY_ROLE])
      expect(
        ops.some(({ method, path }) => matches(key, method, path)),
        key,
      ).toBe(true);
  });

  it('the error schema fits what the API answers: 400 with problems, 401, 404, 413, 415', async () => {
    const v = newAjv().compile({ ...doc.components.schemas.Error, additionalProperties: false });
    const auth = { authorization: `Bearer ${KEY}` };
    const answers = [
      await app.inject({ method: 'GET', url: '/api/v1/pipelines' }),
      await app.inject({ method: 'GET', url: '/api/v1/pipelines/nope', headers: auth }),
      await app.inject({
        method: 'POST',
        url: '/api/v1/keys',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: JSON.stringify({ role: 'emperor' }),
      }),
      await app.inject({
        method: 'POST',
        url: '/api/v1/keys',
        headers: { ...auth, 'content-type': 'text/csv' },
        payload: 'a,b',
      }),
      await app.inject({
        method: 'POST',
        url: '/api/v1/keys',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: JSON.stringify({ pad: 'x'.repeat(2_000_000) }),
      }),
    ];
    expect(answers.map((r) => r.statusCode)).toEqual([401, 404, 400, 415, 413]);
    for (const r of answers)
      expect(v(r.json()), `${r.statusCode} ${r.body.slice(0, 200)}: ${JSON.stringify(v.errors)}`).toBe(true);
    expect(answers[2].json().problems).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: expect.stringContaining('role') })]),
    );
    // And the schema has teeth: an answer without its request id does not fit.
    expect(v({ error: 'x' })).toBe(false);
  });
});
