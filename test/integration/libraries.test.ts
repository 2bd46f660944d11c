/**
 * UDF libraries end to end: uploaded over HTTP (buildApi in-process on the harness's Postgres,
 * Temporal and MinIO lake) into the tenant's prefix, versioned, refused across tenants and
 * while pinned; then a pipeline's Spark and EMR jobs against the protocol doubles carry the
 * JARs from the tenant's lake and register the functions before the task's SQL.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { forTenant } from '../../activities/lake/open.js';
import type { LakeDeps } from '../../activities/lake/engine.js';
import { loadConfig } from '../../schemas/config.js';
import type { RunState } from '../../schemas/run.js';
import { createKey } from '../../store/keys.js';
import { STEP_SCENARIOS } from '../fakes/emr-double.js';
import { extLake, extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { spec } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

/** A real zip archive (entries stored uncompressed), as a JAR or a wheel is. */
function zip(entries: Record<string, string>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(entries)) {
    const data = Buffer.from(text);
    const n = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    locals.push(local, n, data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(entries).length, 8);
  end.writeUInt16LE(Object.keys(entries).length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const JAR_V3 = zip({
  'META-INF/MANIFEST.MF': 'Manifest-Version: 1.0\n',
  'com/acme/udf/ToCents.class': 'cafebabe-v3',
  'com/acme/udf/Mask.class': 'cafebabe-mask',
});
const JAR_V4 = zip({ 'META-INF/MANIFEST.MF': 'Manifest-Version: 1.0\n', 'com/acme/udf/ToCents.class': 'cafebabe-v4' });
const WHEEL = zip({ 'money/__init__.py': '', 'money/cents.py': 'def to_cents(x):\n    return int(x * 100)\n' });
const FNS = [
  { name: 'to_cents', class: 'com.acme.udf.ToCents', returnType: 'bigint' },
  { name: 'mask', class: 'com.acme.udf.Mask', returnType: 'string' },
];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let stack: TestStack;
/** This file's tenant: its lake folder and Spark namespace are its own. */
const ACME = 'lib-acme';
let d: Doubles;
let app: FastifyInstance;
let lake: LakeDeps;
let root: string;
let clusterId: string;
const key: Record<string, string> = {};

beforeAll(async () => {
  [stack, d] = await Promise.all([extTestStack('libraries'), startDoubles({ tenant: ACME, sparkTenants: [ACME] })]);
  const l = await extLake(stack);
  root = l.root;
  lake = l.lake!;
  Object.assign(d.deps, { lake: l.lake, s3: l.s3 });
  clusterId = d.emr.addCluster('udf-warehouse', undefined, { 'strata:tenant': ACME });
  const config = loadConfig({ STRATA_TASK_QUEUE: stack.taskQueue, TEMPORAL_ADDRESS: inject('temporalAddress') });
  ({ app } = await buildApi({ db: stack.db, client: stack.client, config, dispatcher: false, lake }));
  for (const [name, tenant, role] of [
    ['acme', ACME, 'admin'],
    ['acmeViewer', ACME, 'viewer'],
    ['globex', 'globex', 'admin'],
  ] as const)
    key[name] = (await createKey(stack.db, tenant, role, name)).secret;
});
afterAll(async () => {
  await app?.close();
  await d?.close();
  await stack?.close();
});

function upload(who: string, q: string, body: Buffer, o: { type?: string; functions?: unknown } = {}) {
  return app.inject({
    method: 'POST',
    url: `/api/v1/libraries?${q}`,
    headers: {
      authorization: `Bearer ${key[who]}`,
      'content-type': o.type ?? 'application/java-archive',
      ...(o.functions !== undefined ? { 'strata-functions': JSON.stringify(o.functions) } : {}),
    },
    payload: body,
  });
}
const get = (who: string, url: string) =>
  app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key[who]}` } });
const del = (who: string, url: string) =>
  app.inject({ method: 'DELETE', url, headers: { authorization: `Bearer ${key[who]}` } });
const register = (who: string, body: unknown) =>
  app.inject({
    method: 'POST',
    url: '/api/v1/pipelines',
    headers: { authorization: `Bearer ${key[who]}`, 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });

const PINNING = (version: number | string, functions = ['to_cents']) => ({
  id: 'cents',
  tasks: [
    {
      id: 'agg',
      kind: 'sql',
      engine: 'spark',
      sql: 'select to_cents(amount) from silver.orders',
      libraries: [{ name: 'udfs', version, functions }],
    },
  ],
});

describe('UDF libraries over the API', () => {
  it('uploads a JAR into the tenant prefix with its SHA-256 and functions; the same bytes again are a no-op, other bytes a 409', async () => {
    const r = await upload('acme', 'name=udfs&version=3', JAR_V3, { functions: FNS });
    expect(r.statusCode, r.body).toBe(201);
    expect(r.json()).toMatchObject({
      name: 'udfs',
      version: '3',
      kind: 'jar',
      file: 'udfs-3.jar',
      key: 'libraries/udfs/3/udfs-3.jar',
      sha256: sha(JAR_V3),
      sizeBytes: JAR_V3.length,
      created: true,
    });
    expect(r.json().uri).toBe(`${root}/${ACME}/libraries/udfs/3/udfs-3.jar`);
    // The bytes are in acme's lake, under its prefix, exactly as sent.
    const stored = await forTenant(lake, ACME).store.getBytes('libraries/udfs/3/udfs-3.jar');
    expect(sha(Buffer.from(stored))).toBe(sha(JAR_V3));
    const rows = await stack.db.query<{ function: string; class: string; return_type: string }>(
      `SELECT function, class, return_type FROM library_functions WHERE tenant = '${ACME}' AND name = 'udfs' AND version = '3' ORDER BY function`,
    );
    expect(rows.rows).toEqual([
      { function: 'mask', class: 'com.acme.udf.Mask', return_type: 'string' },
      { function: 'to_cents', class: 'com.acme.udf.ToCents', return_type: 'bigint' },
    ]);

    const again = await upload('acme', 'name=udfs&version=3', JAR_V3, { functions: [...FNS].reverse() });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().created).toBe(false);

    const other = await upload('acme', 'name=udfs&version=3', JAR_V4, { functions: [FNS[0]] });
    expect(other.statusCode).toBe(409);
    expect(other.json().error).toMatch(/version 3 already exists with other content.*upload this one as a new version/);
    // Version 3 is untouched, in the lake and the metastore.
    expect(sha(Buffer.from(await forTenant(lake, ACME).store.getBytes('libraries/udfs/3/udfs-3.jar')))).toBe(
      sha(JAR_V3),
    );

    expect((await upload('acme', 'name=udfs&version=4', JAR_V4, { functions: [FNS[0]] })).statusCode).toBe(201);
    const py = await upload('acme', 'name=money&version=1.0.0&file=money-1.0.0-py3-none-any.whl', WHEEL, {
      type: 'application/zip',
      functions: [{ name: 'py_cents', class: 'money.cents.to_cents', returnType: 'bigint' }],
    });
    expect(py.statusCode, py.body).toBe(201);
    expect(py.json()).toMatchObject({ kind: 'python', key: 'libraries/money/1.0.0/money-1.0.0-py3-none-any.whl' });
  });

  it('refuses what is not a library or declares a class the archive lacks, saying what to change', async () => {
    const bad = async (r: Awaited<ReturnType<typeof upload>>, status: number, msg: RegExp) => {
      expect(r.statusCode, r.body).toBe(status);
      expect(r.json().error).toMatch(msg);
    };
    await bad(await upload('acme', 'name=udfs&version=9', Buffer.from('not a jar')), 400, /not a JAR/);
    await bad(
      await upload('acme', 'name=udfs&version=9', JAR_V3, { functions: [{ name: 'x', class: 'com.acme.udf.Nope' }] }),
      400,
      /class com\.acme\.udf\.Nope is not in the JAR/,
    );
    await bad(
      await upload('acme', 'name=udfs&version=9', JAR_V3, {
        functions: [{ name: 'x', class: "a'; DROP TABLE t; --" }],
      }),
      400,
      /fully qualified Java class/,
    );
    await bad(
      await upload('acme', 'name=udfs&version=9', JAR_V3, { type: 'application/octet-stream' }),
      415,
      /application\/java-archive/,
    );
    await bad(await upload('acme', 'version=9', JAR_V3), 400, /missing query parameter name/);
    await bad(await upload('acmeViewer', 'name=udfs&version=9', JAR_V3), 403, /admin role/);
    expect((await stack.db.query("SELECT 1 FROM library_versions WHERE version = '9'")).rowCount).toBe(0);
  });

  it('lists libraries and versions for their tenant only', async () => {
    const list = await get('acmeViewer', '/api/v1/libraries');
    expect(list.statusCode).toBe(200);
    expect(list.json().data.map((l: { name: string; versions: number }) => [l.name, l.versions])).toEqual([
      ['money', 1],
      ['udfs', 2],
    ]);
    const versions = await get('acmeViewer', '/api/v1/libraries/udfs/versions');
    expect(versions.json().data.map((v: { version: string }) => v.version)).toEqual(['4', '3']);
    expect(
      (await get('acmeViewer', '/api/v1/libraries/udfs/3')).json().functions.map((f: { name: string }) => f.name),
    ).toEqual(['mask', 'to_cents']);
    // Another tenant sees none of it.
    expect((await get('globex', '/api/v1/libraries')).json().data).toEqual([]);
    expect((await get('globex', '/api/v1/libraries/udfs')).statusCode).toBe(404);
    expect((await get('globex', '/api/v1/libraries/udfs/3')).statusCode).toBe(404);
    expect((await del('globex', '/api/v1/libraries/udfs/3')).statusCode).toBe(404);
  });

  it('checks pinned libraries at registration: unknown library, version or function is a 400 naming it; another tenant’s is unknown', async () => {
    const unknownVersion = await register('acme', PINNING(7));
    expect(unknownVersion.statusCode).toBe(400);
    expect(unknownVersion.json().error).toMatch(
      /tasks\[0\]\.libraries\[0\]: library "udfs" has no version "7": use one of 4, 3/,
    );
    const unknownFn = await register('acme', PINNING(4, ['to_cents', 'mask']));
    expect(unknownFn.statusCode).toBe(400);
    expect(unknownFn.json().error).toMatch(
      /libraries\[0\]\.functions\[1\]: library "udfs" 4 declares no function "mask"/,
    );
    const pyOnSql = await register('acme', {
      id: 'py-sql',
      tasks: [
        { id: 'q', kind: 'sql', engine: 'spark', sql: 'select 1', libraries: [{ name: 'money', version: '1.0.0' }] },
      ],
    });
    expect(pyOnSql.json().error).toMatch(/is a Python package: only pyspark tasks can use it/);
    const duck = await register('acme', {
      id: 'duck',
      tasks: [{ id: 'q', kind: 'sql', sql: 'select 1', libraries: [{ name: 'udfs', version: 3 }] }],
    });
    expect(duck.json().error).toMatch(/library "udfs" 3 is a JAR: a duckdb task uses DuckDB macro libraries only/);
    const script = await register('acme', {
      id: 'hv',
      tasks: [
        { id: 'q', kind: 'hive', clusterId: 'j-ABC', script: 'hql/a.hql', libraries: [{ name: 'udfs', version: 3 }] },
      ],
    });
    expect(script.json().error).toMatch(/libraries are registered ahead of an inline "query"/);
    const globex = await register('globex', PINNING(3));
    expect(globex.statusCode).toBe(400);
    expect(globex.json().error).toMatch(/no library "udfs": upload it with POST \/api\/v1\/libraries/);
    expect(
      (await stack.db.query("SELECT 1 FROM pipelines WHERE id IN ('cents', 'py-sql', 'duck', 'hv')")).rowCount,
    ).toBe(0);
  });

  it('refuses to delete a version the current version of a pipeline pins, and deletes it once unpinned', async () => {
    expect((await register('acme', PINNING(3))).statusCode).toBe(201);
    const refused = await del('acme', '/api/v1/libraries/udfs/3');
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error).toMatch(/pinned by pipeline\(s\) cents/);
    expect((await get('acme', '/api/v1/libraries/udfs/3')).statusCode).toBe(200);
    // Version 4 is not pinned: it goes, object and row.
    expect((await del('acme', '/api/v1/libraries/udfs/4')).statusCode).toBe(204);
    expect(await forTenant(lake, ACME).store.head('libraries/udfs/4/udfs-4.jar')).toBeFalsy();
    expect((await get('acme', '/api/v1/libraries/udfs/4')).statusCode).toBe(404);
    // A new pipeline version that pins nothing frees version 3 (older versions do not hold it).
    expect((await register('acme', { id: 'cents', tasks: [{ id: 'agg', kind: 'noop' }] })).statusCode).toBe(201);
    expect((await del('acme', '/api/v1/libraries/udfs/3')).statusCode).toBe(204);
    expect(await forTenant(lake, ACME).store.head('libraries/udfs/3/udfs-3.jar')).toBeFalsy();
    // Re-uploaded for the jobs below.
    expect((await upload('acme', 'name=udfs&version=3', JAR_V3, { functions: FNS })).statusCode).toBe(201);
  });
});

const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };

const run = (s: ReturnType<typeof spec>, tenant = ACME): Promise<RunState> => stack.runToEnd(s, { tenant });

describe('jobs that use libraries', () => {
  it('Spark applications carry the JAR from the tenant lake and register the functions before the SQL; EMR steps get --jars or ADD JAR', async () => {
    d.kube.sim.scenario = () => ({ runMs: 300 });
    d.emr.stepScenario = () => STEP_SCENARIOS.success(100);
    const udfs = { name: 'udfs', version: 3, functions: ['to_cents', 'mask'] };
    const s = spec({
      id: 'udf-jobs',
      tasks: [
        {
          id: 'k8s_sql',
          kind: 'sql',
          engine: 'spark',
          sql: 'select to_cents(amount) from t',
          libraries: [udfs],
          poll: FAST,
        },
        {
          id: 'k8s_py',
          kind: 'pyspark',
          file: 'jobs/agg.py',
          libraries: [udfs, { name: 'money', version: '1.0.0', functions: ['py_cents'] }],
          poll: FAST,
        },
        {
          id: 'emr_sql',
          kind: 'sql',
          engine: 'emr',
          clusterId,
          sql: 'select mask(email) from t',
          libraries: [{ name: 'udfs', version: 3, functions: ['mask'] }],
          poll: FAST,
        },
        {
          id: 'emr_hive',
          kind: 'hive',
          clusterId,
          query: 'select to_cents(amount) from t',
          libraries: [{ name: 'udfs', version: 3, functions: ['to_cents'] }],
          poll: FAST,
        },
      ],
    });
    const st = await withExtWorker(stack, d.deps, () => run(s));
    expect(st.status, JSON.stringify(st.tasks)).toBe('success');

    const s3a = `${root.replace(/^s3:/, 's3a:')}/${ACME}`;
    const jar = `${s3a}/libraries/udfs/3/udfs-3.jar`;
    const apps = (await d.kube.apps('udf-jobs')) as any[];
    const app = (task: string) => apps.find((a) => a.metadata.labels?.['strata.dev/task'] === task)!;
    const sqlApp = app('k8s_sql');
    expect(sqlApp.metadata.namespace).toBe(`strata-${ACME}`);
    expect(sqlApp.spec.deps).toEqual({ jars: [jar] });
    expect(sqlApp.spec.arguments).toEqual([
      '--sql',
      "CREATE TEMPORARY FUNCTION to_cents AS 'com.acme.udf.ToCents';\nCREATE TEMPORARY FUNCTION mask AS 'com.acme.udf.Mask';\nselect to_cents(amount) from t",
    ]);
    const pyApp = app('k8s_py');
    expect(pyApp.spec.deps).toEqual({
      jars: [jar],
      pyFiles: [`${s3a}/libraries/money/1.0.0/money-1.0.0-py3-none-any.whl`],
    });
    // The functions reach the job as settings only Strata sets (a spec's own value is refused by the tier policy).
    expect(JSON.parse(pyApp.spec.sparkConf['spark.strata.functions'])).toEqual([
      "CREATE TEMPORARY FUNCTION to_cents AS 'com.acme.udf.ToCents'",
      "CREATE TEMPORARY FUNCTION mask AS 'com.acme.udf.Mask'",
    ]);
    expect(JSON.parse(pyApp.spec.sparkConf['spark.strata.pythonFunctions'])).toEqual([
      { name: 'py_cents', function: 'money.cents.to_cents', returnType: 'bigint' },
    ]);

    const s3jar = `${root}/${ACME}/libraries/udfs/3/udfs-3.jar`;
    const steps = [...d.emr.clusters.get(clusterId)!.steps];
    const args = (task: string) =>
      steps.find((x) => new RegExp(`udf-jobs.*task-${task.replace('_', '-')}`).test(x.Name))!.Config.Args;
    expect(args('emr_sql')).toEqual([
      'spark-sql',
      '--jars',
      s3jar,
      '-e',
      "CREATE TEMPORARY FUNCTION mask AS 'com.acme.udf.Mask';\nselect mask(email) from t",
    ]);
    expect(args('emr_hive')).toEqual([
      'hive',
      '-e',
      `ADD JAR ${s3jar};\nCREATE TEMPORARY FUNCTION to_cents AS 'com.acme.udf.ToCents' USING JAR '${s3jar}';\nselect to_cents(amount) from t`,
    ]);
  });

  it('a job of another tenant naming the library fails before anything is submitted', async () => {
    const before = d.kube.tap.count('POST', /\/sparkapplications$/);
    const st = await withExtWorker(stack, d.deps, () =>
      run(
        spec({
          id: 'udf-steal',
          tasks: [
            {
              id: 'q',
              kind: 'sql',
              engine: 'spark',
              sql: 'select 1',
              libraries: [{ name: 'udfs', version: 3, functions: ['to_cents'] }],
              poll: FAST,
            },
          ],
        }),
        'globex',
      ),
    );
    expect(st.status).toBe('failed');
    expect(st.tasks.q.errorType).toBe('LibraryNotFound');
    expect(st.tasks.q.error).toMatch(/no library "udfs" version "3"/);
    expect(d.kube.tap.count('POST', /\/sparkapplications$/)).toBe(before);
  });
});
