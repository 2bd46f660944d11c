/**
 * A Kubernetes API server double for the Spark Operator: custom objects (sparkapplications
 * v1beta2, sparkconnects v1alpha1) validated against the project's schemas of them
 * (spark-schemas.ts) and, where the third-party specs are present, against the real CRDs
 * too (422 Invalid), namespaces,
 * resource quotas, pods, pod logs and events, with real `kind: Status` error bodies. A
 * simulated operator drives each SparkApplication through the controller's state machine
 * on a timeline the test chooses.
 */
import type http from 'node:http';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { APP_CRD, CONNECT_CRD, crdValidatorIfPresent, newAjv, type Validate } from './specs-dir.js';
import { SPARK_APPLICATION_SCHEMA, SPARK_CONNECT_SCHEMA } from './spark-schemas.js';
import { sendJson, serve, type Served } from './http.js';

/** One step of the operator timeline: a state held for `ms` (the last one is held forever). */
export interface Phase {
  state: string;
  ms?: number;
  errorMessage?: string;
  /** Executors running in this phase. */
  executors?: number;
}

export const SCENARIOS = {
  success: (runMs = 300): Phase[] => [
    { state: '', ms: 50 },
    { state: 'SUBMITTED', ms: 100 },
    { state: 'RUNNING', ms: runMs, executors: 2 },
    { state: 'SUCCEEDING', ms: 50 },
    { state: 'COMPLETED' },
  ],
  failure: (message: string): Phase[] => [
    { state: 'SUBMITTED', ms: 80 },
    { state: 'RUNNING', ms: 150, executors: 1 },
    { state: 'FAILING', ms: 50, errorMessage: message },
    { state: 'FAILED', errorMessage: message },
  ],
  /** Every phase lasts `phaseMs`, including a rerun after the first submission. */
  slowStart: (phaseMs: number): Phase[] => [
    { state: '', ms: phaseMs },
    { state: 'SUBMITTED', ms: phaseMs },
    { state: 'PENDING_RERUN', ms: phaseMs },
    { state: 'SUBMITTED', ms: phaseMs },
    { state: 'RUNNING', ms: phaseMs, executors: 3 },
    { state: 'SUCCEEDING', ms: phaseMs },
    { state: 'COMPLETED' },
  ],
  runForever: (): Phase[] => [
    { state: 'SUBMITTED', ms: 50 },
    { state: 'RUNNING', executors: 2 },
  ],
};

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: Record<string, any>;
  spec: Record<string, any>;
  status?: Record<string, any>;
}

interface Resource {
  plural: string;
  version: string;
  kind: string;
  crd: string;
  schema: Record<string, unknown>;
}
const RESOURCES: Record<string, Resource> = {
  sparkapplications: {
    plural: 'sparkapplications',
    version: 'v1beta2',
    kind: 'SparkApplication',
    crd: APP_CRD,
    schema: SPARK_APPLICATION_SCHEMA,
  },
  sparkconnects: {
    plural: 'sparkconnects',
    version: 'v1alpha1',
    kind: 'SparkConnect',
    crd: CONNECT_CRD,
    schema: SPARK_CONNECT_SCHEMA,
  },
};

const validators = new Map<string, Validate[]>();
/** The project's schema of the resource, then its real CRD when the specs are present. */
function validatorsOf(r: Resource): Validate[] {
  if (!validators.has(r.plural)) {
    const crd = crdValidatorIfPresent(r.crd, r.version);
    validators.set(r.plural, [newAjv().compile(r.schema) as Validate, ...(crd ? [crd] : [])]);
  }
  return validators.get(r.plural)!;
}

/** Why `o` would be refused as a SparkApplication (empty when the schema, and the CRD if present, accept it). */
export function sparkApplicationProblems(o: unknown): string[] {
  return validatorsOf(RESOURCES.sparkapplications).flatMap((v) =>
    v(o) ? [] : (v.errors ?? []).map((e) => `${e.instancePath || '(root)'}: ${e.message}`),
  );
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
}

export class K8sDouble {
  served!: Served;
  readonly namespaces = new Map<string, Obj>();
  readonly quotas = new Map<string, Obj>();
  /** Limit ranges, service accounts, roles and role bindings, by `{plural}/{namespace}/{name}`. */
  readonly namespaced = new Map<string, Obj>();
  readonly objects = new Map<string, Obj & { createdMs: number; timeline?: Phase[] }>();
  /** Pod log requests received, in order (follow or not). */
  readonly logRequests: { pod: string; follow: boolean }[] = [];
  readonly requests: RequestRecord[] = [];
  /** Timeline for each new SparkApplication (by default a quick success). */
  scenario: (app: Obj) => Phase[] = () => SCENARIOS.success();
  /** SparkConnect: ms from creation until Ready. */
  connectReadyMs = 150;
  private failures: { match: (m: string, p: string) => boolean; status: number; left: number }[] = [];
  private rv = 1;

  static async start(): Promise<K8sDouble> {
    const d = new K8sDouble();
    d.served = await serve((req, body, res) => d.handle(req, body, res));
    // Compile the validators now, not on the first create (the CRDs are large).
    for (const r of Object.values(RESOURCES)) validatorsOf(r);
    return d;
  }

  get url() {
    return this.served.url;
  }
  close() {
    return this.served.close();
  }

  /** Writes a kubeconfig pointing at this server (what a worker would be given). */
  async writeKubeconfig(dir: string): Promise<string> {
    const file = path.join(dir, `kubeconfig-${this.served.port}.yaml`);
    await writeFile(
      file,
      `apiVersion: v1
kind: Config
clusters:
- name: double
  cluster:
    server: ${this.url}
    insecure-skip-tls-verify: true
contexts:
- name: double
  context: { cluster: double, user: strata }
current-context: double
users:
- name: strata
  user:
    token: not-a-real-token
`,
    );
    return file;
  }

  /** The next `count` requests matching answer `status` (a 5xx burst). */
  failNext(count: number, status = 503, match: (method: string, path: string) => boolean = () => true) {
    this.failures.push({ match, status, left: count });
  }

  /** The object vanishes, as if deleted by someone else or by timeToLiveSeconds. */
  remove(plural: string, ns: string, name: string) {
    this.objects.delete(`${plural}/${ns}/${name}`);
  }

  count(method: string, pathRe: RegExp, status?: number) {
    return this.requests.filter(
      (r) => r.method === method && pathRe.test(r.path) && (status === undefined || r.status === status),
    ).length;
  }

  apps(): Obj[] {
    return [...this.objects.entries()].filter(([k]) => k.startsWith('sparkapplications/')).map(([, o]) => o);
  }

  private status(
    res: http.ServerResponse,
    code: number,
    reason: string,
    message: string,
    details?: Record<string, unknown>,
  ) {
    sendJson(res, code, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      details,
      code,
    });
    return code;
  }

  private meta(name: string, ns: string | undefined, given: Record<string, any> = {}) {
    return {
      ...given,
      name,
      ...(ns ? { namespace: ns } : {}),
      uid: crypto.randomUUID(),
      resourceVersion: String(this.rv++),
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      generation: 1,
    };
  }

  private handle(req: http.IncomingMessage, body: string, res: http.ServerResponse) {
    const url = new URL(req.url!, this.url);
    const method = req.method!;
    const record: RequestRecord = { method, path: url.pathname, status: 0 };
    this.requests.push(record);
    const failure = this.failures.find((f) => f.left > 0 && f.match(method, url.pathname));
    if (failure) {
      failure.left--;
      record.status = this.status(
        res,
        failure.status,
        failure.status === 503 ? 'ServiceUnavailable' : 'InternalError',
        'the server is currently unable to handle the request',
      );
      return;
    }
    if (req.headers.authorization !== 'Bearer not-a-real-token') {
      record.status = this.status(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    record.status = this.route(method, url, body, res);
  }

  private route(method: string, url: URL, body: string, res: http.ServerResponse): number {
    const p = url.pathname;
    let m: RegExpExecArray | null;
    if (method === 'POST' && p === '/api/v1/namespaces') {
      const o = JSON.parse(body) as Obj;
      const name = o.metadata?.name;
      if (this.namespaces.has(name))
        return this.status(res, 409, 'AlreadyExists', `namespaces "${name}" already exists`, {
          name,
          kind: 'namespaces',
        });
      const ns = {
        ...o,
        metadata: this.meta(name, undefined, o.metadata),
        spec: { finalizers: ['kubernetes'] },
        status: { phase: 'Active' },
      };
      this.namespaces.set(name, ns);
      sendJson(res, 201, ns);
      return 201;
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(p)) && method === 'GET') {
      const ns = this.namespaces.get(m[1]);
      if (!ns)
        return this.status(res, 404, 'NotFound', `namespaces "${m[1]}" not found`, { name: m[1], kind: 'namespaces' });
      sendJson(res, 200, ns);
      return 200;
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(p)) && method === 'PUT') {
      const ns = this.namespaces.get(m[1]);
      if (!ns)
        return this.status(res, 404, 'NotFound', `namespaces "${m[1]}" not found`, { name: m[1], kind: 'namespaces' });
      const o = JSON.parse(body) as Obj;
      if (o.metadata?.name !== m[1])
        return this.status(
          res,
          400,
          'BadRequest',
          `the name of the object (${o.metadata?.name}) does not match the name on the URL (${m[1]})`,
        );
      if (o.metadata.resourceVersion && o.metadata.resourceVersion !== ns.metadata.resourceVersion)
        return this.status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on namespaces "${m[1]}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      ns.metadata = {
        ...ns.metadata,
        labels: o.metadata.labels ?? {},
        annotations: o.metadata.annotations,
        resourceVersion: String(this.rv++),
      };
      sendJson(res, 200, ns);
      return 200;
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/resourcequotas$/.exec(p))) {
      const ns = m[1];
      if (!this.namespaces.has(ns))
        return this.status(res, 404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
      if (method === 'GET') {
        sendJson(res, 200, {
          kind: 'ResourceQuotaList',
          apiVersion: 'v1',
          metadata: {},
          items: [...this.quotas.values()].filter((q) => q.metadata.namespace === ns),
        });
        return 200;
      }
      if (method === 'POST') {
        const o = JSON.parse(body) as Obj;
        const key = `${ns}/${o.metadata.name}`;
        if (this.quotas.has(key))
          return this.status(res, 409, 'AlreadyExists', `resourcequotas "${o.metadata.name}" already exists`, {
            name: o.metadata.name,
            kind: 'resourcequotas',
          });
        const q = { ...o, metadata: this.meta(o.metadata.name, ns, o.metadata) };
        this.quotas.set(key, q);
        sendJson(res, 201, q);
        return 201;
      }
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/log$/.exec(p)) && method === 'GET') {
      const [, ns, pod] = m;
      const find = () =>
        [...this.objects.values()].find(
          (o) => o.kind === 'SparkApplication' && o.metadata.namespace === ns && `${o.metadata.name}-driver` === pod,
        );
      const app = find();
      const st = app && this.currentPhase(app);
      if (!app || !st || st.state === '' || st.state === 'SUBMITTED')
        return this.status(res, 404, 'NotFound', `pods "${pod}" not found`, { name: pod, kind: 'pods' });
      const container = url.searchParams.get('container');
      if (container && container !== 'spark-kubernetes-driver')
        return this.status(res, 400, 'BadRequest', `container ${container} is not valid for pod ${pod}`);
      this.logRequests.push({ pod, follow: url.searchParams.get('follow') === 'true' });
      const tail = Number(url.searchParams.get('tailLines') ?? 0);
      const first = this.driverLog(app);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write((tail ? first.slice(-tail) : first).map((l) => l + '\n').join(''));
      // follow=true: the kubelet keeps the stream open and sends lines as they come, until the container ends.
      if (url.searchParams.get('follow') !== 'true') {
        res.end();
        return 200;
      }
      let sent = first.length;
      const timer = setInterval(() => {
        const now = find();
        const lines = now ? this.driverLog(now) : [];
        if (lines.length > sent)
          res.write(
            lines
              .slice(sent)
              .map((l) => l + '\n')
              .join(''),
          );
        sent = Math.max(sent, lines.length);
        const state = now && this.currentPhase(now)?.state;
        if (!now || state === 'COMPLETED' || state === 'FAILED') {
          clearInterval(timer);
          res.end();
        }
      }, 40);
      res.on('close', () => clearInterval(timer));
      return 200;
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(p)) && method === 'GET') {
      const sel = /involvedObject\.name=([^,]+)/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
      const items = [...this.objects.values()]
        .filter(
          (o) =>
            o.metadata.namespace === m![1] &&
            (!sel || o.metadata.name === sel) &&
            o.timeline &&
            this.currentPhase(o)?.state === 'FAILED',
        )
        .map((o) => ({
          metadata: { name: `${o.metadata.name}.1`, namespace: m![1] },
          involvedObject: { kind: o.kind, name: o.metadata.name, namespace: m![1] },
          reason: 'SparkApplicationFailed',
          message: this.currentPhase(o)?.errorMessage ?? '',
          type: 'Warning',
        }));
      sendJson(res, 200, { kind: 'EventList', apiVersion: 'v1', metadata: {}, items });
      return 200;
    }
    // A list across every namespace (what a controller or Strata's sweeper reads), with an equality label selector.
    if ((m = /^\/apis\/sparkoperator\.k8s\.io\/([^/]+)\/([^/]+)$/.exec(p)) && method === 'GET') {
      const [, version, plural] = m;
      const r = RESOURCES[plural];
      if (!r || r.version !== version)
        return this.status(res, 404, 'NotFound', 'the server could not find the requested resource');
      const selector = (url.searchParams.get('labelSelector') ?? '')
        .split(',')
        .filter(Boolean)
        .map((t) => t.split('=') as [string, string]);
      sendJson(res, 200, {
        apiVersion: `sparkoperator.k8s.io/${r.version}`,
        kind: `${r.kind}List`,
        metadata: { resourceVersion: String(this.rv) },
        items: [...this.objects.entries()]
          .filter(([k]) => k.startsWith(`${r.plural}/`))
          .map(([, o]) => o)
          .filter((o) => selector.every(([k, v]) => o.metadata.labels?.[k] === v))
          .map((o) => this.view(o)),
      });
      return 200;
    }
    // What a tenant namespace holds besides its quota: the tier's limit range, the tenant's service account and Role.
    if (
      method === 'POST' &&
      (m =
        /^\/(?:api\/v1|apis\/rbac\.authorization\.k8s\.io\/v1)\/namespaces\/([^/]+)\/(limitranges|serviceaccounts|roles|rolebindings)$/.exec(
          p,
        ))
    ) {
      const [, ns, kind] = m;
      if (!this.namespaces.has(ns))
        return this.status(res, 404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
      const o = JSON.parse(body) as Obj;
      const key = `${kind}/${ns}/${o.metadata.name}`;
      if (this.namespaced.has(key))
        return this.status(res, 409, 'AlreadyExists', `${kind} "${o.metadata.name}" already exists`, {
          name: o.metadata.name,
          kind,
        });
      const made = { ...o, metadata: this.meta(o.metadata.name, ns, o.metadata) };
      this.namespaced.set(key, made);
      sendJson(res, 201, made);
      return 201;
    }
    if ((m = /^\/apis\/sparkoperator\.k8s\.io\/([^/]+)\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?$/.exec(p))) {
      const [, version, ns, plural, name] = m;
      const r = RESOURCES[plural];
      if (!r || r.version !== version)
        return this.status(res, 404, 'NotFound', 'the server could not find the requested resource');
      return this.custom(method, r, ns, name, body, res);
    }
    return this.status(res, 404, 'NotFound', 'the server could not find the requested resource');
  }

  private custom(
    method: string,
    r: Resource,
    ns: string,
    name: string | undefined,
    body: string,
    res: http.ServerResponse,
  ): number {
    const gk = `${r.plural}.sparkoperator.k8s.io`;
    const key = (n: string) => `${r.plural}/${ns}/${n}`;
    if (!name && method === 'POST') {
      if (!this.namespaces.has(ns))
        return this.status(res, 404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
      const o = JSON.parse(body) as Obj;
      const n = o.metadata?.name;
      const invalid = this.invalid(r, o);
      if (invalid)
        return this.status(res, 422, 'Invalid', `${r.kind}.sparkoperator.k8s.io "${n}" is invalid: ${invalid}`, {
          name: n,
          group: 'sparkoperator.k8s.io',
          kind: r.kind,
        });
      if (this.objects.has(key(n)))
        return this.status(res, 409, 'AlreadyExists', `${gk} "${n}" already exists`, {
          name: n,
          group: 'sparkoperator.k8s.io',
          kind: r.plural,
        });
      const stored = {
        ...o,
        metadata: this.meta(n, ns, o.metadata),
        createdMs: Date.now(),
        timeline: r.kind === 'SparkApplication' ? this.scenario(o) : undefined,
      };
      this.objects.set(key(n), stored);
      sendJson(res, 201, this.view(stored));
      return 201;
    }
    if (!name && method === 'GET') {
      sendJson(res, 200, {
        apiVersion: `sparkoperator.k8s.io/${r.version}`,
        kind: `${r.kind}List`,
        metadata: { resourceVersion: String(this.rv) },
        items: [...this.objects.entries()]
          .filter(([k]) => k.startsWith(`${r.plural}/${ns}/`))
          .map(([, o]) => this.view(o)),
      });
      return 200;
    }
    const o = name ? this.objects.get(key(name)) : undefined;
    if (!o)
      return this.status(res, 404, 'NotFound', `${gk} "${name}" not found`, {
        name,
        group: 'sparkoperator.k8s.io',
        kind: r.plural,
      });
    if (method === 'GET') {
      sendJson(res, 200, this.view(o));
      return 200;
    }
    if (method === 'DELETE') {
      this.objects.delete(key(name!));
      sendJson(res, 200, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Success',
        details: { name, group: 'sparkoperator.k8s.io', kind: r.plural, uid: o.metadata.uid },
      });
      return 200;
    }
    if (method === 'PUT') {
      const n = JSON.parse(body) as Obj;
      const invalid = this.invalid(r, n);
      if (invalid)
        return this.status(res, 422, 'Invalid', `${r.kind}.sparkoperator.k8s.io "${name}" is invalid: ${invalid}`);
      if (n.metadata.resourceVersion && n.metadata.resourceVersion !== o.metadata.resourceVersion)
        return this.status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${gk} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      o.spec = n.spec;
      o.metadata = { ...o.metadata, resourceVersion: String(this.rv++), generation: o.metadata.generation + 1 };
      sendJson(res, 200, this.view(o));
      return 200;
    }
    return this.status(res, 405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
  }

  private invalid(r: Resource, o: Obj): string | undefined {
    if (o?.apiVersion !== `sparkoperator.k8s.io/${r.version}` || o?.kind !== r.kind)
      return `apiVersion/kind: must be sparkoperator.k8s.io/${r.version} ${r.kind}`;
    if (
      !o.metadata?.name ||
      !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(o.metadata.name) ||
      o.metadata.name.length > 253
    )
      return `metadata.name: Invalid value: "${o.metadata?.name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`;
    const v = validatorsOf(r).find((x) => !x(o));
    if (!v) return undefined;
    return (v.errors ?? [])
      .slice(0, 5)
      .map((e) => `${e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(root)'}: Invalid value: ${e.message}`)
      .join(', ');
  }

  /** The driver's log so far: append-only, a line per state the application has passed through. */
  driverLog(app: Obj & { createdMs: number; timeline?: Phase[] }): string[] {
    const lines = [
      `INFO SparkContext: Running Spark version ${app.spec.sparkVersion}`,
      `INFO strata: main ${app.spec.mainApplicationFile}`,
    ];
    const now = this.currentPhase(app);
    for (const ph of app.timeline ?? []) {
      if (ph.state && ph.state !== 'SUBMITTED') {
        if (ph.errorMessage && !lines.includes(`ERROR strata: ${ph.errorMessage}`))
          lines.push(`ERROR strata: ${ph.errorMessage}`);
        lines.push(`INFO strata: state ${ph.state}`);
      }
      if (ph === now) break;
    }
    return lines;
  }

  currentPhase(o: { createdMs: number; timeline?: Phase[] }): Phase | undefined {
    if (!o.timeline) return undefined;
    let t = Date.now() - o.createdMs;
    for (const ph of o.timeline) {
      if (ph.ms === undefined || t < ph.ms) return ph;
      t -= ph.ms;
    }
    return o.timeline[o.timeline.length - 1];
  }

  /** The object with the status the operator would have written by now. */
  private view(o: Obj & { createdMs: number; timeline?: Phase[] }): Obj {
    const { createdMs, timeline, ...obj } = o;
    if (o.kind === 'SparkConnect') {
      const ready = Date.now() - createdMs >= this.connectReadyMs;
      return {
        ...obj,
        status: {
          state: ready ? 'Ready' : 'Provisioning',
          server: ready
            ? { podName: `${o.metadata.name}-server`, podIp: '10.0.0.7', serviceName: `${o.metadata.name}-server` }
            : undefined,
          executors: ready ? { running: o.spec.executor?.instances ?? 1 } : undefined,
        },
      };
    }
    const ph = this.currentPhase(o)!;
    const name = o.metadata.name;
    const started = ph.state !== '' && ph.state !== 'SUBMISSION_FAILED';
    // driverInfo is required by the CRD's status schema, empty until the driver exists.
    const status: Record<string, any> = {
      applicationState: { state: ph.state, ...(ph.errorMessage ? { errorMessage: ph.errorMessage } : {}) },
      driverInfo: {},
    };
    if (started) {
      Object.assign(status, {
        sparkApplicationId: `spark-${o.metadata.uid.slice(0, 12)}`,
        submissionID: o.metadata.uid,
        submissionAttempts: 1,
        executionAttempts: ph.state === 'SUBMITTED' ? 0 : 1,
        lastSubmissionAttemptTime: new Date(createdMs).toISOString().replace(/\.\d+Z$/, 'Z'),
        driverInfo: { podName: `${name}-driver`, webUIPort: 4040 },
        executorState: Object.fromEntries(
          Array.from({ length: ph.executors ?? 0 }, (_, i) => [
            `${name}-exec-${i + 1}`,
            ph.state === 'COMPLETED' ? 'COMPLETED' : 'RUNNING',
          ]),
        ),
      });
    }
    if (ph.state === 'COMPLETED' || ph.state === 'FAILED')
      status.terminationTime = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    return { ...obj, status };
  }
}
