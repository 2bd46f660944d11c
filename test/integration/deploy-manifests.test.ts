/**
 * Strata's own Kubernetes manifests (deploy/kubernetes, the kustomization's resources) applied
 * to the run's real kube-apiserver, as an operator applies them, in a namespace of this test's
 * own: server-side apply with strict field validation; the Deployments made Available by the
 * real controllers (kube-controller-manager's deployment, replica set, disruption and HPA
 * controllers) with kwok running the pods; the probes' paths and ports answered by the real
 * processes started with the containers' commands and environment; secrets only by
 * reference; and the service accounts' rights, checked verb by verb with SubjectAccessReviews
 * and used with the accounts' own tokens. The test cluster has no kube-scheduler: the test
 * binds each pending pod to the kwok node through the pods/binding subresource, as the
 * scheduler would.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureTenantNamespace } from '../../activities/spark-k8s/activities.js';
import { SparkK8sClient, TENANT_ROLE_RULES } from '../../activities/spark-k8s/client.js';
import {
  buildCatalogSecret,
  buildSparkApplication,
  buildSparkConnect,
  DEFAULT_SPARK,
  MANAGED_BY,
  OWNER_ANNOTATION,
  tenantNamespace,
} from '../../activities/spark-k8s/manifest.js';
import { TIERS } from '../../schemas/external.js';
import { freePort } from '../../workers/dev-server.js';
import { tokenKubeconfig } from '../harness/kube.js';
import { ROOT, startProcess, type Proc } from '../harness/processes.js';
import { waitFor } from '../harness/specs.js';

const BASE = path.join(ROOT, 'deploy/kubernetes');
/** Strata's namespace in this test. Not strata-*: those are tenant namespaces, where the worker writes. */
const NS = 'deploy-test';
/** Cluster-scoped names get this suffix, so they never meet another test's copy of a manifest. */
const SUFFIX = `-${NS}`;
const TENANT = 'deploytest';
const TENANT_NS = tenantNamespace(TENANT);
const MANAGER = 'strata-deploy-test';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    resourceVersion?: string;
    generation?: number;
  };
  [k: string]: unknown;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
  };
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string; optional?: boolean }; secretRef?: { name: string; optional?: boolean } }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
}
interface Deployment extends Obj {
  spec: {
    replicas?: number;
    template: { spec: { serviceAccountName?: string; containers: Container[] } };
  };
  status?: { availableReplicas?: number; conditions?: { type: string; status: string; reason?: string }[] };
}

// ---- the API server over plain REST, so every field we send reaches it as written ----

interface Identity {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
}
let server: URL;
let admin: Identity;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function kube(who: Identity, method: string, p: string, body?: unknown, contentType = 'application/json') {
  return new Promise<Answer>((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      {
        host: server.hostname,
        port: server.port,
        path: p,
        method,
        ca: who.ca,
        cert: who.cert,
        key: who.key,
        headers: {
          accept: 'application/json',
          ...(data ? { 'content-type': contentType, 'content-length': Buffer.byteLength(data) } : {}),
          ...(who.token ? { authorization: `Bearer ${who.token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { text };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

async function ok(a: Promise<Answer>, what: string): Promise<Record<string, unknown>> {
  const r = await a;
  if (r.status >= 300) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Kind → REST resource (plural, namespaced), from the API server's discovery. */
const discovered = new Map<string, { plural: string; namespaced: boolean }>();
async function resourceOf(apiVersion: string, kind: string) {
  const k = `${apiVersion}/${kind}`;
  if (!discovered.has(k)) {
    const list = await ok(
      kube(admin, 'GET', apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`),
      `discover ${apiVersion}`,
    );
    for (const r of list.resources as { name: string; kind: string; namespaced: boolean }[])
      if (!r.name.includes('/'))
        discovered.set(`${apiVersion}/${r.kind}`, { plural: r.name, namespaced: r.namespaced });
  }
  const r = discovered.get(k);
  if (!r) throw new Error(`the API server serves no ${kind} in ${apiVersion}`);
  return r;
}

async function pathOf(o: Obj): Promise<string> {
  const { plural, namespaced } = await resourceOf(o.apiVersion, o.kind);
  const base = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const ns = namespaced ? `/namespaces/${o.metadata.namespace}` : '';
  return `${base}${ns}/${plural}/${o.metadata.name}`;
}

/** Server-side apply, as `kubectl apply --server-side --field-manager … --validate=strict` does. */
async function apply(o: Obj): Promise<Obj> {
  const q = `?fieldManager=${MANAGER}&force=true&fieldValidation=Strict`;
  return (await ok(
    kube(admin, 'PATCH', (await pathOf(o)) + q, o, 'application/apply-patch+yaml'),
    `apply ${o.kind} ${o.metadata.name}`,
  )) as unknown as Obj;
}

const read = async <T = Obj>(o: Obj): Promise<T> =>
  (await ok(kube(admin, 'GET', await pathOf(o)), `read ${o.kind} ${o.metadata.name}`)) as T;

// ---- the kustomization, as this test installs it ----

async function kustomizationResources(dir: string): Promise<Obj[]> {
  const k = parse(await readFile(path.join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  const out: Obj[] = [];
  for (const f of k.resources)
    for (const d of parseAllDocuments(await readFile(path.join(dir, f), 'utf8'))) {
      if (d.errors.length) throw new Error(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
      const o = d.toJS() as Obj | null;
      if (o) out.push(o);
    }
  return out;
}

/**
 * The manifests as installed into namespace NS: what kustomize's `namespace:` does (namespaced
 * objects and service-account subjects move), plus cluster-scoped names suffixed (so the copy
 * meets no other) and the worker's user name in the admission policy, which names the
 * namespace in a string (deploy/kubernetes/README.md says to keep it in step).
 */
async function installedIn(objs: Obj[]): Promise<Obj[]> {
  const out: Obj[] = [];
  for (const src of objs) {
    const o = structuredClone(src) as Obj & Record<string, any>;
    if (o.kind === 'Namespace') o.metadata.name = NS;
    else if ((await resourceOf(o.apiVersion, o.kind)).namespaced) o.metadata.namespace = NS;
    else o.metadata.name += SUFFIX;
    if (o.kind === 'ClusterRoleBinding') {
      o.roleRef.name += SUFFIX;
      for (const s of o.subjects as { kind: string; namespace?: string }[])
        if (s.kind === 'ServiceAccount') s.namespace = NS;
    }
    if (o.kind === 'ValidatingAdmissionPolicyBinding') o.spec.policyName += SUFFIX;
    if (o.kind === 'ValidatingAdmissionPolicy')
      for (const c of o.spec.matchConditions as { expression: string }[])
        c.expression = c.expression.replaceAll('system:serviceaccount:strata:', `system:serviceaccount:${NS}:`);
    out.push(o);
  }
  return out;
}

// ---- state of the test ----

let manifests: Obj[];
let installed: Obj[];
/** The Secret strata-secrets of this test: a value for every key secrets.env.example names. */
let secretValues: Record<string, string>;
let binder: { stop(): Promise<void> } | undefined;
const procs: Proc[] = [];

const deployment = (name: string) =>
  installed.find((o) => o.kind === 'Deployment' && o.metadata.name === name) as Deployment;
const container = (d: Deployment) => d.spec.template.spec.containers[0];

/** Keys of secrets.env.example (the documented contents of the Secret strata-secrets). */
async function exampleSecretKeys(): Promise<{ required: string[]; optional: string[] }> {
  const text = await readFile(path.join(BASE, 'secrets.env.example'), 'utf8');
  const required: string[] = [];
  const optional: string[] = [];
  let into = required;
  for (const line of text.split('\n')) {
    if (/^#\s*Optional/i.test(line)) into = optional;
    const m = /^([a-z0-9-]+)=/.exec(line);
    if (m) into.push(m[1]);
  }
  return { required, optional };
}

/** What the scheduler does for a pod: binds it to a node (here the one kwok node). */
function startBinder(nodeName: string) {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const pods = await kube(admin, 'GET', `/api/v1/namespaces/${NS}/pods?fieldSelector=spec.nodeName%3D`);
      for (const p of ((pods.body.items ?? []) as Obj[]).filter(Boolean))
        await kube(admin, 'POST', `/api/v1/namespaces/${NS}/pods/${p.metadata.name}/binding`, {
          apiVersion: 'v1',
          kind: 'Binding',
          metadata: { name: p.metadata.name },
          target: { apiVersion: 'v1', kind: 'Node', name: nodeName },
        });
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

async function serviceAccountToken(name: string): Promise<string> {
  const r = await ok(
    kube(admin, 'POST', `/api/v1/namespaces/${NS}/serviceaccounts/${name}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 600 },
    }),
    `token of ${name}`,
  );
  return (r.status as { token: string }).token;
}

beforeAll(async () => {
  const info = inject('kube');
  server = new URL(info.server);
  const kc = new KubeConfig();
  kc.loadFromFile(info.kubeconfig);
  const user = kc.getCurrentUser()!;
  admin = {
    ca: await readFile(info.caFile),
    cert: await readFile(user.certFile!),
    key: await readFile(user.keyFile!),
  };
  manifests = await kustomizationResources(BASE);
  installed = await installedIn(manifests);
  // The namespace first, as `kubectl apply -k` orders it.
  for (const o of installed) {
    await apply(o);
    // The Secret the Deployments read exists before their pods do, as the README's steps have it.
    if (o.kind === 'Namespace') {
      const { required, optional } = await exampleSecretKeys();
      secretValues = Object.fromEntries([...required, ...optional].map((k) => [k, randomBytes(12).toString('hex')]));
      // Values a real process can start with (the worker and API are started with them below).
      const dbUrl = inject('databases').postgresUrl;
      Object.assign(secretValues, {
        'api-database-url': dbUrl,
        'worker-database-url': dbUrl,
        'payload-keys': inject('payloadKeys'),
        's3-access-key-id': inject('s3').accessKeyId,
        's3-secret-access-key': inject('s3').secretAccessKey,
        'bootstrap-admin-key': randomBytes(16).toString('hex'),
      });
      await ok(
        kube(admin, 'POST', `/api/v1/namespaces/${NS}/secrets`, {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'strata-secrets' },
          stringData: secretValues,
        }),
        'create the secret',
      );
    }
  }
  binder = startBinder(info.nodeName);
});

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await binder?.stop();
  // The copies' cluster-scoped objects and namespaces go (the run's cluster is shared by every test file).
  for (const o of [...(installed ?? [])].reverse())
    if (!(await resourceOf(o.apiVersion, o.kind)).namespaced) await kube(admin, 'DELETE', await pathOf(o));
  await kube(admin, 'DELETE', `/api/v1/namespaces/${TENANT_NS}`);
});

describe('Strata on Kubernetes: deploy/kubernetes applied to a real API server', () => {
  it('every resource the kustomization lists is accepted by server-side apply with strict field validation, and a second apply changes nothing', async () => {
    const kinds = manifests.map((o) => o.kind);
    for (const k of [
      'Namespace',
      'ConfigMap',
      'ServiceAccount',
      'ClusterRole',
      'ClusterRoleBinding',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
      'Deployment',
      'Service',
      'PodDisruptionBudget',
      'HorizontalPodAutoscaler',
    ])
      expect(kinds, k).toContain(k);
    // Secrets are never among the manifests: the operator creates them (secrets.env.example).
    expect(kinds).not.toContain('Secret');
    // Controllers write the status of some (Deployments, budgets, the HPA): for those the spec's
    // generation must stay; for the others the object itself.
    for (const o of installed) {
      const before = await read(o);
      const again = await apply(o);
      if (before.metadata.generation !== undefined)
        expect(again.metadata.generation, `${o.kind} ${o.metadata.name}`).toBe(before.metadata.generation);
      else expect(again.metadata.resourceVersion, `${o.kind} ${o.metadata.name}`).toBe(before.metadata.resourceVersion);
    }
    // The admission policy's expressions type-check against the API server's own schemas.
    const vap = installed.find((o) => o.kind === 'ValidatingAdmissionPolicy')!;
    await waitFor(async () => {
      const got = await read<Obj & { status?: { observedGeneration?: number } }>(vap);
      return got.status?.observedGeneration === got.metadata.generation;
    }, 30_000);
    const got = await read<Obj & { status?: { typeChecking?: { expressionWarnings?: unknown[] } } }>(vap);
    expect(got.status?.typeChecking?.expressionWarnings ?? []).toEqual([]);
    const ns = await read(installed.find((o) => o.kind === 'Namespace')!);
    expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('the API and the worker become Available with kwok running their pods under the restricted Pod Security profile; the HPA brings the worker to its 2 replicas', async () => {
    const names = ['strata-api', 'strata-worker'];
    let last: Deployment[] = [];
    await waitFor(async () => {
      last = await Promise.all(names.map((n) => read<Deployment>(deployment(n))));
      return last.every(
        (d) =>
          d.spec.replicas === 2 &&
          d.status?.availableReplicas === 2 &&
          d.status.conditions?.some((c) => c.type === 'Available' && c.status === 'True'),
      );
    }, 100_000).catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(last.map((d) => [d.metadata.name, d.spec.replicas, d.status]))}`);
    });
    // The worker's manifest names no replicas: the 2 are the HPA's minimum, set through the scale subresource.
    expect(deployment('strata-worker').spec.replicas).toBeUndefined();
    const pods = (await ok(kube(admin, 'GET', `/api/v1/namespaces/${NS}/pods`), 'pods')).items as (Obj & {
      spec: { serviceAccountName: string; nodeName: string };
      status: { phase: string };
    })[];
    const byComponent = (c: string) => pods.filter((p) => p.metadata.labels?.['app.kubernetes.io/component'] === c);
    expect(byComponent('api').map((p) => [p.spec.serviceAccountName, p.status.phase])).toEqual([
      ['strata-api', 'Running'],
      ['strata-api', 'Running'],
    ]);
    expect(byComponent('worker').map((p) => [p.spec.serviceAccountName, p.status.phase])).toEqual([
      ['strata-worker', 'Running'],
      ['strata-worker', 'Running'],
    ]);
    expect(new Set(pods.map((p) => p.spec.nodeName))).toEqual(new Set([inject('kube').nodeName]));
    const hpa = await read<Obj & { spec: { scaleTargetRef: { kind: string; name: string } } }>(
      installed.find((o) => o.kind === 'HorizontalPodAutoscaler')!,
    );
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'strata-worker' });
  });

  it('each PodDisruptionBudget counts the healthy pods of its Deployment and allows one disruption', async () => {
    for (const pdb of installed.filter((o) => o.kind === 'PodDisruptionBudget')) {
      let st: Record<string, unknown> | undefined;
      await waitFor(async () => {
        st = (await read<Obj & { status?: Record<string, unknown> }>(pdb)).status;
        return st?.expectedPods === 2 && st.currentHealthy === 2;
      }, 90_000).catch((e: Error) => {
        throw new Error(`${pdb.metadata.name}: ${e.message}: ${JSON.stringify(st)}`);
      });
      expect(st, pdb.metadata.name).toMatchObject({ expectedPods: 2, currentHealthy: 2, disruptionsAllowed: 1 });
    }
  });

  it('probes: startup and liveness on /health, readiness on /ready, at the port each process listens on', () => {
    const port = (c: Container, p: number | string) =>
      typeof p === 'number' ? p : c.ports?.find((x) => x.name === p)?.containerPort;
    for (const [name, portVar] of [
      ['strata-api', 'STRATA_API_PORT'],
      ['strata-worker', 'STRATA_WORKER_HEALTH_PORT'],
    ] as const) {
      const c = container(deployment(name));
      const listens = Number(c.env?.find((e) => e.name === portVar)?.value);
      expect(listens, `${name} ${portVar}`).toBeGreaterThan(0);
      for (const [probe, want] of [
        [c.startupProbe, '/health'],
        [c.livenessProbe, '/health'],
        [c.readinessProbe, '/ready'],
      ] as const) {
        expect(probe?.httpGet?.path, name).toBe(want);
        expect(port(c, probe!.httpGet!.port), name).toBe(listens);
      }
    }
  });

  it('secrets only by reference: no literal secret in any manifest, every required key documented in secrets.env.example and present in the Secret', async () => {
    const secretLike = /KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL|CREDENTIAL/i;
    const config = installed.find((o) => o.kind === 'ConfigMap') as Obj & { data: Record<string, string> };
    expect(Object.keys(config.data).filter((k) => secretLike.test(k))).toEqual([]);
    const { required, optional } = await exampleSecretKeys();
    const referenced = new Set<string>();
    for (const d of installed.filter((o): o is Deployment => o.kind === 'Deployment'))
      for (const c of d.spec.template.spec.containers) {
        for (const e of c.env ?? []) {
          if (secretLike.test(e.name)) expect(e.valueFrom?.secretKeyRef, `${d.metadata.name} ${e.name}`).toBeDefined();
          const ref = e.valueFrom?.secretKeyRef;
          if (!ref) continue;
          expect(ref.name).toBe('strata-secrets');
          referenced.add(ref.key);
          // A required reference is a documented required key; an optional one, an optional key.
          expect(ref.optional ? optional : required, `${d.metadata.name} ${e.name}`).toContain(ref.key);
          // What the kubelet would check before starting the container.
          if (!ref.optional) {
            const s = (await ok(kube(admin, 'GET', `/api/v1/namespaces/${NS}/secrets/${ref.name}`), 'secret')) as {
              data: Record<string, string>;
            };
            expect(Object.keys(s.data), `${d.metadata.name} ${e.name}`).toContain(ref.key);
          }
        }
        // Whole-secret references are the operator's extras: optional, so a pod starts without them.
        for (const f of c.envFrom ?? []) if (f.secretRef) expect(f.secretRef.optional, f.secretRef.name).toBe(true);
        for (const f of c.envFrom ?? []) if (f.configMapRef) expect(f.configMapRef.name).toBe('strata-config');
      }
    // Every documented key is used by some container.
    expect([...referenced].sort()).toEqual([...required, ...optional].sort());
  });

  it('the example overlay builds on the base: its patches name objects of the base, its image rewrite names the image the base uses', async () => {
    const dir = path.join(BASE, 'overlays/example');
    const k = parse(await readFile(path.join(dir, 'kustomization.yaml'), 'utf8')) as {
      resources: string[];
      images: { name: string }[];
      patches: { path: string }[];
    };
    expect(k.resources.map((r) => path.resolve(dir, r))).toEqual([BASE]);
    const ids = new Set(manifests.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`));
    for (const p of k.patches)
      for (const d of parseAllDocuments(await readFile(path.join(dir, p.path), 'utf8'))) {
        const o = d.toJS() as Obj;
        expect(ids, p.path).toContain(`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
      }
    const images = manifests
      .filter((o): o is Deployment => o.kind === 'Deployment')
      .flatMap((d) => d.spec.template.spec.containers.map((c) => c.image.split(':')[0]));
    expect(new Set(images)).toEqual(new Set(k.images.map((i) => i.name)));
  });

  it("the containers' commands with the manifests' environment start the real API and worker: /health, then /ready, answer on the probed ports; SIGTERM stops both", async () => {
    const config = (installed.find((o) => o.kind === 'ConfigMap') as Obj & { data: Record<string, string> }).data;
    const s3 = inject('s3');
    const scratch = path.join(inject('scratchDir'), NS);
    const queue = `deploy-test-${randomBytes(3).toString('hex')}`;
    /** The container's environment as the kubelet builds it, then what differs on this machine. */
    const envOf = (c: Container, over: Record<string, string>) => {
      const env: Record<string, string> = { ...config };
      for (const e of c.env ?? []) {
        if (e.value !== undefined) env[e.name] = e.value;
        const ref = e.valueFrom?.secretKeyRef;
        if (ref && secretValues[ref.key] !== undefined) env[e.name] = secretValues[ref.key];
      }
      return {
        ...env,
        // The addresses of this machine's Temporal, lake and metastore instead of the cluster's.
        TEMPORAL_ADDRESS: inject('temporalAddress'),
        TEMPORAL_NAMESPACE: 'default',
        STRATA_TASK_QUEUE: queue,
        STRATA_LAKE_ROOT: `s3://${s3.bucket}/${queue}`,
        STRATA_S3_ENDPOINT: s3.endpoint,
        STRATA_S3_REGION: s3.region,
        STRATA_DATA_DIR: scratch,
        ...over,
      };
    };
    const spawnAs = (c: Container, env: Record<string, string>) => {
      // The image runs `node --import tsx <script>` in the app folder: the same, from the checkout.
      expect(c.command?.slice(0, 3)).toEqual(['node', '--import', 'tsx']);
      const p = startProcess(c.command![3], [], env);
      procs.push(p);
      return p;
    };
    const api = container(deployment('strata-api'));
    const worker = container(deployment('strata-worker'));
    const apiPort = await freePort();
    const healthPort = await freePort();
    const apiProc = spawnAs(api, envOf(api, { STRATA_API_PORT: String(apiPort), STRATA_API_HOST: '127.0.0.1' }));
    const workerProc = spawnAs(
      worker,
      envOf(worker, {
        STRATA_WORKER_HEALTH_PORT: String(healthPort),
        STRATA_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
        STRATA_SWEEP_INTERVAL: 'off',
      }),
    );
    const get = async (port: number, p: string) => {
      const r = await fetch(`http://127.0.0.1:${port}${p}`);
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    for (const [proc, c, port] of [
      [apiProc, api, apiPort],
      [workerProc, worker, healthPort],
    ] as const) {
      let last: unknown;
      await waitFor(async () => {
        last = await get(port, c.readinessProbe!.httpGet!.path);
        return (last as { status: number }).status === 200;
      }, 100_000).catch((e: Error) => {
        throw new Error(`${c.name}: ${e.message}: ${JSON.stringify(last)}\n${proc.output()}`);
      });
      expect((await get(port, c.livenessProbe!.httpGet!.path)).status).toBe(200);
    }
    expect((await get(healthPort, '/ready')).body).toEqual({
      ok: true,
      checks: { worker: 'ok', temporal: 'ok', metastore: 'ok' },
    });
    expect((await get(apiPort, '/ready')).body).toMatchObject({
      ok: true,
      checks: { temporal: 'ok', metastore: 'ok' },
    });
    // Nothing of the secrets in what the processes print.
    for (const p of [apiProc, workerProc]) {
      for (const k of ['payload-keys', 'bootstrap-admin-key', 's3-secret-access-key'])
        expect(p.output()).not.toContain(secretValues[k]);
      p.child.kill('SIGTERM');
    }
    expect(await Promise.all([apiProc.exited(), workerProc.exited()])).toEqual([0, 0]);
  }, 240_000);
});

// ---- what the service accounts may do ----

interface Access {
  group: string;
  resource: string;
  subresource?: string;
  verb: string;
}
const key = (a: Access) => `${a.group || 'core'}/${a.resource}${a.subresource ? '/' + a.subresource : ''}:${a.verb}`;
const ALL_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];
const rule = (group: string, resource: string, verbs: string[], subresource?: string): Access[] =>
  verbs.map((verb) => ({ group, resource, subresource, verb }));

/**
 * What the worker's code calls on the Kubernetes API (activities/spark-k8s/client.ts, used by
 * the Spark activities, the cluster provider and the orphan sweeper), and nothing else.
 */
const WORKER_NEEDS: Access[] = [
  // ensureNamespace: readNamespace, createNamespace, replaceNamespace (labels an older one).
  ...rule('', 'namespaces', ['get', 'create', 'update']),
  // ensureNamespace: the tier's quota and limit range, the tenant's Spark service account, its Role and binding.
  ...rule('', 'resourcequotas', ['create']),
  ...rule('', 'limitranges', ['create']),
  ...rule('', 'serviceaccounts', ['create']),
  ...rule('rbac.authorization.k8s.io', 'roles', ['create']),
  ...rule('rbac.authorization.k8s.io', 'rolebindings', ['create']),
  // createOrAdopt (create, get, replace), get, replace (cluster resize), delete, listAll (the sweeper).
  ...rule('sparkoperator.k8s.io', 'sparkapplications', ['get', 'list', 'create', 'update', 'delete']),
  ...rule('sparkoperator.k8s.io', 'sparkconnects', ['get', 'list', 'create', 'update', 'delete']),
  // warnings: the events of an application.
  ...rule('', 'events', ['list']),
  // putSecret (create, else replace) and deleteSecret: a job's catalog credential, written but never read.
  ...rule('', 'secrets', ['create', 'update', 'delete']),
  // The tenant Role's rules (TENANT_ROLE_RULES): Kubernetes lets the worker grant only what it holds.
  ...TENANT_ROLE_RULES.flatMap((r) =>
    r.apiGroups.flatMap((g) =>
      r.resources.flatMap((res) => {
        const [resource, subresource] = res.split('/');
        return rule(g, resource, r.verbs, subresource);
      }),
    ),
  ),
];
/** client/task-logs.ts: the SparkApplication's driver pod, then its log. */
const API_NEEDS: Access[] = [
  ...rule('sparkoperator.k8s.io', 'sparkapplications', ['get']),
  ...rule('', 'pods', ['get'], 'log'),
];

/** Every resource either account touches, and the ones an intruder would want, each with every verb. */
const PROBED: Access[] = [
  ...[
    ['', 'namespaces'],
    ['', 'resourcequotas'],
    ['', 'limitranges'],
    ['', 'serviceaccounts'],
    ['', 'events'],
    ['', 'pods'],
    ['', 'services'],
    ['', 'configmaps'],
    ['', 'persistentvolumeclaims'],
    ['', 'secrets'],
    ['', 'nodes'],
    ['', 'endpoints'],
    ['rbac.authorization.k8s.io', 'roles'],
    ['rbac.authorization.k8s.io', 'rolebindings'],
    ['rbac.authorization.k8s.io', 'clusterroles'],
    ['rbac.authorization.k8s.io', 'clusterrolebindings'],
    ['sparkoperator.k8s.io', 'sparkapplications'],
    ['sparkoperator.k8s.io', 'sparkconnects'],
    ['apps', 'deployments'],
    ['batch', 'jobs'],
    ['apiextensions.k8s.io', 'customresourcedefinitions'],
    ['admissionregistration.k8s.io', 'validatingadmissionpolicies'],
    ['admissionregistration.k8s.io', 'validatingadmissionpolicybindings'],
    ['coordination.k8s.io', 'leases'],
  ].flatMap(([g, r]) => rule(g, r, ALL_VERBS)),
  ...['log', 'exec', 'attach', 'portforward', 'eviction', 'proxy'].flatMap((s) =>
    rule('', 'pods', ['get', 'list', 'create'], s),
  ),
  ...rule('', 'serviceaccounts', ['create'], 'token'),
  ...rule('', 'nodes', ['get', 'create'], 'proxy'),
  ...rule('rbac.authorization.k8s.io', 'roles', ['bind', 'escalate']),
  ...rule('rbac.authorization.k8s.io', 'clusterroles', ['bind', 'escalate']),
  ...rule('', 'users', ['impersonate']),
  ...rule('', 'serviceaccounts', ['impersonate']),
];

async function allowed(account: string, a: Access, namespace: string): Promise<boolean> {
  const r = await ok(
    kube(admin, 'POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: {
        user: `system:serviceaccount:${NS}:${account}`,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${NS}`, 'system:authenticated'],
        resourceAttributes: {
          group: a.group,
          resource: a.resource,
          subresource: a.subresource,
          verb: a.verb,
          ...(namespace ? { namespace } : {}),
        },
      },
    }),
    'subject access review',
  );
  return (r.status as { allowed: boolean }).allowed;
}

/** The (resource, verb) pairs of PROBED the account may use in `namespace`. */
async function grants(account: string, namespace: string): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < PROBED.length; i += 25) {
    const batch = PROBED.slice(i, i + 25);
    const answers = await Promise.all(batch.map((a) => allowed(account, a, namespace)));
    batch.forEach((a, j) => answers[j] && out.push(key(a)));
  }
  return [...new Set(out)].sort();
}

const expected = (needs: Access[]) =>
  [...new Set(PROBED.filter((p) => needs.some((n) => key(n) === key(p))).map(key))].sort();

describe('the service accounts of deploy/kubernetes: what the code needs and nothing more', () => {
  it('the worker: RBAC grants exactly the Spark path (namespaces, quotas, the tenant account and Role, Spark objects, events, the tenant Role), in a tenant namespace, its own and kube-system alike', async () => {
    // Every need is among the probed pairs, so the comparison below covers it.
    for (const n of WORKER_NEEDS) expect(PROBED.map(key)).toContain(key(n));
    const want = expected(WORKER_NEEDS);
    // RBAC cannot name namespaces by prefix, and tenant namespaces appear on first use: the same
    // grants everywhere. The admission policy confines the writes (next test).
    for (const ns of [TENANT_NS, NS, 'kube-system']) expect(await grants('strata-worker', ns), ns).toEqual(want);
    for (const verb of ['get', 'list', 'watch'])
      expect(await allowed('strata-worker', { group: '', resource: 'secrets', verb }, TENANT_NS), verb).toBe(false);
    expect(await allowed('strata-worker', { group: '', resource: 'secrets', verb: 'get' }, '')).toBe(false);
  });

  it('the worker, with its own token, runs every Kubernetes call of the Spark path, the cluster provider and the sweeper in a tenant namespace', async () => {
    const info = inject('kube');
    const file = path.join(inject('scratchDir'), `${NS}-worker.kubeconfig`);
    await writeFile(file, tokenKubeconfig(info.server, info.caFile, await serviceAccountToken('strata-worker')));
    const w = SparkK8sClient.fromKubeconfig(file);
    expect(await ensureTenantNamespace(w, TENANT, TIERS.free)).toBe('created');
    expect(await ensureTenantNamespace(w, TENANT, TIERS.free)).toBe('exists');
    // A namespace made before its labels: the worker adds them (replaceNamespace).
    await ok(
      kube(
        admin,
        'PATCH',
        `/api/v1/namespaces/${TENANT_NS}`,
        [{ op: 'remove', path: '/metadata/labels/strata.dev~1tenant' }],
        'application/json-patch+json',
      ),
      'drop a label',
    );
    expect(await ensureTenantNamespace(w, TENANT, TIERS.free)).toBe('labelled');
    const run = {
      runId: 'r1',
      workflowId: `pipeline/${TENANT}/deploy/r1`,
      pipelineId: 'deploy',
      tenant: TENANT,
      trigger: 'manual',
      logicalDate: '2026-01-01',
    };
    const app = buildSparkApplication({
      name: 'deploy-app',
      namespace: TENANT_NS,
      task: { id: 't', kind: 'pyspark', file: 's3a://lake/x.py' },
      run,
      defaults: DEFAULT_SPARK,
    });
    expect((await w.createOrAdopt('sparkapplications', 'v1beta2', app)).adopted).toBe(false);
    // Adopting one made by an earlier attempt without the owner annotation replaces it with the annotation.
    const owned = {
      ...app,
      metadata: { ...app.metadata, annotations: { ...app.metadata.annotations, [OWNER_ANNOTATION]: 'x' } },
    };
    const adopted = await w.createOrAdopt('sparkapplications', 'v1beta2', owned);
    expect(adopted.adopted).toBe(true);
    expect((await w.get('sparkapplications', 'v1beta2', TENANT_NS, 'deploy-app')).metadata.name).toBe('deploy-app');
    expect((await w.listAll('sparkapplications', 'v1beta2', MANAGED_BY)).map((o) => o.metadata.name)).toContain(
      'deploy-app',
    );
    // No driver pod: a 404 (undefined), where a missing right would be a 403 (thrown).
    expect(await w.podLogTail(TENANT_NS, 'deploy-app-driver', 50)).toBeUndefined();
    await expect(w.core.listNamespacedEvent({ namespace: TENANT_NS })).resolves.toBeDefined();
    const connect = buildSparkConnect({
      name: 'deploy-connect',
      namespace: TENANT_NS,
      run: { tenant: TENANT },
      image: DEFAULT_SPARK.image,
      sparkVersion: DEFAULT_SPARK.sparkVersion,
      executors: 1,
      cores: 1,
      memoryGi: 1,
    });
    await w.createOrAdopt('sparkconnects', 'v1alpha1', connect);
    const c = await w.get('sparkconnects', 'v1alpha1', TENANT_NS, 'deploy-connect');
    await w.replace('sparkconnects', 'v1alpha1', {
      ...c,
      spec: { ...c.spec, executor: { ...(c.spec.executor as object), instances: 2 } },
    });
    expect((await w.listAll('sparkconnects', 'v1alpha1', MANAGED_BY)).map((o) => o.metadata.name)).toContain(
      'deploy-connect',
    );
    expect(await w.delete('sparkconnects', 'v1alpha1', TENANT_NS, 'deploy-connect')).toBe('deleted');
    // A job's catalog credential: created, replaced (a retried submit, then its owner), deleted; never read.
    const secret = (owner?: { apiVersion: string; kind: string; name: string; uid: string }) =>
      buildCatalogSecret({ app: 'deploy-app', namespace: TENANT_NS, run, taskId: 't', token: 'strata_run_x', owner });
    expect(await w.putSecret(secret())).toBe('created');
    const appUid = (await w.get('sparkapplications', 'v1beta2', TENANT_NS, 'deploy-app')).metadata.uid!;
    expect(
      await w.putSecret(
        secret({
          apiVersion: 'sparkoperator.k8s.io/v1beta2',
          kind: 'SparkApplication',
          name: 'deploy-app',
          uid: appUid,
        }),
      ),
    ).toBe('replaced');
    expect(await w.deleteSecret(TENANT_NS, 'deploy-app-catalog')).toBe('deleted');
    expect(await w.deleteSecret(TENANT_NS, 'deploy-app-catalog')).toBe('absent');
    expect(await w.delete('sparkapplications', 'v1beta2', TENANT_NS, 'deploy-app')).toBe('deleted');
  });

  it('the worker, with its own token, writes nowhere else: its own namespace, kube-system, other namespaces, a weakened tenant namespace, a foreign binding are refused, and no secret is read', async () => {
    const worker: Identity = { ca: admin.ca, token: await serviceAccountToken('strata-worker') };
    const refused = async (method: string, p: string, body: unknown, why: RegExp, contentType?: string) => {
      const r = await kube(worker, method, p, body, contentType);
      expect(r.status, `${method} ${p}`).toBe(403);
      expect(String(r.body.message), `${method} ${p}`).toMatch(why);
    };
    const cm = (ns: string) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'intruder', namespace: ns },
      data: {},
    });
    const onlyTenants = /writes only in tenant namespaces \(strata-\*\), not in namespace/;
    await refused('POST', `/api/v1/namespaces/${NS}/configmaps`, cm(NS), onlyTenants);
    await refused('POST', '/api/v1/namespaces/kube-system/configmaps', cm('kube-system'), onlyTenants);
    await refused(
      'POST',
      '/api/v1/namespaces/kube-system/pods',
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'intruder' },
        spec: { containers: [{ name: 'x', image: 'x' }] },
      },
      onlyTenants,
    );
    const onlyRestricted = /makes and labels only tenant namespaces \(strata-\*\) that enforce the\s+restricted/;
    await refused(
      'POST',
      '/api/v1/namespaces',
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } },
      onlyRestricted,
    );
    await refused(
      'POST',
      '/api/v1/namespaces',
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'strata-loose' } },
      onlyRestricted,
    );
    const tenantNs = (await ok(kube(admin, 'GET', `/api/v1/namespaces/${TENANT_NS}`), 'tenant namespace')) as Obj;
    await refused(
      'PUT',
      `/api/v1/namespaces/${TENANT_NS}`,
      {
        ...tenantNs,
        metadata: {
          ...tenantNs.metadata,
          labels: { ...tenantNs.metadata.labels, 'pod-security.kubernetes.io/enforce': 'privileged' },
        },
      },
      onlyRestricted,
    );
    // RBAC itself refuses what the worker holds no verb for.
    await refused('DELETE', `/api/v1/namespaces/${TENANT_NS}`, undefined, /cannot delete resource "namespaces"/);
    await refused('GET', `/api/v1/namespaces/${TENANT_NS}/secrets`, undefined, /cannot list resource "secrets"/);
    await refused('GET', `/api/v1/namespaces/${NS}/secrets/strata-secrets`, undefined, /cannot get resource "secrets"/);
    await refused(
      'POST',
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${TENANT_NS}/rolebindings`,
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'foreign' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'strata-spark' },
        subjects: [{ kind: 'ServiceAccount', name: 'strata-worker', namespace: NS }],
      },
      /binds only the tenant Role strata-spark, to service accounts of the\s+same namespace/,
    );
    // The same write in a tenant namespace passes: the refusals above are about where, not what.
    const inTenant = await kube(worker, 'POST', `/api/v1/namespaces/${TENANT_NS}/configmaps`, cm(TENANT_NS));
    expect(inTenant.status).toBe(201);
  });

  it('the API (and the trigger dispatcher in it): exactly a SparkApplication get and a driver log read, used with its own token', async () => {
    const want = expected(API_NEEDS);
    expect(want).toEqual(['core/pods/log:get', 'sparkoperator.k8s.io/sparkapplications:get']);
    for (const ns of [TENANT_NS, 'kube-system']) expect(await grants('strata-api', ns), ns).toEqual(want);
    const api: Identity = { ca: admin.ca, token: await serviceAccountToken('strata-api') };
    const read = await kube(
      api,
      'GET',
      `/apis/sparkoperator.k8s.io/v1beta2/namespaces/${TENANT_NS}/sparkapplications/none`,
    );
    expect(read.status).toBe(404);
    const log = await kube(api, 'GET', `/api/v1/namespaces/${TENANT_NS}/pods/none/log`);
    expect(log.status).toBe(404);
    const list = await kube(api, 'GET', `/apis/sparkoperator.k8s.io/v1beta2/namespaces/${TENANT_NS}/sparkapplications`);
    expect(list.status).toBe(403);
    // The default service account of Strata's namespace, which no pod of the manifests uses, has nothing.
    expect(await grants('default', NS)).toEqual([]);
  });
});
