/**
 * Speaks the Kubernetes API for Spark: SparkApplication and SparkConnect custom objects
 * (Spark Operator CRDs), pods and their logs, events, namespaces and quotas. Uses
 * @kubernetes/client-node (the official client: kubeconfig loading, in-cluster auth,
 * TLS) and nothing Temporal.
 */
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Secret,
} from '@kubernetes/client-node';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import type { Writable } from 'node:stream';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/** The driver container's name in pods the Spark Operator starts. */
export const SPARK_DRIVER_CONTAINER = 'spark-kubernetes-driver';

export const SPARK_GROUP = 'sparkoperator.k8s.io';
export const SPARK_APP_VERSION = 'v1beta2';
export const SPARK_CONNECT_VERSION = 'v1alpha1';

/** A Kubernetes API error with the Status body's reason and message. */
export class K8sError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'K8sError';
  }
  get retryable() {
    return this.code >= 500 || this.code === 429 || this.code === 0;
  }
}

/** The part of a Kubernetes `Status` body an error message uses. */
const StatusBody = z.looseObject({ reason: z.string().optional(), message: z.string().optional() });

/** A Status body's reason and message, or nothing when the text is not one. */
function statusOf(body: unknown): z.infer<typeof StatusBody> {
  let raw: unknown = body;
  if (typeof body === 'string')
    try {
      raw = JSON.parse(body);
    } catch {
      return {};
    }
  const r = StatusBody.safeParse(raw ?? {});
  return r.success ? r.data : {};
}

export function toK8sError(e: unknown, what: string): K8sError {
  if (e instanceof K8sError) return e;
  if (e instanceof ApiException) {
    const body = statusOf(e.body);
    return new K8sError(
      e.code,
      body.reason ?? 'Unknown',
      `${what}: ${e.code} ${body.reason ?? ''} ${body.message ?? ''}`.trim(),
    );
  }
  return new K8sError(0, 'NetworkError', `${what}: ${e instanceof Error ? e.message : String(e)}`);
}

/** The Spark Operator's status of a SparkApplication (the fields Strata reads). */
const SparkAppStatusShape = z.looseObject({
  applicationState: z.looseObject({ state: z.string().optional(), errorMessage: z.string().optional() }).optional(),
  driverInfo: z.looseObject({ podName: z.string().optional(), webUIAddress: z.string().optional() }).optional(),
  sparkApplicationId: z.string().optional(),
  executorState: z.record(z.string(), z.string()).optional(),
  submissionAttempts: z.number().optional(),
  executionAttempts: z.number().optional(),
  terminationTime: z.string().optional(),
});
export type SparkAppStatus = z.infer<typeof SparkAppStatusShape>;

/** A SparkApplication's status, checked (none yet: empty); one the operator would never write is an error saying so. */
export function sparkAppStatus(app: K8sObject): SparkAppStatus {
  const r = SparkAppStatusShape.safeParse(app.status ?? {});
  if (!r.success)
    throw new K8sError(
      0,
      'BadStatus',
      `the status of SparkApplication ${app.metadata.namespace ?? ''}/${app.metadata.name} is not the Spark Operator's: ${r.error.issues
        .map((i) => `${i.path.join('.')}: ${i.message}`)
        .join('; ')}`,
    );
  return r.data;
}

export interface K8sObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    uid?: string;
    resourceVersion?: string;
  };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
}

const K8sObjectShape = z.looseObject({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  metadata: z.looseObject({
    name: z.string(),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
  }),
  spec: z.record(z.string(), z.unknown()).default({}),
  status: z.record(z.string(), z.unknown()).optional(),
});
const ListShape = z.looseObject({
  items: z.array(K8sObjectShape).optional(),
  metadata: z.looseObject({ continue: z.string().optional() }).optional(),
});

/** An object the API server answered, checked against the shape Strata reads. */
function k8sObject(v: unknown, what: string): K8sObject {
  const r = K8sObjectShape.safeParse(v);
  if (!r.success)
    throw new K8sError(0, 'BadResponse', `${what}: the API server's answer is not an object with metadata.name`);
  return r.data;
}

/** The namespace of an object Strata is about to write (its manifests always name one). */
function namespaceOf(obj: K8sObject): string {
  const ns = obj.metadata.namespace;
  if (!ns) throw new K8sError(422, 'Invalid', `${obj.kind ?? 'object'} ${obj.metadata.name} names no namespace`);
  return ns;
}

export interface QuotaLimits {
  cpu: number;
  memoryGi: number;
  pods: number;
}

/** What the tenant's Spark pods run as: one service account per tenant namespace, bound to a Role there only. */
export const TENANT_ROLE = 'strata-spark';

/**
 * The Role of a tenant's Spark service account: what a Spark driver does in its own namespace
 * (executor pods, their services and config maps, shuffle volumes, logs). A Role, not a
 * ClusterRole: it reaches no other namespace.
 */
export const TENANT_ROLE_RULES = [
  {
    apiGroups: [''],
    resources: ['pods', 'services', 'configmaps', 'persistentvolumeclaims'],
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'],
  },
  { apiGroups: [''], resources: ['pods/log'], verbs: ['get', 'list'] },
];

export class SparkK8sClient {
  readonly custom: CustomObjectsApi;
  readonly core: CoreV1Api;
  readonly rbac: RbacAuthorizationV1Api;

  constructor(readonly kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  }

  /** kubeconfig from a file, else the default locations ($KUBECONFIG, ~/.kube/config, in-cluster). */
  static fromKubeconfig(path?: string): SparkK8sClient {
    const kc = new KubeConfig();
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
    return new SparkK8sClient(kc);
  }

  /**
   * Creates the namespace with a ResourceQuota on first use. An existing namespace gets any of
   * `labels` it lacks (e.g. the Pod Security labels on a namespace made before them); its
   * quota is left alone. With `serviceAccount`, the namespace also gets that service account
   * bound to the tenant Role (TENANT_ROLE_RULES), and with `limits` a LimitRange that caps
   * one container and gives containers that ask for nothing a default; both are created when
   * missing, on every call, so a namespace made before them gets them too.
   */
  async ensureNamespace(
    namespace: string,
    labels: Record<string, string>,
    quota: QuotaLimits,
    o: { serviceAccount?: string; limits?: { maxCores: number; maxMemoryGi: number } } = {},
  ): Promise<'created' | 'exists' | 'labelled'> {
    const result = await this.ensureNamespaceAndQuota(namespace, labels, quota);
    if (o.limits) await this.ensureLimitRange(namespace, labels, o.limits);
    if (o.serviceAccount) await this.ensureTenantAccount(namespace, labels, o.serviceAccount);
    return result;
  }

  /** Creates `create()`'s object unless it exists (409 AlreadyExists: made by an earlier attempt). */
  private async createIfMissing(what: string, create: () => Promise<unknown>) {
    try {
      await create();
    } catch (e) {
      const err = toK8sError(e, `create ${what}`);
      if (err.code !== 409) throw err;
    }
  }

  private async ensureLimitRange(
    namespace: string,
    labels: Record<string, string>,
    l: { maxCores: number; maxMemoryGi: number },
  ) {
    await this.createIfMissing(`limit range in ${namespace}`, () =>
      this.core.createNamespacedLimitRange({
        namespace,
        body: {
          apiVersion: 'v1',
          kind: 'LimitRange',
          metadata: { name: 'strata-tier', labels },
          spec: {
            limits: [
              {
                type: 'Container',
                max: { cpu: String(l.maxCores), memory: `${l.maxMemoryGi}Gi` },
                defaultRequest: { cpu: '500m', memory: '512Mi' },
                _default: { cpu: '1', memory: '1Gi' },
              },
            ],
          },
        },
      }),
    );
  }

  private async ensureTenantAccount(namespace: string, labels: Record<string, string>, serviceAccount: string) {
    await this.createIfMissing(`service account ${serviceAccount} in ${namespace}`, () =>
      this.core.createNamespacedServiceAccount({
        namespace,
        body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: serviceAccount, labels } },
      }),
    );
    await this.createIfMissing(`role ${TENANT_ROLE} in ${namespace}`, () =>
      this.rbac.createNamespacedRole({
        namespace,
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'Role',
          metadata: { name: TENANT_ROLE, labels },
          rules: TENANT_ROLE_RULES,
        },
      }),
    );
    await this.createIfMissing(`role binding ${TENANT_ROLE} in ${namespace}`, () =>
      this.rbac.createNamespacedRoleBinding({
        namespace,
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: TENANT_ROLE, labels },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: TENANT_ROLE },
          subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace }],
        },
      }),
    );
  }

  private async ensureNamespaceAndQuota(
    namespace: string,
    labels: Record<string, string>,
    quota: QuotaLimits,
  ): Promise<'created' | 'exists' | 'labelled'> {
    let ns;
    try {
      ns = await this.core.readNamespace({ name: namespace });
    } catch (e) {
      const err = toK8sError(e, `read namespace ${namespace}`);
      if (err.code !== 404) throw err;
    }
    if (ns) {
      const have = ns.metadata?.labels ?? {};
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) return 'exists';
      try {
        // The replace carries the resourceVersion read, so a concurrent change is not overwritten.
        await this.core.replaceNamespace({
          name: namespace,
          body: { ...ns, metadata: { ...ns.metadata, labels: { ...have, ...labels } } },
        });
      } catch (e) {
        const err = toK8sError(e, `label namespace ${namespace}`);
        // 409 Conflict: changed meanwhile; the activity's retry reads it again.
        throw err.code === 409 ? new K8sError(503, err.reason, err.message) : err;
      }
      return 'labelled';
    }
    try {
      await this.core.createNamespace({
        body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels } },
      });
    } catch (e) {
      const err = toK8sError(e, `create namespace ${namespace}`);
      if (err.code !== 409) throw err;
    }
    try {
      await this.core.createNamespacedResourceQuota({
        namespace,
        body: {
          apiVersion: 'v1',
          kind: 'ResourceQuota',
          metadata: { name: 'strata-tier', labels },
          spec: {
            hard: {
              'requests.cpu': String(quota.cpu),
              'requests.memory': `${quota.memoryGi}Gi`,
              pods: String(quota.pods),
            },
          },
        },
      });
    } catch (e) {
      const err = toK8sError(e, `create quota in ${namespace}`);
      if (err.code !== 409) throw err;
    }
    return 'created';
  }

  /**
   * Creates a custom object; an existing one of that name is adopted (a retried create). An
   * adopted object gets the annotations it lacks (e.g. the owner of one made before owners were recorded).
   */
  async createOrAdopt(plural: string, version: string, obj: K8sObject): Promise<{ obj: K8sObject; adopted: boolean }> {
    const namespace = namespaceOf(obj);
    try {
      const created: unknown = await this.custom.createNamespacedCustomObject({
        group: SPARK_GROUP,
        version,
        namespace,
        plural,
        body: obj,
      });
      return { obj: k8sObject(created, `create ${plural}/${obj.metadata.name}`), adopted: false };
    } catch (e) {
      const err = toK8sError(e, `create ${plural}/${obj.metadata.name}`);
      if (err.code !== 409 || err.reason !== 'AlreadyExists') throw err;
      const found = await this.get(plural, version, namespace, obj.metadata.name);
      const want = obj.metadata.annotations ?? {};
      const have = found.metadata.annotations ?? {};
      if (Object.entries(want).every(([k, v]) => have[k] === v)) return { obj: found, adopted: true };
      const annotations = { ...have, ...want };
      return {
        obj: await this.replace(plural, version, { ...found, metadata: { ...found.metadata, annotations } }),
        adopted: true,
      };
    }
  }

  /** Every object of a kind in every namespace that carries the labels (`key=value,…`), across pages. */
  async listAll(plural: string, version: string, labelSelector: string): Promise<K8sObject[]> {
    const out: K8sObject[] = [];
    let _continue: string | undefined;
    do {
      try {
        const answer: unknown = await this.custom.listClusterCustomObject({
          group: SPARK_GROUP,
          version,
          plural,
          labelSelector,
          limit: 500,
          _continue,
        });
        const parsed = ListShape.safeParse(answer);
        if (!parsed.success)
          throw new K8sError(0, 'BadResponse', `list ${plural}: the API server's answer is not a list of objects`);
        const page = parsed.data;
        out.push(...(page.items ?? []));
        _continue = page.metadata?.continue || undefined;
      } catch (e) {
        throw toK8sError(e, `list ${plural}`);
      }
    } while (_continue);
    return out;
  }

  async get(plural: string, version: string, namespace: string, name: string): Promise<K8sObject> {
    try {
      const answer: unknown = await this.custom.getNamespacedCustomObject({
        group: SPARK_GROUP,
        version,
        namespace,
        plural,
        name,
      });
      return k8sObject(answer, `get ${plural}/${name} in ${namespace}`);
    } catch (e) {
      throw toK8sError(e, `get ${plural}/${name} in ${namespace}`);
    }
  }

  /** Replaces an object (read-modify-write; a stale resourceVersion answers 409 Conflict). */
  async replace(plural: string, version: string, obj: K8sObject): Promise<K8sObject> {
    const { name } = obj.metadata;
    const namespace = namespaceOf(obj);
    try {
      const answer: unknown = await this.custom.replaceNamespacedCustomObject({
        group: SPARK_GROUP,
        version,
        namespace,
        plural,
        name,
        body: obj,
      });
      return k8sObject(answer, `replace ${plural}/${name} in ${namespace}`);
    } catch (e) {
      throw toK8sError(e, `replace ${plural}/${name} in ${namespace}`);
    }
  }

  /** Deletes; a 404 means it is already gone, which is what we wanted. */
  async delete(plural: string, version: string, namespace: string, name: string): Promise<'deleted' | 'absent'> {
    try {
      await this.custom.deleteNamespacedCustomObject({ group: SPARK_GROUP, version, namespace, plural, name });
      return 'deleted';
    } catch (e) {
      const err = toK8sError(e, `delete ${plural}/${name} in ${namespace}`);
      if (err.code === 404) return 'absent';
      throw err;
    }
  }

  /**
   * Writes a Secret: created, or (one of that name made by an earlier attempt) replaced whole,
   * unconditionally: the worker never reads Secrets (its role has no get), so it cannot
   * compare. Its values are never in an error message.
   */
  async putSecret(secret: V1Secret): Promise<'created' | 'replaced'> {
    const namespace = secret.metadata?.namespace ?? '';
    const name = secret.metadata?.name ?? '';
    try {
      await this.core.createNamespacedSecret({ namespace, body: secret });
      return 'created';
    } catch (e) {
      const err = toK8sError(e, `create secret ${name} in ${namespace}`);
      if (err.code !== 409) throw err;
    }
    try {
      await this.core.replaceNamespacedSecret({ namespace, name, body: secret });
      return 'replaced';
    } catch (e) {
      throw toK8sError(e, `replace secret ${name} in ${namespace}`);
    }
  }

  /** Deletes a Secret; a 404 means it is already gone. */
  async deleteSecret(namespace: string, name: string): Promise<'deleted' | 'absent'> {
    try {
      await this.core.deleteNamespacedSecret({ namespace, name });
      return 'deleted';
    } catch (e) {
      const err = toK8sError(e, `delete secret ${name} in ${namespace}`);
      if (err.code === 404) return 'absent';
      throw err;
    }
  }

  async podLogTail(namespace: string, pod: string, lines: number): Promise<string | undefined> {
    try {
      return await this.core.readNamespacedPodLog({ namespace, name: pod, tailLines: lines });
    } catch (e) {
      const err = toK8sError(e, `read log of pod ${pod}`);
      if (err.code === 404 || err.code === 400) return undefined;
      throw err;
    }
  }

  /**
   * Streams a Spark driver's log into `out`, following it while the pod runs when `follow`.
   * Resolves once the log is flowing (with a handle to stop it), or undefined if the pod is gone.
   *
   * A kubelet ends a followed log when the container exits; one that does not (a node that went
   * away, a kubelet that keeps the stream open) would hold the reader forever. So while following,
   * the pod is watched too: once its driver has ended, the stream is closed and what was written
   * after the last line received is read once more (by timestamp), so no line is lost or repeated.
   */
  async streamDriverLog(
    namespace: string,
    pod: string,
    out: Writable,
    o: { follow: boolean; tailLines?: number; checkEveryMs?: number },
  ): Promise<AbortController | undefined> {
    const query = { container: SPARK_DRIVER_CONTAINER, ...(o.tailLines ? { tailLines: String(o.tailLines) } : {}) };
    let first: IncomingMessage;
    try {
      first = await this.openPodLog(namespace, pod, {
        ...query,
        follow: String(o.follow),
        timestamps: String(o.follow),
      });
    } catch (e) {
      const err = toK8sError(e, `read log of pod ${pod}`);
      if (err.code === 404 || err.code === 400) return undefined;
      throw err;
    }
    const handle = new AbortController();
    if (!o.follow) {
      handle.signal.addEventListener('abort', () => first.destroy());
      first.on('error', () => out.end());
      first.pipe(out);
      return handle;
    }
    void this.follow(namespace, pod, first, out, handle.signal, query, o.checkEveryMs ?? 500);
    return handle;
  }

  private async follow(
    namespace: string,
    pod: string,
    stream: IncomingMessage,
    out: Writable,
    signal: AbortSignal,
    query: Record<string, string>,
    checkEveryMs: number,
  ) {
    const seen = new LogPosition();
    const lines = new LineSplitter((line) => {
      const text = seen.accept(line);
      if (text !== undefined) out.write(text + '\n');
    });
    // `end`: the API server closed the stream (the kubelet saw the container exit); close/error: broken or aborted.
    let endedByServer = false;
    let streamEnded = false;
    const ended = new Promise<void>((resolve) => {
      stream.on('data', (c: Buffer) => lines.push(c));
      stream.on('end', () => {
        endedByServer = true;
        resolve();
      });
      stream.on('error', () => resolve());
      stream.on('close', () => resolve());
    }).then(() => {
      streamEnded = true;
    });
    signal.addEventListener('abort', () => stream.destroy());
    try {
      while (!streamEnded && !signal.aborted) {
        await Promise.race([ended, new Promise((r) => setTimeout(r, checkEveryMs))]);
        if (streamEnded || signal.aborted) break;
        if (!(await this.driverEnded(namespace, pod))) continue;
        // The driver has ended but the stream is still open: close it and read what came after.
        stream.destroy();
        seen.rewind();
        const rest = await this.openPodLog(namespace, pod, {
          ...query,
          ...(seen.since ? { sinceTime: seen.since } : {}),
          follow: 'false',
          timestamps: 'true',
        }).catch(() => undefined);
        if (rest) {
          const after = new LineSplitter((line) => {
            const text = seen.accept(line);
            if (text !== undefined) out.write(text + '\n');
          });
          for await (const c of rest) after.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
          after.flush();
        }
        break;
      }
      if (endedByServer) lines.flush();
    } catch {
      /* the catch-up read broke off: the reader has what came through */
    } finally {
      out.end();
    }
  }

  /** Whether the pod's driver container has stopped (or the pod is gone). */
  private async driverEnded(namespace: string, pod: string): Promise<boolean> {
    try {
      const p = await this.core.readNamespacedPod({ namespace, name: pod });
      if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') return true;
      return !!p.status?.containerStatuses?.find((c) => c.name === SPARK_DRIVER_CONTAINER)?.state?.terminated;
    } catch (e) {
      return toK8sError(e, `read pod ${pod}`).code === 404;
    }
  }

  /** GET pods/{pod}/log with `query`: the response stream, or the API server's Status as a K8sError. */
  private async openPodLog(namespace: string, pod: string, query: Record<string, string>): Promise<IncomingMessage> {
    const server = this.kc.getCurrentCluster()?.server;
    if (!server) throw new K8sError(0, 'ConfigError', 'the kubeconfig has no current cluster');
    const url = new URL(
      `${server.replace(/\/$/, '')}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`,
    );
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const opts: https.RequestOptions = { method: 'GET', headers: {} };
    await this.kc.applyToHTTPSOptions(opts);
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = (url.protocol === 'http:' ? http : https).request(url, opts, resolve);
      req.on('error', (e) => reject(new K8sError(0, 'NetworkError', `read log of pod ${pod}: ${e.message}`)));
      req.end();
    });
    if (res.statusCode === 200) return res;
    let body = '';
    for await (const c of res) body += String(c);
    const st = statusOf(body);
    throw new K8sError(
      res.statusCode ?? 0,
      st.reason ?? 'Unknown',
      `read log of pod ${pod}: ${res.statusCode} ${st.reason ?? ''} ${st.message ?? body.slice(0, 200)}`.trim(),
    );
  }

  /** Warning events about an object: the usual reason a driver never started. */
  async warnings(namespace: string, name: string): Promise<string[]> {
    try {
      const list = await this.core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
      return list.items.filter((e) => e.type === 'Warning').map((e) => `${e.reason}: ${e.message}`);
    } catch {
      return [];
    }
  }
}

/** A Kubernetes client when a kubeconfig (STRATA_KUBECONFIG, KUBECONFIG, ~/.kube/config) or an in-cluster account is there. */
export function sparkClientFromEnv(env: NodeJS.ProcessEnv = process.env): SparkK8sClient | undefined {
  const kubeconfig = env.STRATA_KUBECONFIG;
  const hasKube =
    kubeconfig ||
    env.KUBECONFIG ||
    env.KUBERNETES_SERVICE_HOST ||
    existsSync(path.join(os.homedir(), '.kube', 'config'));
  return hasKube ? SparkK8sClient.fromKubeconfig(kubeconfig) : undefined;
}

/** Splits a byte stream into lines (without their newline); `flush` passes on a last line with none. */
class LineSplitter {
  private rest = '';
  // A character split across two chunks is decoded whole.
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly onLine: (line: string) => void) {}
  push(chunk: Buffer) {
    const parts = (this.rest + this.decoder.write(chunk)).split('\n');
    this.rest = parts.pop() ?? '';
    for (const p of parts) this.onLine(p);
  }
  flush() {
    this.rest += this.decoder.end();
    if (this.rest) this.onLine(this.rest);
    this.rest = '';
  }
}

/**
 * Where a timestamped log read has got to: the newest line's time (RFC3339 with nanoseconds,
 * as the kubelet writes it) and how many lines carried exactly that time, so a second read
 * from that second on (`sinceTime` has whole seconds) skips precisely what was passed on.
 */
export class LogPosition {
  private last: [number, number] | undefined;
  private atLast = 0;
  private skipAtLast = 0;
  /** Whole-second `sinceTime` for reading on from here. */
  since: string | undefined;

  /** The line's text (timestamp removed) if it comes after what was passed on, else undefined. */
  accept(line: string): string | undefined {
    const sp = line.indexOf(' ');
    const t = sp > 0 ? parseLogTime(line.slice(0, sp)) : undefined;
    if (!t) return line;
    const text = line.slice(sp + 1);
    const cmp = this.last ? t[0] - this.last[0] || t[1] - this.last[1] : 1;
    if (cmp < 0) return undefined;
    if (cmp === 0) {
      // A re-read: skip as many lines of this exact time as were passed on already.
      if (this.skipAtLast > 0) {
        this.skipAtLast--;
        return undefined;
      }
      this.atLast++;
      return text;
    }
    this.last = t;
    this.atLast = 1;
    this.skipAtLast = 0;
    this.since = new Date(t[0] * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    return text;
  }

  /** Before reading again from `since`: the lines at the newest time are skipped once more. */
  rewind() {
    this.skipAtLast = this.atLast;
  }
}

/** [epoch seconds, nanoseconds] of an RFC3339(Nano) UTC timestamp, or undefined. */
function parseLogTime(s: string): [number, number] | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(s);
  if (!m) return undefined;
  const secs = Date.parse(`${m[1]}Z`) / 1000;
  return Number.isNaN(secs) ? undefined : [secs, Number((m[2] ?? '').padEnd(9, '0'))];
}
