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
 *
 * The driver writes a log, as Spark's would: the simulator keeps it in a file in the container
 * runtime's log format and makes a kwok `Logs` object for the driver pod naming that file, so
 * `GET pods/{driver}/log` (followed or not) goes API server → kwok's kubelet server → the file.
 * A failed application gets the operator's `SparkApplicationFailed` warning event. A
 * SparkConnect gets its server pod, the Service its clients reach it through, and executor
 * pods, scaled to `spec.executor.instances` when that changes.
 */
import { CoreV1Api, CustomObjectsApi, KubeConfig, Watch, type V1EnvVar, type V1Pod } from '@kubernetes/client-node';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
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
   * the Iceberg REST catalog with the settings its driver has (`driver.conf`). A job that throws fails.
   */
  job?: (app: Obj, driver: DriverProcess) => Promise<void>;
  /** Each state is held at least this long (ms) before the next move. */
  phaseMs?: number;
  /** The first submission is rerun (SUBMITTED → PENDING_RERUN → SUBMITTED, a new driver pod), as after a driver lost early. */
  rerun?: boolean;
}

/** What the driver's process has, as the kubelet and spark-submit give it to it. */
export interface DriverProcess {
  /** The container's environment: `valueFrom.secretKeyRef` read from the Secret, `$(VAR)` expanded. */
  env: Record<string, string>;
  /**
   * The Spark settings the driver runs with: the `spark.*` system properties of
   * SPARK_SUBMIT_OPTS (`-Dkey=value`), overridden by the application's `sparkConf` (as
   * SparkSubmit builds its SparkConf: system properties first, then the submitted properties).
   */
  conf: Record<string, string>;
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
  /** When each application last changed state (or was first seen), for `phaseMs`. */
  private readonly movedAt = new Map<string, number>();
  /** Lines already in each driver's log (a move retried after a conflict writes its line once). */
  private readonly logged = new Map<string, Set<string>>();
  private logDir: string | undefined;
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
  /** With `logDir`, drivers write logs there and kwok serves them as the driver pods' logs. */
  static async start(o: {
    kubeconfig: string;
    namespaces: string[];
    nodeName: string;
    logDir?: string;
  }): Promise<SparkOperatorSim> {
    const kc = new KubeConfig();
    kc.loadFromFile(o.kubeconfig);
    const sim = new SparkOperatorSim(kc, new Set(o.namespaces), o.nodeName);
    if (o.logDir) {
      await mkdir(o.logDir, { recursive: true });
      sim.logDir = o.logDir;
    }
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

  /** The driver of `name` writes `lines` to its log (while it runs, as Spark's driver does). */
  async log(namespace: string, name: string, ...lines: string[]) {
    await this.driverLog(namespace, name, lines);
  }

  private logFile(namespace: string, name: string) {
    return path.join(this.logDir!, `${namespace}_${name}-driver.log`);
  }

  /** Appends lines in the container runtime's log format (`{RFC3339Nano} stdout F {text}`), each once. */
  private async driverLog(namespace: string, name: string, lines: string[], o: { once?: boolean } = {}) {
    if (!this.logDir) return;
    const key = `${namespace}/${name}`;
    const have = this.logged.get(key) ?? new Set<string>();
    this.logged.set(key, have);
    const fresh = o.once ? lines.filter((l) => !have.has(l)) : lines;
    if (!fresh.length) return;
    for (const l of fresh) have.add(l);
    await appendFile(
      this.logFile(namespace, name),
      fresh.map((l) => `${new Date().toISOString()} stdout F ${l}\n`).join(''),
    );
  }

  /** A new driver container: a fresh log file with Spark's first lines, and the kwok Logs object serving it. */
  private async startDriverLog(app: Obj) {
    if (!this.logDir) return;
    const { namespace, name } = app.metadata;
    this.logged.delete(`${namespace}/${name}`);
    await writeFile(this.logFile(namespace, name), '');
    await this.driverLog(namespace, name, [
      `INFO SparkContext: Running Spark version ${app.spec.sparkVersion}`,
      `INFO strata: main ${app.spec.mainApplicationFile ?? '(sql)'}`,
    ]);
    await this.custom
      .createNamespacedCustomObject({
        group: 'kwok.x-k8s.io',
        version: 'v1alpha1',
        plural: 'logs',
        namespace,
        body: {
          apiVersion: 'kwok.x-k8s.io/v1alpha1',
          kind: 'Logs',
          metadata: {
            name: `${name}-driver`,
            namespace,
            ownerReferences: [{ apiVersion: app.apiVersion, kind: app.kind, name, uid: app.metadata.uid }],
          },
          spec: {
            logs: [{ containers: ['spark-kubernetes-driver'], logsFile: this.logFile(namespace, name), follow: true }],
          },
        },
      })
      .catch((e) => {
        if (toK8sError(e, 'create logs').code !== 409) throw e;
      });
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
    const { namespace, name } = app.metadata;
    // What the driver writes comes before the state shows it (a reader that sees the state finds the line).
    if (to !== 'SUBMITTED' && to !== 'SUBMISSION_FAILED')
      await this.driverLog(
        namespace,
        name,
        [...(errorMessage ? [`ERROR strata: ${errorMessage}`] : []), `INFO strata: state ${to}`],
        { once: true },
      );
    const status = {
      driverInfo: {},
      ...app.status,
      ...extra,
      applicationState: { state: to, ...(errorMessage ? { errorMessage } : {}) },
    };
    if (await this.writeStatus('v1beta2', 'sparkapplications', app, status)) {
      this.transitions.push({ app: `${namespace}/${name}`, from, to });
      this.movedAt.set(`${namespace}/${name}`, Date.now());
      if (to === 'FAILED') await this.failedEvent(app, errorMessage ?? 'unknown');
    }
  }

  /** The operator's warning event for a failed application (what `kubectl describe` shows). */
  private async failedEvent(app: Obj, message: string) {
    const at = new Date();
    await this.core
      .createNamespacedEvent({
        namespace: app.metadata.namespace,
        body: {
          metadata: { name: `${app.metadata.name}.${at.getTime().toString(16)}`, namespace: app.metadata.namespace },
          involvedObject: {
            apiVersion: app.apiVersion,
            kind: app.kind,
            name: app.metadata.name,
            namespace: app.metadata.namespace,
            uid: app.metadata.uid,
          },
          reason: 'SparkApplicationFailed',
          message: `SparkApplication ${app.metadata.name} failed: ${message}`,
          type: 'Warning',
          source: { component: 'spark-operator' },
          firstTimestamp: at,
          lastTimestamp: at,
          count: 1,
        },
      })
      .catch(() => undefined);
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
    const key = `${namespace}/${name}`;
    if (!this.movedAt.has(key)) this.movedAt.set(key, Date.now());
    const held = Date.now() - this.movedAt.get(key)!;
    if (sc.phaseMs && held < sc.phaseMs && state !== 'COMPLETED' && state !== 'FAILED')
      return this.later(sc.phaseMs - held, () => this.enqueue('sparkapplications', namespace, name));
    switch (state) {
      case '':
      case 'PENDING_RERUN': {
        if (state === 'PENDING_RERUN') {
          // The old driver must be gone before the new one of that name is made.
          const old = await this.core.readNamespacedPod({ namespace, name: driver }).catch(() => undefined);
          if (old) return this.later(150, () => this.enqueue('sparkapplications', namespace, name));
        }
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
        const attempts = (app.status?.submissionAttempts ?? 0) + 1;
        if (refused)
          return this.move(
            app,
            'SUBMISSION_FAILED',
            { submissionAttempts: attempts, lastSubmissionAttemptTime: now() },
            `failed to run spark-submit: ${refused}`,
          );
        await this.startDriverLog(app);
        return this.move(app, 'SUBMITTED', {
          sparkApplicationId: `spark-${app.metadata.uid.replace(/-/g, '').slice(0, 12)}`,
          submissionID: app.metadata.uid,
          submissionAttempts: attempts,
          executionAttempts: 0,
          lastSubmissionAttemptTime: now(),
          driverInfo: { podName: driver, webUIPort: 4040 },
        });
      }
      case 'SUBMISSION_FAILED':
        return this.move(app, 'FAILED', { terminationTime: now() }, app.status?.applicationState?.errorMessage);
      case 'SUBMITTED': {
        if (sc.rerun && (app.status?.submissionAttempts ?? 1) < 2) {
          // The driver is lost before it runs: the operator deletes it and submits again.
          await this.core
            .deleteNamespacedPod({ namespace, name: driver, gracePeriodSeconds: 0 })
            .catch(() => undefined);
          return this.move(app, 'PENDING_RERUN');
        }
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
          const driverContainer = pod.spec?.containers?.[0];
          this.later(0, () =>
            this.driverProcess(namespace, app, driverContainer?.env ?? [])
              .then((process) => job(app, process))
              .then(
                () => this.finish(namespace, name, sc.fail),
                (e: Error) => this.finish(namespace, name, `the job failed: ${e.message}`),
              ),
          );
        } else if (!sc.hold) this.later(sc.runMs ?? 300, () => this.finish(namespace, name, sc.fail));
        return;
      }
      case 'RUNNING': {
        if (!this.finishing.has(key)) return;
        const failure = this.finishing.get(key);
        return failure ? this.move(app, 'FAILING', {}, failure) : this.move(app, 'SUCCEEDING');
      }
      case 'SUCCEEDING':
      case 'FAILING': {
        // The driver ends; Spark removes its executors.
        const done = state === 'SUCCEEDING' ? 'COMPLETED' : 'FAILED';
        const msg = app.status?.applicationState?.errorMessage;
        // The driver's last words are in its log before its container ends.
        await this.driverLog(
          namespace,
          name,
          [...(msg ? [`ERROR strata: ${msg}`] : []), `INFO strata: state ${done}`],
          {
            once: true,
          },
        );
        for (const exec of Object.keys(app.status?.executorState ?? {}))
          await this.core.deleteNamespacedPod({ namespace, name: exec, gracePeriodSeconds: 0 }).catch(() => undefined);
        await this.endPod(namespace, driver, done === 'COMPLETED' ? 'Succeeded' : 'Failed');
        // Executors that ran end with the driver; one never admitted stays PENDING.
        const executorState = Object.fromEntries(
          Object.entries(app.status?.executorState ?? {}).map(([k, v]) => [k, v === 'RUNNING' ? done : v]),
        );
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

  /**
   * The driver's environment the way the kubelet makes it: a `secretKeyRef` is read from the
   * Secret (missing Secret or key: the container cannot start, and the job fails saying so),
   * `$(VAR)` in a value is replaced by an earlier variable's value (`$$` escapes); then its Spark
   * settings the way spark-submit reads them.
   */
  private async driverProcess(namespace: string, app: Obj, vars: V1EnvVar[]): Promise<DriverProcess> {
    const env: Record<string, string> = {};
    for (const v of vars) {
      const ref = v.valueFrom?.secretKeyRef;
      if (ref) {
        const secret = await this.core.readNamespacedSecret({ namespace, name: ref.name ?? '' }).catch((e) => {
          throw new Error(`CreateContainerConfigError: secret "${ref.name}" not found (${toK8sError(e, 'read').code})`);
        });
        const data = secret.data?.[ref.key];
        if (data === undefined)
          throw new Error(
            `CreateContainerConfigError: couldn't find key ${ref.key} in Secret ${namespace}/${ref.name}`,
          );
        env[v.name] = Buffer.from(data, 'base64').toString('utf8');
      } else
        env[v.name] = (v.value ?? '').replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name?: string) =>
          name === undefined ? '$' : name in env ? env[name] : m,
        );
    }
    const props: Record<string, string> = {};
    for (const opt of (env.SPARK_SUBMIT_OPTS ?? '').split(/\s+/)) {
      const m = /^-D(spark\.[^=]+)=(.*)$/.exec(opt);
      if (m) props[m[1]] = m[2];
    }
    return { env, conf: { ...props, ...(app.spec.sparkConf ?? {}) } };
  }

  /**
   * SparkConnect (v1alpha1 states: Provisioning, Ready, Failed): a server pod, the Service
   * `{name}-server` its clients connect to (port 15002), both owned by the SparkConnect, and
   * executor pods owned by the server pod, kept at `spec.executor.instances`.
   */
  private async reconcileConnect(namespace: string, name: string) {
    const sc = await this.get('v1alpha1', 'sparkconnects', namespace, name);
    if (!sc || sc.status?.state === 'Failed') return;
    const server = `${name}-server`;
    const owner = { apiVersion: sc.apiVersion, kind: sc.kind, name, uid: sc.metadata.uid };
    const labels = { 'spark-connect-name': name, ...(sc.metadata.labels ?? {}) };
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
            owner,
            side: {
              ...sc.spec.server,
              podSecurityContext: tpl.securityContext,
              securityContext: tpl.containers?.[0]?.securityContext,
            },
            image: sc.spec.image,
            serviceAccount: tpl.serviceAccountName,
            labels,
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
    await this.core
      .createNamespacedService({
        namespace,
        body: {
          metadata: {
            name: server,
            labels,
            ownerReferences: [{ ...owner, controller: true, blockOwnerDeletion: true }],
          },
          spec: {
            selector: { 'spark-connect-name': name, 'spark-role': 'server' },
            ports: [{ name: 'spark-connect', port: 15002, targetPort: 15002, protocol: 'TCP' }],
          },
        },
      })
      .catch((e) => {
        if (toK8sError(e, 'create service').code !== 409) throw e;
      });
    const pod = await this.core.readNamespacedPod({ namespace, name: server }).catch(() => undefined);
    if (pod?.status?.phase !== 'Running') {
      if (sc.status?.state !== 'Provisioning')
        await this.writeStatus('v1alpha1', 'sparkconnects', sc, { state: 'Provisioning' });
      return this.later(150, () => this.enqueue('sparkconnects', namespace, name));
    }
    const running = await this.scaleConnectExecutors(sc, pod, labels);
    if (
      sc.status?.state === 'Ready' &&
      sc.status?.executors?.running === running &&
      sc.status?.server?.podIp === (pod.status?.podIP ?? '')
    )
      return;
    await this.writeStatus('v1alpha1', 'sparkconnects', sc, {
      state: 'Ready',
      server: { podName: server, podIp: pod.status?.podIP ?? '', serviceName: server },
      executors: { running },
    });
  }

  /** Executor pods `{name}-exec-{i}` for i ≤ spec.executor.instances, extra ones deleted; the count running. */
  private async scaleConnectExecutors(sc: Obj, server: V1Pod, labels: Record<string, string>): Promise<number> {
    const { namespace, name } = sc.metadata;
    const want = Number(sc.spec.executor?.instances ?? 0);
    const tpl = sc.spec.executor?.template?.spec ?? {};
    const have = (
      await this.core.listNamespacedPod({ namespace, labelSelector: `spark-connect-name=${name},spark-role=executor` })
    ).items.filter((p) => !p.metadata?.deletionTimestamp);
    for (const p of have) {
      const i = Number(/-exec-(\d+)$/.exec(p.metadata!.name!)?.[1]);
      if (i > want)
        await this.core
          .deleteNamespacedPod({ namespace, name: p.metadata!.name!, gracePeriodSeconds: 0 })
          .catch(() => undefined);
    }
    let running = have.filter((p) => Number(/-exec-(\d+)$/.exec(p.metadata!.name!)?.[1]) <= want).length;
    for (let i = 1; i <= want; i++) {
      const exec = `${name}-exec-${i}`;
      if (have.some((p) => p.metadata?.name === exec)) continue;
      const refused = await this.createPod(
        this.pod({
          name: exec,
          namespace,
          role: 'executor',
          owner: { apiVersion: 'v1', kind: 'Pod', name: server.metadata!.name!, uid: server.metadata!.uid! },
          side: {
            ...sc.spec.executor,
            podSecurityContext: tpl.securityContext,
            securityContext: tpl.containers?.[0]?.securityContext,
          },
          image: sc.spec.image,
          serviceAccount: tpl.serviceAccountName,
          labels,
        }),
      );
      // Spark asks again later for an executor it could not get; the server runs with what it has.
      if (!refused) running++;
    }
    return running;
  }
}
