/**
 * A real Kubernetes control plane for the Spark tests, started once per test run:
 * kine (the etcd API over SQLite) → kube-apiserver (serving certificates and a
 * service-account issuer made here, RBAC, and the admission plugins a production cluster
 * runs: PodSecurity, ResourceQuota, LimitRanger, ServiceAccount…) → kube-controller-manager
 * (garbage collection through owner references, quota accounting, service accounts and
 * their tokens, namespace deletion, and for Strata's own manifests deployments, replica sets,
 * disruption budgets, autoscalers and admission policies' type checks) → kwok, which runs a
 * simulated node and the lifecycle of the pods put on it and serves their logs (from the files
 * kwok `Logs` objects name; the API server reaches kwok's kubelet server for
 * `pods/{name}/log`). The Spark Operator's CRDs are installed from the project's own schemas
 * (test/fakes/spark-crds.ts), kwok's Logs CRD from its module. Strata is handed an admin
 * kubeconfig file, as a user
 * would hand it one.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { KubeConfig, ApiextensionsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { freePort } from '../../workers/dev-server.js';
import { findOrBuildKubeBinaries, KWOK_MODULE } from '../../workers/kube-tools.js';
import { sparkCrds } from '../fakes/spark-crds.js';

export interface KubeCluster {
  /** https://127.0.0.1:PORT */
  server: string;
  /** kubeconfig of a cluster admin (system:masters). */
  kubeconfig: string;
  /** The CA that signed the serving certificate (for kubeconfigs the tests write). */
  caFile: string;
  /** The simulated node kwok runs pods on. */
  nodeName: string;
  /** Seconds from start to a ready cluster with the CRDs established. */
  startSeconds: number;
  stop(): Promise<void>;
}

export const KWOK_NODE = 'kwok-node-0';

function openssl(args: string[], cwd: string) {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** A CA, the API server's serving certificate, client certificates and the service-account key pair. */
function makePki(dir: string) {
  const o = (a: string[]) => openssl(a, dir);
  o(
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2'].concat([
      '-subj',
      '/CN=strata-test-ca',
    ]),
  );
  const sign = (name: string, subj: string, ext?: string) => {
    o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj]);
    if (ext) writeFileSync(path.join(dir, `${name}.ext`), ext);
    o(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'].concat(
        ['-out', `${name}.crt`, '-days', '2'],
        ext ? ['-extfile', `${name}.ext`] : [],
      ),
    );
  };
  sign(
    'apiserver',
    '/CN=kube-apiserver',
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc,IP:10.96.0.1\n' +
      'extendedKeyUsage=serverAuth\n',
  );
  sign('admin', '/O=system:masters/CN=strata-test-admin', 'extendedKeyUsage=clientAuth\n');
  sign('controller-manager', '/CN=system:kube-controller-manager', 'extendedKeyUsage=clientAuth\n');
  sign('kwok', '/O=system:masters/CN=kwok', 'extendedKeyUsage=clientAuth\n');
  o(['genrsa', '-out', 'sa.key', '2048']);
  o(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
}

/** A kubeconfig for the test API server at `server` (CA `caFile`) as `user`, whose credentials are `auth` (YAML lines). */
const kubeconfig = (server: string, caFile: string, user: string, auth: string[]) => `apiVersion: v1
kind: Config
clusters:
- name: strata-test
  cluster:
    server: ${server}
    certificate-authority: ${caFile}
contexts:
- name: strata-test
  context: { cluster: strata-test, user: ${user} }
current-context: strata-test
users:
- name: ${user}
  user:
${auth.map((l) => `    ${l}\n`).join('')}`;

/** A kubeconfig for `user` authenticating with a client certificate signed by the test CA. */
export function clientKubeconfig(server: string, dir: string, user: string): string {
  return kubeconfig(server, path.join(dir, 'ca.crt'), user, [
    `client-certificate: ${path.join(dir, `${user}.crt`)}`,
    `client-key: ${path.join(dir, `${user}.key`)}`,
  ]);
}

/** A kubeconfig that authenticates with a bearer token (a service account's). */
export function tokenKubeconfig(server: string, caFile: string, token: string): string {
  return kubeconfig(server, caFile, 'sa', [`token: ${token}`]);
}

interface Running {
  name: string;
  child: ChildProcess;
  out(): string;
}

function run(name: string, exe: string, args: string[]): Running {
  const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => (out = (out + b.toString()).slice(-8000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return { name, child, out: () => out };
}

async function stopAll(procs: Running[]) {
  for (const p of [...procs].reverse()) {
    if (p.child.exitCode !== null || p.child.signalCode) continue;
    const exited = new Promise((r) => p.child.once('exit', r));
    p.child.kill('SIGTERM');
    const t = setTimeout(() => p.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

async function until<T>(what: string, procs: Running[], ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const dead = procs.find((p) => p.child.exitCode !== null);
    if (dead) throw new Error(`${dead.name} exited (${dead.child.exitCode}) while waiting for ${what}:\n${dead.out()}`);
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end)
      throw new Error(
        `${what} not reached in ${ms / 1000} s:\n${procs.map((p) => `--- ${p.name}\n${p.out()}`).join('\n')}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** kwok's Go module folder (its stage files and CRDs are kwok's own, not the project's). */
function kwokModuleDir(): string {
  const r = spawnSync('go', ['mod', 'download', '-json', KWOK_MODULE.replace(/\/cmd\/kwok@/, '@')], {
    encoding: 'utf8',
    env: { ...process.env, GOFLAGS: '-mod=mod' },
  });
  if (r.status !== 0) throw new Error(`could not find kwok's module for its stage files: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { Dir: string }).Dir;
}

/** kwok's node and pod stages, read from its module. */
function kwokStages(moduleDir: string): string {
  const dir = path.join(moduleDir, 'kustomize', 'stage');
  const files = [
    'node/fast/node-initialize.yaml',
    'node/heartbeat/node-heartbeat.yaml',
    ...readdirSync(path.join(dir, 'pod', 'general'))
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .map((f) => `pod/general/${f}`),
  ];
  return files.map((f) => readFileSync(path.join(dir, f), 'utf8')).join('\n---\n');
}

/**
 * kwok's `Logs` CRD, from its module: a Logs object names the file kwok serves as a pod's
 * container log (followed as it grows), which is how the operator simulator gives a driver pod
 * the log Spark would write.
 */
function kwokLogsCrd(moduleDir: string): { metadata: { name: string } } {
  const file = path.join(moduleDir, 'kustomize', 'crd', 'bases', 'kwok.x-k8s.io_logs.yaml');
  return parseDocument(readFileSync(file, 'utf8')).toJS() as { metadata: { name: string } };
}

/**
 * The client's typed serializer writes only the fields its models name, under their model
 * names (`_enum`, `x_kubernetes_preserve_unknown_fields`); a plain JSON schema would lose its
 * enums and preserve flags on the way. Renames those keys to the model's.
 */
function clientModel(o: unknown): unknown {
  if (Array.isArray(o)) return o.map(clientModel);
  if (!o || typeof o !== 'object') return o;
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [
      k === 'enum' || k === 'default' ? `_${k}` : k.startsWith('x-kubernetes-') ? k.replace(/-/g, '_') : k,
      clientModel(v),
    ]),
  );
}

export async function startKubeCluster(o: { dir: string; log?: (m: string) => void }): Promise<KubeCluster> {
  const log = o.log ?? ((m: string) => console.error(m));
  const bins = await findOrBuildKubeBinaries(log);
  const started = Date.now();
  const pki = path.join(o.dir, 'pki');
  await mkdir(pki, { recursive: true });
  makePki(pki);
  const [etcdPort, apiPort, kwokPort] = [await freePort(), await freePort(), await freePort()];
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfig = path.join(o.dir, 'admin.kubeconfig');
  await writeFile(kubeconfig, clientKubeconfig(server, pki, 'admin'));
  const cmConfig = path.join(o.dir, 'controller-manager.kubeconfig');
  await writeFile(cmConfig, clientKubeconfig(server, pki, 'controller-manager'));
  const kwokConfig = path.join(o.dir, 'kwok.kubeconfig');
  await writeFile(kwokConfig, clientKubeconfig(server, pki, 'kwok'));
  const kwokDir = kwokModuleDir();
  const stagesFile = path.join(o.dir, 'kwok-stages.yaml');
  await writeFile(stagesFile, kwokStages(kwokDir));
  const crds = [...sparkCrds(), kwokLogsCrd(kwokDir)];

  const procs: Running[] = [];
  try {
    procs.push(
      run('kine', bins.kine, [
        '--endpoint',
        `sqlite://${path.join(o.dir, 'kine.db')}?_journal=WAL&cache=shared&_busy_timeout=30000`,
        '--listen-address',
        `127.0.0.1:${etcdPort}`,
        // Its metrics server would take :8080 (and collide with a second test run's).
        '--metrics-bind-address=0',
      ]),
    );
    const p = (f: string) => path.join(pki, f);
    procs.push(
      run('kube-apiserver', bins.apiserver, [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        `--secure-port=${apiPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        // No kubernetes Service endpoints to keep: nothing in the cluster calls the API server through it.
        '--endpoint-reconciler-type=none',
        `--tls-cert-file=${p('apiserver.crt')}`,
        `--tls-private-key-file=${p('apiserver.key')}`,
        `--client-ca-file=${p('ca.crt')}`,
        '--service-account-issuer=https://kubernetes.default.svc',
        `--service-account-key-file=${p('sa.pub')}`,
        `--service-account-signing-key-file=${p('sa.key')}`,
        '--api-audiences=https://kubernetes.default.svc',
        '--service-cluster-ip-range=10.96.0.0/16',
        // kwok's node lists its name as a Hostname address, which no DNS resolves: reach kubelets (kwok's server) by IP.
        '--kubelet-preferred-address-types=InternalIP',
        '--authorization-mode=RBAC',
        '--anonymous-auth=false',
        // As production clusters do: privileged pods are Pod Security's to refuse, per namespace.
        '--allow-privileged=true',
        '--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,ResourceQuota,' +
          'DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,' +
          'ValidatingAdmissionPolicy,NodeRestriction,Priority',
        `--cert-dir=${pki}`,
        '--storage-backend=etcd3',
        '--watch-cache=true',
        '--profiling=false',
        '--v=0',
      ]),
    );
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    await until('kube-apiserver ready', procs, 120_000, async () => {
      const res = await core.listNamespace();
      // The system namespaces exist once the API server's bootstrap controllers ran.
      return res.items.some((n) => n.metadata?.name === 'kube-system') ? true : undefined;
    });
    procs.push(
      run('kube-controller-manager', bins.controllerManager, [
        `--kubeconfig=${cmConfig}`,
        '--controllers=garbage-collector-controller,resourcequota-controller,serviceaccount-controller,' +
          'serviceaccount-token-controller,namespace-controller,' +
          // Strata's own manifests (deploy/kubernetes): ReplicaSets and pods of its Deployments, the
          // budgets' and the HPA's status and scaling, the admission policy's type checking.
          'deployment-controller,replicaset-controller,disruption-controller,horizontal-pod-autoscaler-controller,' +
          'validatingadmissionpolicy-status-controller',
        `--service-account-private-key-file=${p('sa.key')}`,
        `--root-ca-file=${p('ca.crt')}`,
        '--leader-elect=false',
        // Each controller with its own service account and bootstrap role, as in a production cluster.
        '--use-service-account-credentials=true',
        '--secure-port=0',
        '--concurrent-gc-syncs=5',
        '--v=0',
      ]),
    );
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    for (const crd of crds) await ext.createCustomResourceDefinition({ body: clientModel(crd) as never });
    // kwok lists Logs objects as it starts: their CRD must be served by then.
    await until('the Spark and kwok Logs CRDs established', procs, 60_000, async () => {
      for (const crd of crds) {
        const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
        if (!got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return undefined;
      }
      return true;
    });
    procs.push(
      run('kwok', bins.kwok, [
        `--kubeconfig=${kwokConfig}`,
        `--config=${stagesFile}`,
        // Pod logs come from Logs objects in the cluster (the operator simulator makes one per driver pod).
        '--enable-crds=Logs',
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        '--cidr=10.244.0.0/16',
        // The node's kubelet endpoint is kwok's own server, so the API server's log and exec requests reach it.
        '--node-ip=127.0.0.1',
        `--node-port=${kwokPort}`,
        `--server-address=127.0.0.1:${kwokPort}`,
        `--tls-cert-file=${p('apiserver.crt')}`,
        `--tls-private-key-file=${p('apiserver.key')}`,
      ]),
    );
    await core.createNode({
      body: {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name: KWOK_NODE,
          annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
          labels: { 'kubernetes.io/hostname': KWOK_NODE, 'kubernetes.io/os': 'linux', type: 'kwok' },
        },
        spec: {},
        status: {
          allocatable: { cpu: '512', memory: '2Ti', pods: '1000' },
          capacity: { cpu: '512', memory: '2Ti', pods: '1000' },
        },
      },
    });
    await until('the kwok node Ready', procs, 120_000, async () => {
      const n = await core.readNode({ name: KWOK_NODE });
      return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? true : undefined;
    });
    // The controller-manager makes each namespace's `default` service account: proof it runs.
    await until('kube-controller-manager running', procs, 120_000, async () => {
      const sa = await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
      return sa ? true : undefined;
    });
    const startSeconds = (Date.now() - started) / 1000;
    log(
      `Kubernetes test cluster (kine, kube-apiserver, kube-controller-manager, kwok) ready in ${startSeconds.toFixed(1)} s`,
    );
    return {
      server,
      kubeconfig,
      caFile: path.join(pki, 'ca.crt'),
      nodeName: KWOK_NODE,
      startSeconds,
      stop: () => stopAll(procs),
    };
  } catch (e) {
    await stopAll(procs);
    throw e;
  }
}
