/**
 * Secrets stay secret in Temporal: payloads are encrypted per tenant by the payload codec,
 * the server (and anyone reading history without the codec) sees ciphertext, the API's
 * codec endpoint decodes only for the payload's tenant, keys rotate, and relabelled
 * payloads do not decrypt. Also: /metrics and /ready answer without tenant data.
 */
import { Client, Connection } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { NativeConnection } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { fromJson, toJson } from '../../api/codec.js';
import { RunsService } from '../../client/runs.js';
import { workflowIdFor } from '../../schemas/workflow-ids.js';
import { SchedulesService } from '../../client/schedules.js';
import {
  META_KEY_ID,
  META_TENANT,
  PayloadDecryptError,
  payloadTenant,
  TenantPayloadCodec,
} from '../../client/codec.js';
import { strataDataConverter, tenantCodecOf } from '../../client/data-converter.js';
import { withTenant } from '../../client/tenant-scope.js';
import { loadConfig } from '../../schemas/config.js';
import { clusterWorkflowId } from '../../schemas/cluster.js';
import { parsePayloadKeys } from '../../schemas/payload-keys.js';
import type { RunState } from '../../schemas/run.js';
import { tenantOfWorkflowId } from '../../schemas/workflow-ids.js';
import { openDb } from '../../store/db.js';
import { clusterQuotaWorkflowId } from '../../workflows/cluster-messages.js';
import { createStrataWorker } from '../../workers/worker.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

const b64 = () => randomBytes(32).toString('base64');
const K = { acme1: b64(), acme2: b64(), globex1: b64(), platform: b64() };
/** Tenants of this file only (the runs index is shared with other test files). */
const sfx = randomBytes(3).toString('hex');
const T = { acme: `acme-${sfx}`, globex: `globex-${sfx}` } as const;
/** Before rotation: acme and globex each have a key `k1` (same id, different keys). */
const KEYS_V1 = `${T.acme}:k1=${K.acme1},${T.globex}:k1=${K.globex1},_platform:p1=${K.platform}`;
/** After: acme's k2 is newest (encrypts); k1 still decrypts. */
const KEYS_V2 = `${T.acme}:k2=${K.acme2},${T.acme}:k1=${K.acme1},${T.globex}:k1=${K.globex1},_platform:p1=${K.platform}`;

const dec = new TextDecoder();
const meta = (p: Payload, k: string) => (p.metadata?.[k] ? dec.decode(p.metadata[k]) : undefined);

describe('STRATA_PAYLOAD_KEYS', () => {
  it('parses tenants, key ids and the newest-first order', () => {
    const keys = parsePayloadKeys(KEYS_V2)!;
    expect(keys[T.acme].map((k) => k.id)).toEqual(['k2', 'k1']);
    expect(keys._platform.map((k) => k.id)).toEqual(['p1']);
    expect(keys[T.acme][0].key).toHaveLength(32);
    expect(parsePayloadKeys(undefined)).toBeUndefined();
    expect(parsePayloadKeys('  ')).toBeUndefined();
  });

  it('says what to change, naming entries by tenant:id and never printing key material', () => {
    const short = randomBytes(16).toString('base64');
    const cases: [string, RegExp][] = [
      [`acme:k1=${K.acme1}`, /no _platform key: add _platform:<id>=<key>/],
      [`acme-k1=${K.acme1},_platform:p1=${K.platform}`, /entry 1 is not TENANT:KEY_ID=BASE64_KEY/],
      [`Acme:k1=${K.acme1},_platform:p1=${K.platform}`, /entry 1 \(Acme:k1\): the tenant must be lower-case/],
      [`acme:k.1=${K.acme1},_platform:p1=${K.platform}`, /entry 1 \(acme:k\.1\): the key id must be/],
      [
        `acme:k1=${short},_platform:p1=${K.platform}`,
        /entry 1 \(acme:k1\): the key must be 32 bytes \(AES-256\), it is 16/,
      ],
      [`acme:k1=not base64!,_platform:p1=${K.platform}`, /entry 1 \(acme:k1\): the key is not base64/],
      [
        `acme:k1=${K.acme1},acme:k1=${K.acme2},_platform:p1=${K.platform}`,
        /entry 2 \(acme:k1\): acme:k1 is listed twice/,
      ],
    ];
    for (const [v, re] of cases) {
      expect(() => parsePayloadKeys(v), v).toThrow(re);
      try {
        loadConfig({ STRATA_PAYLOAD_KEYS: v });
        expect.unreachable(v);
      } catch (e) {
        const msg = (e as Error).message;
        expect(msg).toContain('STRATA_PAYLOAD_KEYS:');
        for (const secret of [K.acme1, K.acme2, K.platform, short]) expect(msg).not.toContain(secret);
      }
    }
    expect(loadConfig({ STRATA_PAYLOAD_KEYS: KEYS_V1 }).STRATA_PAYLOAD_KEYS).toBe(KEYS_V1);
  });
});

describe('tenantOfWorkflowId', () => {
  it('reads the tenant from every id shape Strata makes, and nothing from others', () => {
    const schedules = new SchedulesService(undefined as never, undefined as never, 'q');
    const cases: [string | undefined, string | undefined][] = [
      [workflowIdFor('acme', 'orders', 'manual-20260101T000000Z-ab12'), 'acme'],
      [`${workflowIdFor('acme', 'orders', 'x')}/task/spark_job`, 'acme'],
      ['pipeline/acme/orders/schedule-nightly-2026-01-01T00:00:00Z', 'acme'],
      [schedules.temporalId('globex', 'orders', 'nightly'), 'globex'],
      ['reconcile/acme/20260101T000000Z-ab12cd', 'acme'],
      [clusterWorkflowId('big-co', 'adhoc'), 'big-co'],
      [clusterQuotaWorkflowId('acme'), 'acme'],
      ['pipeline/_platform/x/y', undefined],
      ['pipeline/acme', undefined],
      ['bench-chain-1', undefined],
      ['other/acme/x', undefined],
      [undefined, undefined],
    ];
    for (const [id, tenant] of cases) expect(tenantOfWorkflowId(id), String(id)).toBe(tenant);
  });
});

describe('payload encryption on a real Temporal server', () => {
  let stack: TestStack;
  let connection: Connection;
  let native: NativeConnection;
  let raw: Client;
  const runIds: Record<string, string> = {};
  const marker = (t: string) => ({
    sql: `sql-marker-${t}-${randomBytes(4).toString('hex')}`,
    param: `param-marker-${t}-${randomBytes(4).toString('hex')}`,
  });
  const markers = { acme: marker('acme'), globex: marker('globex') };

  const codecClient = (keys: string) =>
    new Client({ connection, namespace: 'default', dataConverter: strataDataConverter(parsePayloadKeys(keys)) });
  const runsOf = (c: Client) =>
    new RunsService(c, { taskQueue: stack.taskQueue, namespace: 'default', uiUrl: 'http://127.0.0.1:8233' });
  const withWorker = async <T>(keys: string, fn: () => Promise<T>) => {
    const worker = await createStrataWorker({
      connection: native,
      taskQueue: stack.taskQueue,
      deps: { lakeRoot: stack.lakeRoot, connections: stack.connections, db: stack.db },
      workflowBundle: { codePath: inject('workflowBundlePath') },
      dataConverter: strataDataConverter(parsePayloadKeys(keys)),
    });
    return worker.runUntil(fn());
  };
  const pipeline = (t: 'acme' | 'globex') =>
    spec({
      id: `secret_${t}`,
      params: { token: 'default' },
      tasks: [
        {
          id: 'select',
          kind: 'sql',
          sql: `SELECT '${markers[t].sql}' AS label, {{ params.token | literal }} AS token, 42 AS answer`,
          output: `codec/${t}/{{ ds }}.parquet`,
        },
        { id: 'after', kind: 'noop', needs: ['select'] },
      ],
    });
  /**
   * Every payload in a raw (undecoded) history, except the two kinds the SDK never passes
   * through a codec (found by walking real histories): search attributes (indexed, plain by
   * design) and the patch markers core records for `patched()` (the patch id only).
   */
  const payloadsOf = (history: unknown): Payload[] => {
    const out: Payload[] = [];
    const walk = (v: unknown, key: string) => {
      if (!v || typeof v !== 'object' || v instanceof Uint8Array) return;
      if (key === 'searchAttributes' || key === 'header' || key === 'patch-data') return;
      const o = v as Record<string, unknown>;
      if (o.data instanceof Uint8Array && o.metadata && typeof o.metadata === 'object') return void out.push(o);
      for (const [k, x] of Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(o)) walk(x, k);
    };
    walk(history, '');
    return out;
  };
  const rawHistory = async (id: string) => raw.workflow.getHandle(id).fetchHistory();

  beforeAll(async () => {
    stack = await testStack('codec');
    connection = await Connection.connect({ address: inject('temporalAddress') });
    native = await NativeConnection.connect({ address: inject('temporalAddress') });
    raw = new Client({ connection, namespace: 'default' }); // no codec: what the server stores
    const runs = runsOf(codecClient(KEYS_V1));
    await withWorker(KEYS_V1, async () => {
      for (const t of ['acme', 'globex'] as const) {
        const h = await runs.start({
          spec: pipeline(t),
          tenant: T[t],
          trigger: 'manual',
          params: { token: markers[t].param },
        });
        runIds[t] = h.runId;
        const st = await runs.wait(h.runId);
        expect(st.status, JSON.stringify(st.tasks)).toBe('success');
      }
    });
  });
  afterAll(async () => {
    await native?.close();
    await connection?.close();
    await stack?.close();
  });

  it('stores only ciphertext: no SQL or param value anywhere in the raw history, every payload encrypted for its tenant', async () => {
    for (const t of ['acme', 'globex'] as const) {
      const history = await rawHistory(runIds[t]);
      const payloads = payloadsOf(history);
      expect(payloads.length).toBeGreaterThan(5);
      const text =
        JSON.stringify(history) +
        payloads
          .map((p) => Buffer.from(p.data ?? []).toString('utf8') + Buffer.from(p.data ?? []).toString('latin1'))
          .join('\n');
      for (const m of Object.values(markers[t])) expect(text).not.toContain(m);
      // The walk found them all: each is encrypted, labelled with this tenant and its key.
      for (const p of payloads) {
        expect(meta(p, 'encoding')).toBe('binary/encrypted');
        expect(meta(p, META_TENANT)).toBe(T[t]);
        expect(meta(p, META_KEY_ID)).toBe('k1');
      }
    }
  });

  it('runs normally with the codec: results, state and the decoded history read in clear', async () => {
    const c = codecClient(KEYS_V1);
    const st = (await c.workflow.getHandle(runIds.acme).result()) as RunState;
    expect(st.status).toBe('success');
    expect(st.tasks.select.output).toMatchObject({ rowCount: 1 });
    const codec = tenantCodecOf(c.options.loadedDataConverter)!;
    const decoded = await codec.decode(payloadsOf(await rawHistory(runIds.acme)));
    const text = decoded.map((p) => dec.decode(p.data ?? new Uint8Array())).join('\n');
    expect(text).toContain(markers.acme.sql);
    expect(text).toContain(markers.acme.param);
  });

  it('rotates keys: k1 histories still decode once k2 is newest, new runs use k2, and dropping k1 says which key is missing', async () => {
    const v2 = codecClient(KEYS_V2);
    expect(((await v2.workflow.getHandle(runIds.acme).result()) as RunState).status).toBe('success');
    const runs = runsOf(v2);
    const st = await withWorker(KEYS_V2, async () => {
      const h = await runs.start({
        spec: pipeline('acme'),
        tenant: T.acme,
        trigger: 'manual',
        params: { token: markers.acme.param },
      });
      runIds.acmeV2 = h.runId;
      return runs.wait(h.runId);
    });
    expect(st.status).toBe('success');
    const labels = new Set(
      payloadsOf(await rawHistory(runIds.acmeV2)).map((p) => `${meta(p, META_TENANT)}:${meta(p, META_KEY_ID)}`),
    );
    expect([...labels]).toEqual([`${T.acme}:k2`]);
    const onlyK2 = new TenantPayloadCodec(parsePayloadKeys(`${T.acme}:k2=${K.acme2},_platform:p1=${K.platform}`)!);
    const old = payloadsOf(await rawHistory(runIds.acme))[0];
    await expect(onlyK2.decode([old])).rejects.toThrow(
      `tenant ${T.acme} is encrypted with key "k1", which STRATA_PAYLOAD_KEYS does not list`,
    );
  });

  it('refuses a relabelled payload: another tenant, or another key id, does not decrypt', async () => {
    const codec = new TenantPayloadCodec(parsePayloadKeys(KEYS_V2)!);
    const [p] = payloadsOf(await rawHistory(runIds.acme));
    expect((await codec.decode([p]))[0].data).toBeDefined();
    const relabel = (k: string, v: string): Payload => ({
      ...p,
      metadata: { ...p.metadata, [k]: new TextEncoder().encode(v) },
    });
    // globex also has a key "k1": the label resolves to a real key, and the cipher still refuses it.
    expect(() => codec.decrypt(relabel(META_TENANT, T.globex))).toThrow(PayloadDecryptError);
    expect(() => codec.decrypt(relabel(META_TENANT, T.globex))).toThrow(
      `labelled tenant ${T.globex}, key k1 does not decrypt`,
    );
    expect(() => codec.decrypt(relabel(META_KEY_ID, 'k2'))).toThrow(
      `labelled tenant ${T.acme}, key k2 does not decrypt`,
    );
    // Even where two labels resolve to the same key material, the labels are bound into the cipher.
    const shared = new TenantPayloadCodec(
      parsePayloadKeys(
        `${T.acme}:k1=${K.acme1},${T.globex}:k1=${K.acme1},${T.acme}:k9=${K.acme1},_platform:p1=${K.platform}`,
      )!,
    );
    expect(dec.decode(shared.decrypt(p).data!)).toBeTruthy();
    expect(() => shared.decrypt(relabel(META_TENANT, T.globex))).toThrow(
      `labelled tenant ${T.globex}, key k1 does not decrypt`,
    );
    expect(() => shared.decrypt(relabel(META_KEY_ID, 'k9'))).toThrow(
      `labelled tenant ${T.acme}, key k9 does not decrypt`,
    );
    // A payload of acme inside a globex workflow is refused by a worker's decode.
    await expect(
      codec.decode([p], { type: 'workflow', namespace: 'default', workflowId: runIds.globex }),
    ).rejects.toThrow(`encrypted for tenant ${T.acme} appeared in pipeline/${T.globex}/`);
  });

  it('encrypts calls that name no workflow for the withTenant scope, else with the platform key; tenants without keys get derived ones', async () => {
    const codec = new TenantPayloadCodec(parsePayloadKeys(KEYS_V1)!);
    const plain: Payload = {
      metadata: { encoding: new TextEncoder().encode('json/plain') },
      data: new TextEncoder().encode('"x"'),
    };
    const [scoped] = await withTenant(T.acme, () => codec.encode([plain]));
    expect(payloadTenant(scoped)).toBe(T.acme);
    const [none] = await codec.encode([plain]);
    expect(payloadTenant(none)).toBe('_platform');
    const [other] = await codec.encode([plain], {
      type: 'workflow',
      namespace: 'default',
      workflowId: 'pipeline/initech/p/r',
    });
    expect([payloadTenant(other), meta(other, META_KEY_ID)]).toEqual(['initech', '~p1']);
    expect(dec.decode((await codec.decode([other]))[0].data!)).toBe('"x"');
    // Old histories in clear decode as they are.
    expect(await codec.decode([plain])).toEqual([plain]);
  });

  describe('the API codec endpoint', () => {
    const BOOT = 'bootstrap-admin-key-for-codec-0123';
    const UI = 'http://127.0.0.1:8233';
    let base: string;
    let close: () => Promise<void>;
    const keys: Record<string, string> = {};
    const post = async (url: string, body: unknown, headers: Record<string, string> = {}) => {
      const r = await fetch(base + url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
      const json: any = await r.json().catch(() => undefined);
      return { status: r.status, headers: r.headers, json };
    };
    const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
    let acmeP: Payload;
    let globexP: Payload;

    beforeAll(async () => {
      const config = loadConfig({
        STRATA_TASK_QUEUE: stack.taskQueue,
        STRATA_BOOTSTRAP_ADMIN_KEY: BOOT,
        TEMPORAL_UI_URL: UI,
        TEMPORAL_ADDRESS: inject('temporalAddress'),
      });
      const { app } = await buildApi({ db: stack.db, client: codecClient(KEYS_V2), config, dispatcher: false });
      base = await app.listen({ host: '127.0.0.1', port: 0 });
      close = () => app.close();
      for (const [name, tenant, role] of [
        ['acme', T.acme, 'viewer'],
        ['acmeOps', T.acme, 'operator'],
        ['globex', T.globex, 'viewer'],
      ] as const) {
        const r = await post('/api/v1/keys', { tenant, role, name }, bearer(BOOT));
        expect(r.status).toBe(201);
        keys[name] = r.json.key;
      }
      acmeP = (await rawHistory(runIds.acme)).events!.find((e) => e.workflowExecutionStartedEventAttributes)!
        .workflowExecutionStartedEventAttributes!.input!.payloads![0];
      globexP = (await rawHistory(runIds.globex)).events!.find((e) => e.workflowExecutionStartedEventAttributes)!
        .workflowExecutionStartedEventAttributes!.input!.payloads![0];
    });
    afterAll(async () => close?.());

    it("decodes the caller's tenant's payloads and returns other tenants' still encrypted", async () => {
      const body = { payloads: [toJson(acmeP), toJson(globexP)] };
      for (const url of ['/codec/decode', '/codec/default/decode']) {
        const r = await post(url, body, { ...bearer(keys.acme), 'x-namespace': 'default' });
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        const [a, g] = r.json.payloads.map(fromJson) as Payload[];
        expect(meta(a, 'encoding')).toBe('json/plain');
        expect(JSON.parse(dec.decode(a.data!)).params.token).toBe(markers.acme.param);
        expect(r.json.payloads[1]).toEqual(toJson(globexP));
        expect(dec.decode(g.data!)).not.toContain(markers.globex.param);
      }
      const g = await post('/codec/decode', body, bearer(keys.globex));
      expect(g.json.payloads[0]).toEqual(toJson(acmeP));
      expect(JSON.parse(dec.decode(fromJson(g.json.payloads[1]).data!)).params.token).toBe(markers.globex.param);
      // The bootstrap admin decodes every tenant's.
      const boot = await post('/codec/decode', body, bearer(BOOT));
      expect(boot.json.payloads.map((p: any) => meta(fromJson(p), 'encoding'))).toEqual(['json/plain', 'json/plain']);
    });

    it('answers 401 without a key or with a wrong one, and 404 for another namespace', async () => {
      const body = { payloads: [toJson(acmeP)] };
      expect((await post('/codec/decode', body)).status).toBe(401);
      expect((await post('/codec/decode', body, bearer('strata_not-a-real-key'))).status).toBe(401);
      expect((await post('/codec/encode', body)).status).toBe(401);
      const ns = await post('/codec/other/decode', body, bearer(keys.acme));
      expect(ns.status).toBe(404);
      expect(ns.json.error).toMatch(/serves namespace default, not other/);
    });

    it('encodes for the caller’s tenant (operator role), in a form the workers decode', async () => {
      const plain = {
        metadata: { encoding: Buffer.from('json/plain').toString('base64') },
        data: Buffer.from('{"hello":"ui"}').toString('base64'),
      };
      expect((await post('/codec/encode', { payloads: [plain] }, bearer(keys.acme))).status).toBe(403);
      const r = await post('/codec/encode', { payloads: [plain] }, bearer(keys.acmeOps));
      expect(r.status).toBe(200);
      const enc = fromJson(r.json.payloads[0]);
      expect([payloadTenant(enc), meta(enc, META_KEY_ID)]).toEqual([T.acme, 'k2']);
      const worker = new TenantPayloadCodec(parsePayloadKeys(KEYS_V2)!);
      expect(dec.decode((await worker.decode([enc]))[0].data!)).toBe('{"hello":"ui"}');
    });

    it('answers CORS for the Temporal UI origin only, with credentials and preflight', async () => {
      const pre = await fetch(base + '/codec/decode', {
        method: 'OPTIONS',
        headers: {
          origin: UI,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type,authorization,x-namespace',
        },
      });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe(UI);
      expect(pre.headers.get('access-control-allow-credentials')).toBe('true');
      expect(pre.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
      expect(pre.headers.get('access-control-allow-methods')).toMatch(/POST/);
      const evil = await fetch(base + '/codec/default/decode', {
        method: 'OPTIONS',
        headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
      });
      expect(evil.status).toBe(403);
      expect(evil.headers.get('access-control-allow-origin')).toBeNull();
      const r = await post('/codec/decode', { payloads: [] }, { origin: UI, ...bearer(keys.acme) });
      expect([
        r.status,
        r.headers.get('access-control-allow-origin'),
        r.headers.get('access-control-allow-credentials'),
      ]).toEqual([200, UI, 'true']);
      const denied = await post('/codec/decode', { payloads: [] }, { origin: UI });
      expect([denied.status, denied.headers.get('access-control-allow-origin')]).toEqual([401, UI]);
    });

    it('opens a cookie session for a UI without login, which then decodes for that tenant', async () => {
      const bad = await fetch(base + '/codec/login', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'key=nope',
      });
      expect(bad.status).toBe(401);
      const login = await fetch(base + '/codec/login', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `key=${encodeURIComponent(keys.acme)}`,
      });
      expect(login.status).toBe(200);
      const set = login.headers.get('set-cookie')!;
      expect(set).toMatch(/HttpOnly/);
      expect(set).toMatch(/SameSite=Strict/);
      expect(set).not.toContain(keys.acme);
      const cookie = set.split(';')[0];
      const r = await post('/codec/decode', { payloads: [toJson(acmeP), toJson(globexP)] }, { cookie, origin: UI });
      expect(r.status).toBe(200);
      expect(meta(fromJson(r.json.payloads[0]), 'encoding')).toBe('json/plain');
      expect(r.json.payloads[1]).toEqual(toJson(globexP));
      expect((await post('/codec/decode', { payloads: [] }, { cookie: 'strata_codec_session=forged' })).status).toBe(
        401,
      );
    });
  });
});

describe('/metrics and /ready carry no tenant data without credentials', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await testStack('metrics');
  });
  afterAll(async () => stack?.close());

  it('/metrics: per-pipeline metrics only with the metrics token; a wrong token is 401', async () => {
    const TOKEN = 'metrics-token-0123456789';
    const pipeline = `metrics_pipe_${randomBytes(3).toString('hex')}`;
    await stack.db.query(
      `INSERT INTO runs (run_id, tenant, pipeline_id, status, trigger, logical_date, started_at, tasks) VALUES ($1, $2, $3, 'success', 'manual', now(), now(), $4)`,
      [
        `pipeline/metrics-${pipeline.slice(-6)}/${pipeline}/r1`,
        `metrics-${pipeline.slice(-6)}`,
        pipeline,
        JSON.stringify({
          a: { status: 'success', startedAt: '2026-01-01T00:00:00Z', endedAt: '2026-01-01T00:00:02Z' },
        }),
      ],
    );
    const { app } = await buildApi({
      db: stack.db,
      client: stack.client,
      config: loadConfig({ STRATA_METRICS_TOKEN: TOKEN }),
      dispatcher: false,
    });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const get = async (h: Record<string, string> = {}) => {
        const r = await fetch(base + '/metrics', { headers: h });
        return { status: r.status, text: await r.text() };
      };
      const open = await get();
      expect(open.status).toBe(200);
      expect(open.text).toMatch(/strata_runs\{status="success"\} \d+/);
      expect(open.text).not.toContain(pipeline);
      expect(open.text).not.toMatch(/pipeline="|tenant="/);
      const full = await get({ authorization: `Bearer ${TOKEN}` });
      expect(full.status).toBe(200);
      expect(full.text).toContain(`strata_task_duration_seconds_avg{pipeline="${pipeline}"} 2`);
      expect((await get({ authorization: 'Bearer wrong-token-000000000' })).status).toBe(401);
    } finally {
      await app.close();
    }
    // Without a configured token nobody gets the per-pipeline metrics.
    const { app: app2 } = await buildApi({
      db: stack.db,
      client: stack.client,
      config: loadConfig({}),
      dispatcher: false,
    });
    const base2 = await app2.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect((await fetch(base2 + '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(401);
      expect(await (await fetch(base2 + '/metrics')).text()).not.toContain(pipeline);
    } finally {
      await app2.close();
    }
  });

  it('/ready names the dependency that is down, never its error', async () => {
    const dbs = inject('databases');
    const deadDb = await openDb({ url: dbs.postgresUrl });
    await deadDb.close();
    const deadConn = Connection.lazy({ address: '127.0.0.1:9', connectTimeout: 500 });
    const { app } = await buildApi({
      db: deadDb,
      client: new Client({ connection: deadConn }),
      config: loadConfig({}),
      dispatcher: false,
    });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const r = await fetch(base + '/ready');
      expect(r.status).toBe(503);
      expect(await r.json()).toEqual({ ok: false, checks: { metastore: 'unavailable', temporal: 'unavailable' } });
    } finally {
      await app.close();
      await deadConn.close().catch(() => {});
    }
  });
});
