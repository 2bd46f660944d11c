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
  Log,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import type { Writable } from 'node:stream';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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

export function toK8sError(e: unknown, what: string): K8sError {
  if (e instanceof K8sError) return e;
  if (e instanceof ApiException) {
    let body: { reason?: string; message?: string } = {};
    try {
      body = (typeof e.body === 'string' ? JSON.parse(e.body) : (e.body ?? {})) as typeof body;
    } catch {
      /* not a Status body */
    }
    return new K8sError(
      e.code,
      body.reason ?? 'Unknown',
      `${what}: ${e.code} ${body.reason ?? ''} ${body.message ?? ''}`.trim(),
    );
  }
  return new K8sError(0, 'NetworkError', `${what}: ${e instanceof Error ? e.message : String(e)}`);
}

export interface SparkAppStatus {
  applicationState?: { state?: string; errorMessage?: string };
  driverInfo?: { podName?: string; webUIAddress?: string };
  sparkApplicationId?: string;
  executorState?: Record<string, string>;
  submissionAttempts?: number;
  executionAttempts?: number;
  terminationTime?: string;
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
    const namespace = obj.metadata.namespace!;
    try {
      const created: unknown = await this.custom.createNamespacedCustomObject({
        group: SPARK_GROUP,
        version,
        namespace,
        plural,
        body: obj,
      });
      return { obj: created as K8sObject, adopted: false };
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
        const page = (await this.custom.listClusterCustomObject({
          group: SPARK_GROUP,
          version,
          plural,
          labelSelector,
          limit: 500,
          _continue,
        })) as { items?: K8sObject[]; metadata?: { continue?: string } };
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
      return (await this.custom.getNamespacedCustomObject({
        group: SPARK_GROUP,
        version,
        namespace,
        plural,
        name,
      })) as K8sObject;
    } catch (e) {
      throw toK8sError(e, `get ${plural}/${name} in ${namespace}`);
    }
  }

  /** Replaces an object (read-modify-write; a stale resourceVersion answers 409 Conflict). */
  async replace(plural: string, version: string, obj: K8sObject): Promise<K8sObject> {
    const { namespace, name } = obj.metadata;
    try {
      return (await this.custom.replaceNamespacedCustomObject({
        group: SPARK_GROUP,
        version,
        namespace: namespace!,
        plural,
        name,
        body: obj,
      })) as K8sObject;
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
   */
  async streamDriverLog(
    namespace: string,
    pod: string,
    out: Writable,
    o: { follow: boolean; tailLines?: number },
  ): Promise<AbortController | undefined> {
    try {
      return await new Log(this.kc).log(namespace, pod, SPARK_DRIVER_CONTAINER, out, {
        follow: o.follow,
        ...(o.tailLines ? { tailLines: o.tailLines } : {}),
      });
    } catch (e) {
      const err = toK8sError(e, `read log of pod ${pod}`);
      if (err.code === 404 || err.code === 400) return undefined;
      throw err;
    }
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
