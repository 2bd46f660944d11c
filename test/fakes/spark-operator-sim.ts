/**
 * The one double left on the Kubernetes path: a Spark Operator simulator. It watches
 * SparkApplications (and SparkConnects) through the real API server and moves them through
 * the operator's state machine, creating the driver pod (owned by the application) and the
 * executor pods (owned by the driver pod, as Spark does) on the kwok node, where kwok runs
 * them. Everything else is the real Kubernetes: admission (Pod Security, ResourceQuota,
 * LimitRange, service accounts), RBAC, garbage collection, watch semantics, conflicts.
 *
 * A pod the API server refuses (over quota, not `restricted`) is what the operator reports
 * for a failed spark-submit: SUBMISSION_FAILED with the API server's message, then FAILED.
 * Status is written through the `status` subresource with the resourceVersion read, so a
 * concurrent change answers 409 Conflict and the simulator reads again.
 */
import { CoreV1Api, CustomObjectsApi, KubeConfig, Watch, type V1Pod } from '@kubernetes/client-node';
import { toK8sError } from '../../activities/spark-k8s/client.js';

/** The operator's ApplicationStateType values (its API docs) and the moves it makes between them. */
export const OPERATOR_TRANSITIONS: Record<string, string[]> = {
  '': ['SUBMITTED', 'SUBMISSION_FAILED'],
  SUBMITTED: ['RUNNING', 'FAILING', 'PENDING_RERUN'],
  RUNNING: ['SUCCEEDING', 'FAILING'],
  SUCCEEDING: ['COMPLETED'],
  FAILING: ['FAILED'],
  SUBMISSION_FAILED: ['FAILED', 'PENDING_RERUN'],
  PENDING_RERUN: ['SUBMITTED'],
  COMPLETED: [],
  FAILED: [],
};

/** How one application goes, chosen by the test. */
export interface AppScenario {
  /** Executor pods to start (default spec.executor.instances). */
  executors?: number;
  /** ms in RUNNING before finishing; `hold` keeps it RUNNING until finish(). */
  runMs?: number;
  hold?: boolean;
  /** Fail with this message instead of completing. */
  fail?: string;
  /**
   * What the job does while RUNNING, before it ends: e.g. the commit a real job makes through
   * the Iceberg REST catalog with the settings in `spec.sparkConf`. A job that throws fails.
   */
  job?: (app: Obj) => Promise<void>;
}

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string; labels?: Record<string, string> };
  spec: Record<string, any>;
  status?: Record<string, any>;
};

const GROUP = 'sparkoperator.k8s.io';
const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** Spark's memory string ("1g", "512m") as a Kubernetes quantity with the JVM overhead (max(10%, 384Mi)). */
export function podMemory(spark: string | undefined): string {
  const m = /^(\d+)([kmgt]?)b?$/i.exec(String(spark ?? '1g'));
  const mi = m
    ? Number(m[1]) * ({ '': 1 / 1048576, k: 1 / 1024, m: 1, g: 1024, t: 1048576 } as any)[m[2].toLowerCase()]
    : 1024;
  return `${Math.ceil(mi + Math.max(mi * 0.1, 384))}Mi`;
}

export class SparkOperatorSim {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  /** Every state change written, in order: `{namespace}/{name}: FROM -> TO`. */
  readonly transitions: { app: string; from: string; to: string }[] = [];
  /** Status writes that met 409 Conflict and were read again. */
  conflicts = 0;
  /** Watches restarted after they ended or broke. */
  rewatches = 0;
  scenario: (app: Obj) => AppScenario = () => ({ runMs: 300 });
  private readonly aborts: AbortController[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly queues = new Map<string, Promise<void>>();
  private readonly finishing = new Map<string, string | undefined>();
  private stopped = false;

  private constructor(
    readonly kc: KubeConfig,
    readonly namespaces: Set<string>,
    readonly nodeName: string,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /** Starts watching the given namespaces (other test files' namespaces are theirs). */
  static async start(o: { kubeconfig: string; namespaces: string[]; nodeName: string }): Promise<SparkOperatorSim> {
    const kc = new KubeConfig();
    kc.loadFromFile(o.kubeconfig);
    const sim = new SparkOperatorSim(kc, new Set(o.namespaces), o.nodeName);
    await Promise.all([sim.watch('v1beta2', 'sparkapplications'), sim.watch('v1alpha1', 'sparkconnects')]);
    return sim;
  }

  async stop() {
    this.stopped = true;
    for (const a of this.aborts) a.abort();
    for (const t of this.timers) clearTimeout(t);
    await Promise.allSettled([...this.queues.values()]);
  }

  /** Ends a held application: COMPLETED, or FAILED with `failure`. */
  finish(namespace: string, name: string, failure?: string) {
    this.finishing.set(`${namespace}/${name}`, failure);
    this.enqueue('sparkapplications', namespace, name);
  }

  /** Breaks every open watch, as a restarted API server or a dropped connection would. */
  breakWatches() {
    for (const a of this.aborts.splice(0)) a.abort();
  }

  /**
   * Lists, then watches from the list's resourceVersion; when the watch ends or breaks, lists
   * and watches again (a 410 Gone for a too-old resourceVersion is the same: list again).
   */
  private async watch(version: string, plural: string) {
    const path = `/apis/${GROUP}/${version}/${plural}`;
    const listed = (await this.custom.listClusterCustomObject({ group: GROUP, version, plural })) as {
      metadata: { resourceVersion: string };
      items: Obj[];
    };
    for (const o of listed.items) this.enqueue(plural, o.metadata.namespace, o.metadata.name);
    const abort = await new Watch(this.kc).watch(
      path,
      { resourceVersion: listed.metadata.resourceVersion, allowWatchBookmarks: true },
      (type: string, o: Obj) => {
        if (type === 'ADDED' || type === 'MODIFIED') this.enqueue(plural, o.metadata.namespace, o.metadata.name);
      },
      () => {
        if (this.stopped) return;
        this.rewatches++;
        this.later(200, () =>
          this.watch(version, plural).catch(() => this.later(1000, () => this.watch(version, plural))),
        );
      },
    );
    this.aborts.push(abort);
  }

  private later(ms: number, fn: () => unknown) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) void fn();
    }, ms);
    this.timers.add(t);
  }

  /** One reconcile at a time per object. */
  private enqueue(plural: string, namespace: string, name: string) {
    if (!this.namespaces.has(namespace) || this.stopped) return;
    const key = `${plural}/${namespace}/${name}`;
    const next = (this.queues.get(key) ?? Promise.resolve())
      .then(() =>
        plural === 'sparkapplications' ? this.reconcileApp(namespace, name) : this.reconcileConnect(namespace, name),
      )
      .catch(() => this.later(500, () => this.enqueue(plural, namespace, name)));
    this.queues.set(key, next);
  }

  private async get(version: string, plural: string, namespace: string, name: string): Promise<Obj | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({ group: GROUP, version, plural, namespace, name })) as Obj;
    } catch (e) {
      if (toK8sError(e, 'get').code === 404) return undefined;
      throw e;
    }
  }

  /** Writes status through the subresource; 409 Conflict: someone changed it, reconcile again from a fresh read. */
  private async writeStatus(version: string, plural: string, o: Obj, status: Record<string, any>): Promise<boolean> {
    try {
      await this.custom.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version,
        plural,
        namespace: o.metadata.namespace,
        name: o.metadata.name,
        body: { ...o, status },
      });
      return true;
    } catch (e) {
      const err = toK8sError(e, 'status');
      if (err.code === 409) {
        this.conflicts++;
        this.enqueue(plural, o.metadata.namespace, o.metadata.name);
        return false;
      }
      if (err.code === 404) return false;
      throw err;
    }
  }

  private async move(app: Obj, to: string, extra: Record<string, any> = {}, errorMessage?: string) {
    const from = app.status?.applicationState?.state ?? '';
    if (!OPERATOR_TRANSITIONS[from]?.includes(to))
      throw new Error(`the simulator tried ${from || '""'} -> ${to}, which the operator never does`);
    const status = {
      driverInfo: {},
      ...app.status,
      ...extra,
      applicationState: { state: to, ...(errorMessage ? { errorMessage } : {}) },
    };
    if (await this.writeStatus('v1beta2', 'sparkapplications', app, status))
      this.transitions.push({ app: `${app.metadata.namespace}/${app.metadata.name}`, from, to });
  }

  private pod(o: {
    name: string;
    namespace: string;
    role: 'driver' | 'executor' | 'server';
    owner: { apiVersion: string; kind: string; name: string; uid: string };
    side: Record<string, any>;
    image: string;
    serviceAccount?: string;
    labels: Record<string, string>;
  }): V1Pod {
    const cpu = String(o.side.cores ?? 1);
    const memory = podMemory(o.side.memory);
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: o.name,
        namespace: o.namespace,
        labels: { ...o.labels, 'spark-role': o.role },
        ownerReferences: [{ ...o.owner, controller: true, blockOwnerDeletion: true }],
      },
      spec: {
        nodeName: this.nodeName,
        restartPolicy: 'Never',
        // Spark's JVMs exit promptly on SIGTERM; kwok holds a deleted pod for its grace period.
        terminationGracePeriodSeconds: 1,
        ...(o.serviceAccount ? { serviceAccountName: o.serviceAccount } : {}),
        securityContext: o.side.podSecurityContext,
        tolerations: [{ key: 'kwok.x-k8s.io/node', operator: 'Exists', effect: 'NoSchedule' }],
        containers: [
          {
            name:
              o.role === 'driver'
                ? 'spark-kubernetes-driver'
                : o.role === 'server'
                  ? 'spark-connect-server'
                  : 'spark-kubernetes-executor',
            image: o.image,
            env: o.side.env,
            securityContext: o.side.securityContext,
            resources: { requests: { cpu, memory }, limits: { cpu, memory } },
          },
        ],
      },
    };
  }

  private async createPod(pod: V1Pod): Promise<string | undefined> {
    try {
      await this.core.createNamespacedPod({ namespace: pod.metadata!.namespace!, body: pod });
      return undefined;
    } catch (e) {
      const err = toK8sError(e, `create pod ${pod.metadata!.name}`);
      if (err.code === 409) return undefined; // made on an earlier pass
      if (err.code === 403 || err.code === 422 || err.code === 400) return err.message;
      throw err;
    }
  }

  /** The driver container exits: the pod ends (and stops counting against the namespace's quota). */
  private async endPod(namespace: string, name: string, phase: 'Succeeded' | 'Failed') {
    const pod = await this.core.readNamespacedPod({ namespace, name }).catch(() => undefined);
    if (!pod || pod.status?.phase === phase) return;
    const at = new Date();
    pod.status = {
      ...pod.status,
      phase,
      conditions: (pod.status?.conditions ?? []).map((c) =>
        c.type === 'Ready' || c.type === 'ContainersReady' ? { ...c, status: 'False', lastTransitionTime: at } : c,
      ),
      containerStatuses: (pod.status?.containerStatuses ?? []).map((c) => ({
        ...c,
        ready: false,
        started: false,
        state: {
          terminated: {
            exitCode: phase === 'Succeeded' ? 0 : 1,
            reason: phase === 'Succeeded' ? 'Completed' : 'Error',
            finishedAt: at,
          },
        },
      })),
    };
    await this.core.replaceNamespacedPodStatus({ namespace, name, body: pod }).catch(() => undefined);
  }

  private async reconcileApp(namespace: string, name: string) {
    const app = await this.get('v1beta2', 'sparkapplications', namespace, name);
    if (!app) return;
    const state: string = app.status?.applicationState?.state ?? '';
    const sc = this.scenario(app);
    const labels = {
      'spark-app-name': name,
      'sparkoperator.k8s.io/app-name': name,
      ...(app.spec.driver?.labels ?? {}),
    };
    const driver = `${name}-driver`;
    switch (state) {
      case '': {
        const refused = await this.createPod(
          this.pod({
            name: driver,
            namespace,
            role: 'driver',
            owner: { apiVersion: app.apiVersion, kind: app.kind, name, uid: app.metadata.uid },
            side: app.spec.driver ?? {},
            image: app.spec.image,
            serviceAccount: app.spec.driver?.serviceAccount,
            labels,
          }),
        );
        if (refused)
          return this.move(
            app,
            'SUBMISSION_FAILED',
            { submissionAttempts: 1, lastSubmissionAttemptTime: now() },
            `failed to run spark-submit: ${refused}`,
          );
        return this.move(app, 'SUBMITTED', {
          sparkApplicationId: `spark-${app.metadata.uid.replace(/-/g, '').slice(0, 12)}`,
          submissionID: app.metadata.uid,
          submissionAttempts: 1,
          executionAttempts: 0,
          lastSubmissionAttemptTime: now(),
          driverInfo: { podName: driver, webUIPort: 4040 },
        });
      }
      case 'SUBMISSION_FAILED':
        return this.move(app, 'FAILED', { terminationTime: now() }, app.status?.applicationState?.errorMessage);
      case 'SUBMITTED': {
        const pod = await this.core.readNamespacedPod({ namespace, name: driver }).catch(() => undefined);
        if (!pod) return this.move(app, 'FAILING', {}, `driver pod ${driver} not found`);
        if (pod.status?.phase !== 'Running')
          return this.later(150, () => this.enqueue('sparkapplications', namespace, name));
        const executors: Record<string, string> = {};
        const n = sc.executors ?? app.spec.executor?.instances ?? 1;
        for (let i = 1; i <= n; i++) {
          const exec = `${name}-exec-${i}`;
          const refused = await this.createPod(
            this.pod({
              name: exec,
              namespace,
              role: 'executor',
              owner: { apiVersion: 'v1', kind: 'Pod', name: driver, uid: pod.metadata!.uid! },
              side: app.spec.executor ?? {},
              image: app.spec.image,
              serviceAccount: app.spec.driver?.serviceAccount,
              labels,
            }),
          );
          // Spark's driver asks for executors again later; the application runs with what it got.
          executors[exec] = refused ? 'PENDING' : 'RUNNING';
        }
        await this.move(app, 'RUNNING', { executionAttempts: 1, executorState: executors });
        if (sc.job) {
          const job = sc.job;
          this.later(0, () =>
            job(app).then(
              () => this.finish(namespace, name, sc.fail),
              (e: Error) => this.finish(namespace, name, `the job failed: ${e.message}`),
            ),
          );
        } else if (!sc.hold) this.later(sc.runMs ?? 300, () => this.finish(namespace, name, sc.fail));
        return;
      }
      case 'RUNNING': {
        const key = `${namespace}/${name}`;
        if (!this.finishing.has(key)) return;
        const failure = this.finishing.get(key);
        return failure ? this.move(app, 'FAILING', {}, failure) : this.move(app, 'SUCCEEDING');
      }
      case 'SUCCEEDING':
      case 'FAILING': {
        // The driver ends; Spark removes its executors.
        const done = state === 'SUCCEEDING' ? 'COMPLETED' : 'FAILED';
        for (const exec of Object.keys(app.status?.executorState ?? {}))
          await this.core.deleteNamespacedPod({ namespace, name: exec, gracePeriodSeconds: 0 }).catch(() => undefined);
        await this.endPod(namespace, driver, done === 'COMPLETED' ? 'Succeeded' : 'Failed');
        const executorState = Object.fromEntries(Object.keys(app.status?.executorState ?? {}).map((k) => [k, done]));
        return this.move(
          app,
          done,
          { terminationTime: now(), executorState },
          app.status?.applicationState?.errorMessage,
        );
      }
      default:
        return;
    }
  }

  /** SparkConnect: a server pod and its executors, then Ready (v1alpha1 states: Provisioning, Ready, Failed). */
  private async reconcileConnect(namespace: string, name: string) {
    const sc = await this.get('v1alpha1', 'sparkconnects', namespace, name);
    if (!sc || sc.status?.state === 'Ready' || sc.status?.state === 'Failed') return;
    const server = `${name}-server`;
    const tpl = sc.spec.server?.template?.spec ?? {};
    // Look before creating: admission (quota) answers before AlreadyExists would.
    const existing = await this.core.readNamespacedPod({ namespace, name: server }).catch(() => undefined);
    const refused = existing
      ? undefined
      : await this.createPod(
          this.pod({
            name: server,
            namespace,
            role: 'server',
            owner: { apiVersion: sc.apiVersion, kind: sc.kind, name, uid: sc.metadata.uid },
            side: {
              ...sc.spec.server,
              podSecurityContext: tpl.securityContext,
              securityContext: tpl.containers?.[0]?.securityContext,
            },
            image: sc.spec.image,
            serviceAccount: tpl.serviceAccountName,
            labels: { 'spark-connect-name': name, ...(sc.metadata.labels ?? {}) },
          }),
        );
    if (refused) {
      await this.writeStatus('v1alpha1', 'sparkconnects', sc, {
        state: 'Failed',
        conditions: [
          {
            type: 'ServerPodReady',
            status: 'False',
            reason: 'PodCreateFailed',
            message: refused,
            lastTransitionTime: now(),
          },
        ],
      });
      return;
    }
    const pod = await this.core.readNamespacedPod({ namespace, name: server }).catch(() => undefined);
    if (pod?.status?.phase !== 'Running') {
      if (sc.status?.state !== 'Provisioning')
        await this.writeStatus('v1alpha1', 'sparkconnects', sc, { state: 'Provisioning' });
      return this.later(150, () => this.enqueue('sparkconnects', namespace, name));
    }
    await this.writeStatus('v1alpha1', 'sparkconnects', sc, {
      state: 'Ready',
      server: { podName: server, podIp: pod.status?.podIP ?? '', serviceName: server },
      executors: { running: sc.spec.executor?.instances ?? 0 },
    });
  }
}
