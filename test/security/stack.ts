/**
 * The real stack as two hostile tenants meet it: the API and the worker in processes of
 * their own (as deployed), the run's Temporal dev server, a metastore database of the
 * stack's own on Postgres, and a lake on MinIO. Two tenants, `acme` and `globex`, each
 * with a viewer, an operator and an admin key; `acme` owns the Postgres connection
 * `warehouse`. Only the bootstrap admin key is the platform's.
 */
import {
  S3Client,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { readAnswer } from '../harness/api.js';
import { startProcess, type Proc } from '../harness/processes.js';

export const TENANTS = ['acme', 'globex'] as const;
export type Tenant = (typeof TENANTS)[number];
export type Role = 'viewer' | 'operator' | 'admin';

export interface SecurityStack {
  base: string;
  bucket: string;
  /** The lake's prefix in the bucket: objects live at `{prefix}/{tenant}/…`. */
  prefix: string;
  lakeRoot: string;
  /** The local folder of plain duckdb tasks: `{localLake}/{tenant}/…`. */
  localLake: string;
  dataDir: string;
  adminKey: string;
  keys: Record<Tenant, Record<Role, string>>;
  /** The environment the API and worker run with (what an operator's CLI would use too). */
  env: Record<string, string>;
  /** Secrets the worker holds, which no answer may ever contain. */
  secrets: string[];
  s3: S3Client;
  pg: pg.Client;
  warehouseUrl: string;
  call(
    method: string,
    url: string,
    key: string | undefined,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; json: any; text: string }>;
  putObject(key: string, body: string): Promise<void>;
  getObject(key: string): Promise<string | undefined>;
  listObjects(prefix: string): Promise<string[]>;
  /** Triggers a run of a registered pipeline and waits for it to end; returns its state. */
  runPipeline(
    tenant: Tenant,
    spec: unknown,
    params?: Record<string, unknown>,
  ): Promise<{ status: number; run?: any; json: any }>;
  waitRun(runId: string, key: string): Promise<any>;
  close(): Promise<void>;
}

export async function securityStack(name: string, extraEnv: Record<string, string> = {}): Promise<SecurityStack> {
  const dbs = inject('databases');
  const t = inject('s3');
  const id = `${name}_${randomBytes(3).toString('hex')}`;
  // A metastore of the stack's own, so nothing it writes meets other tests'.
  const admin = new pg.Client({ connectionString: dbs.postgresAdminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE sec_${id}`);
  await admin.end();
  const u = new URL(dbs.postgresAdminUrl);
  u.pathname = `/sec_${id}`;
  const metastoreUrl = u.toString();
  const dataDir = path.join(inject('scratchDir'), `sec-${id}`);
  const localLake = path.join(dataDir, 'lake');
  await mkdir(localLake, { recursive: true });
  const prefix = `sec-${id}`;
  const adminKey = `platform-${randomBytes(16).toString('hex')}`;
  // A bootstrap key file in the data folder, as npm start keeps one: a prize for a tenant.
  await writeFile(path.join(dataDir, 'admin-key'), adminKey);
  const env = {
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    DATABASE_URL: metastoreUrl,
    STRATA_TASK_QUEUE: `sec-${id}`,
    STRATA_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
    STRATA_DATA_DIR: dataDir,
    STRATA_LAKE_ROOT: `s3://${t.bucket}/${prefix}`,
    STRATA_S3_ENDPOINT: t.endpoint,
    STRATA_S3_REGION: t.region,
    STRATA_S3_ACCESS_KEY_ID: t.accessKeyId,
    STRATA_S3_SECRET_ACCESS_KEY: t.secretAccessKey,
    STRATA_CONN_WAREHOUSE: dbs.postgresUrl,
    STRATA_CONN_WAREHOUSE_TENANTS: 'acme',
    STRATA_BOOTSTRAP_ADMIN_KEY: adminKey,
    STRATA_BOOTSTRAP_TENANT: 'platform',
    STRATA_API_PORT: '0',
    STRATA_PAYLOAD_KEYS: inject('payloadKeys'),
    ...extraEnv,
  };
  const procs: Proc[] = [];
  const api = startProcess('workers/api.ts', [], env);
  procs.push(api);
  const worker = startProcess('workers/worker.ts', [], env);
  procs.push(worker);
  try {
    await api.waitForOutput(/strata api on http:\/\/\S+/);
    await worker.waitForOutput(/strata worker: task queue/);
  } catch (e) {
    for (const p of procs) p.child.kill('SIGKILL');
    throw e;
  }
  const base = /strata api on (http:\/\/\S+)/.exec(api.output())![1];
  const call: SecurityStack['call'] = async (method, url, key, body, headers = {}) => {
    const h: Record<string, string> = { ...headers };
    if (key) h.authorization = `Bearer ${key}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= typeof body === 'string' ? 'application/yaml' : 'application/json';
    }
    const { status, json, text } = await readAnswer(await fetch(base + url, { method, headers: h, body: payload }));
    return { status, json, text };
  };
  const keys = {} as Record<Tenant, Record<Role, string>>;
  for (const tenant of TENANTS) {
    keys[tenant] = {} as Record<Role, string>;
    for (const role of ['viewer', 'operator', 'admin'] as Role[]) {
      const r = await call('POST', '/api/v1/keys', adminKey, { tenant, role });
      if (r.status !== 201) throw new Error(`key for ${tenant}/${role}: ${r.status} ${r.text}`);
      keys[tenant][role] = r.json.key;
    }
  }
  const s3 = new S3Client({
    region: t.region,
    endpoint: t.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
  });
  const pgc = new pg.Client({ connectionString: dbs.postgresUrl });
  await pgc.connect();
  const waitRun = async (runId: string, key: string) => {
    for (let i = 0; i < 600; i++) {
      const r = await call('GET', `/api/v1/runs/${encodeURIComponent(runId)}`, key);
      if (r.status === 200 && !['queued', 'running'].includes(r.json.status)) return r.json;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`run ${runId} did not end`);
  };
  return {
    base,
    bucket: t.bucket,
    prefix,
    lakeRoot: `s3://${t.bucket}/${prefix}`,
    localLake,
    dataDir,
    adminKey,
    keys,
    env,
    secrets: [t.secretAccessKey, adminKey, dbs.postgresUrl, metastoreUrl],
    s3,
    pg: pgc,
    warehouseUrl: dbs.postgresUrl,
    call,
    async putObject(key, body) {
      await s3.send(new PutObjectCommand({ Bucket: t.bucket, Key: `${prefix}/${key}`, Body: body }));
    },
    async getObject(key) {
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: t.bucket, Key: `${prefix}/${key}` }));
        return await r.Body!.transformToString();
      } catch {
        return undefined;
      }
    },
    async listObjects(p) {
      const out: string[] = [];
      let token: string | undefined;
      do {
        const r = await s3.send(
          new ListObjectsV2Command({ Bucket: t.bucket, Prefix: `${prefix}/${p}`, ContinuationToken: token }),
        );
        for (const o of r.Contents ?? []) out.push(o.Key!.slice(prefix.length + 1));
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      return out.sort();
    },
    async runPipeline(tenant, spec, params) {
      const reg = await call('POST', '/api/v1/pipelines', keys[tenant].admin, spec);
      if (reg.status !== 201 && reg.status !== 200) return { status: reg.status, json: reg.json };
      const id = (spec as { id: string }).id;
      const trig = await call('POST', `/api/v1/pipelines/${id}/runs`, keys[tenant].operator, params ? { params } : {});
      if (trig.status !== 202) return { status: trig.status, json: trig.json };
      return { status: 202, json: trig.json, run: await waitRun(trig.json.runId, keys[tenant].viewer) };
    },
    waitRun,
    async close() {
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => Promise.race([p.exited(), new Promise((r) => setTimeout(r, 5000))])));
      for (const p of procs) p.child.kill('SIGKILL');
      s3.destroy();
      await pgc.end();
      const a = new pg.Client({ connectionString: dbs.postgresAdminUrl });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS sec_${id} WITH (FORCE)`);
      await a.end();
    },
  };
}

/** HeadObject that says whether a key exists (for "nothing changed" assertions). */
export async function exists(s: SecurityStack, key: string): Promise<boolean> {
  try {
    await s.s3.send(new HeadObjectCommand({ Bucket: s.bucket, Key: `${s.prefix}/${key}` }));
    return true;
  } catch {
    return false;
  }
}
