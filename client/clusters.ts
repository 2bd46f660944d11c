/**
 * The Temporal-client side of managed clusters: create, ensure, get, list, delete,
 * touch and resize `clusterLifecycle` entity workflows. Plain functions that throw
 * RequestError (with an HTTP status), so an HTTP layer can wrap them.
 */
import { clusterLifecycle } from '../workflows/cluster.js';
import {
  Client,
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { acquireClusterSlot, clusterQuotaWorkflowId } from '../workflows/cluster-messages.js';
import type { clusterQuota } from '../workflows/cluster-quota.js';
import { toMs } from '../schemas/duration.js';
import {
  ClusterRequest,
  clusterWorkflowId,
  EMR_RELEASE_RE,
  type ClusterInput,
  type ClusterSize,
  type ClusterSpec,
  type ClusterState,
} from '../schemas/cluster.js';
import { formatPath } from '../schemas/pipeline.js';
import { DEFAULT_SPARK_IMAGE, TIERS, type Tier } from '../schemas/external.js';
import { allows, sparkTierPolicy, type SparkPolicyConfig } from '../schemas/spark-policy.js';
import { RequestError } from '../schemas/errors.js';
import { SA_TENANT } from '../schemas/workflow-ids.js';

export interface ClustersServiceConfig {
  taskQueue: string;
  /** Tier per tenant; tenants not listed are on `free`. */
  tenantTiers?: Record<string, Tier>;
  /** The platform's Spark image (STRATA_SPARK_IMAGE) and the operator's per-tier additions: what a Spark Connect cluster may run. */
  sparkImage?: string;
  sparkPolicy?: SparkPolicyConfig;
}

export interface ClusterSummary {
  name: string;
  workflowId: string;
  status: string;
  state?: ClusterState;
}

export class ClustersService {
  constructor(
    readonly client: Client,
    readonly config: ClustersServiceConfig,
  ) {}

  tierOf(tenant: string) {
    // Own entries only: a tenant named "constructor" must not find Object's.
    const tiers = this.config.tenantTiers ?? {};
    const given = Object.hasOwn(tiers, tenant) ? tiers[tenant] : undefined;
    const name: Tier = given !== undefined && Object.hasOwn(TIERS, given) ? given : 'free';
    return { name, ...TIERS[name] };
  }

  /** Validates a request and checks it against the tenant's tier; throws 400/403. */
  specFor(req: ClusterRequest): ClusterSpec {
    const r = ClusterRequest.safeParse(req);
    if (!r.success) {
      const problems = r.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
      throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);
    }
    const c = r.data;
    const size = { instances: c.instances, cores: c.cores, memoryGi: c.memoryGi };
    this.checkSize(c.tenant, size);
    if (c.engine === 'emr' && c.release !== undefined && !EMR_RELEASE_RE.test(c.release))
      throw new RequestError('release: an EMR release label looks like "emr-7.5.0"', 400, [
        { path: 'release', message: 'an EMR release label looks like "emr-7.5.0"' },
      ]);
    if (c.engine === 'spark-connect' && c.release !== undefined) {
      const t = this.tierOf(c.tenant);
      const images = sparkTierPolicy(
        t.name,
        { image: this.config.sparkImage ?? DEFAULT_SPARK_IMAGE, serviceAccount: '' },
        this.config.sparkPolicy,
      ).images;
      if (!allows(images, c.release))
        throw new RequestError(
          `release: image "${c.release}" is not allowed on the ${t.name} tier (allowed: ${images.join(', ')}): leave "release" out, or ask the platform operator to allow it (STRATA_SPARK_IMAGES)`,
          403,
        );
    }
    return {
      tenant: c.tenant,
      name: c.name,
      engine: c.engine,
      size,
      idleTimeoutMs: toMs(c.idleTimeout),
      maxLifetimeMs: toMs(c.maxLifetime),
      pollMs: toMs(c.pollInterval),
      release: c.release,
      continueAsNewAfterEvents: c.continueAsNewAfterEvents,
    };
  }

  checkSize(tenant: string, size: ClusterSize) {
    const t = this.tierOf(tenant);
    const over: string[] = [];
    if (size.instances > t.maxInstances) over.push(`${size.instances} instances (at most ${t.maxInstances})`);
    if (size.instances * size.cores > t.maxCores)
      over.push(`${size.instances * size.cores} cores in all (at most ${t.maxCores})`);
    if (size.instances * size.memoryGi > t.maxMemoryGi)
      over.push(`${size.instances * size.memoryGi}Gi memory in all (at most ${t.maxMemoryGi}Gi)`);
    if (over.length)
      throw new RequestError(
        `over the ${t.name} tier of tenant ${tenant}: ${over.join(', ')}; ask for less or move the tenant to a larger tier`,
        403,
      );
  }

  /**
   * Takes one of the tenant's cluster slots for `name` through the tenant's quota workflow
   * (update-with-start: atomic, so racing creates cannot exceed the tier); 403 when full.
   */
  private async acquireSlot(tenant: string, name: string) {
    const t = this.tierOf(tenant);
    // An operation is used once: a fresh one per attempt.
    const start = () =>
      new WithStartWorkflowOperation<typeof clusterQuota>('clusterQuota', {
        workflowId: clusterQuotaWorkflowId(tenant),
        taskQueue: this.config.taskQueue,
        args: [{ tenant }],
        workflowIdConflictPolicy: 'USE_EXISTING',
        typedSearchAttributes: [{ key: SA_TENANT, value: tenant }],
        staticSummary: `cluster slots of ${tenant}`,
      });
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.workflow.executeUpdateWithStart(acquireClusterSlot, {
          args: [{ name, max: t.maxClusters, tier: t.name }],
          startWorkflowOperation: start(),
        });
        return;
      } catch (e) {
        if (e instanceof WorkflowUpdateFailedError) throw new RequestError(e.cause?.message ?? e.message, 403);
        // Racing first creates of a tenant can see the quota workflow mid-start (aborted multi-operation): try again.
        if (attempt >= 4) throw e;
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  private startOptions(spec: ClusterSpec) {
    const input: ClusterInput = { spec };
    return {
      taskQueue: this.config.taskQueue,
      workflowId: clusterWorkflowId(spec.tenant, spec.name),
      args: [input] as [ClusterInput],
      typedSearchAttributes: [{ key: SA_TENANT, value: spec.tenant }],
      staticSummary: `cluster ${spec.name} (${spec.engine}) of ${spec.tenant}`,
    };
  }

  /** Creates a cluster; 409 if one of that name is already running. */
  async create(req: ClusterRequest): Promise<{ workflowId: string }> {
    const spec = this.specFor(req);
    if (await this.isRunning(spec.tenant, spec.name))
      throw new RequestError(`cluster ${spec.name} already exists for tenant ${spec.tenant}`, 409);
    await this.acquireSlot(spec.tenant, spec.name);
    try {
      const h = await this.client.workflow.start(clusterLifecycle, this.startOptions(spec));
      return { workflowId: h.workflowId };
    } catch (e) {
      if (e instanceof WorkflowExecutionAlreadyStartedError)
        throw new RequestError(`cluster ${spec.name} already exists for tenant ${spec.tenant}`, 409);
      throw e;
    }
  }

  /** Starts the cluster if it is not running, else touches it (signalWithStart). */
  async ensure(req: ClusterRequest, by?: string): Promise<{ workflowId: string; started: boolean }> {
    const spec = this.specFor(req);
    const running = await this.isRunning(spec.tenant, spec.name);
    if (!running) await this.acquireSlot(spec.tenant, spec.name);
    const h = await this.client.workflow.signalWithStart(clusterLifecycle, {
      ...this.startOptions(spec),
      signal: 'touch',
      signalArgs: [{ by }],
    });
    return { workflowId: h.workflowId, started: !running };
  }

  private async isRunning(tenant: string, name: string): Promise<boolean> {
    try {
      const d = await this.client.workflow.getHandle(clusterWorkflowId(tenant, name)).describe();
      return d.status.name === 'RUNNING';
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) return false;
      throw e;
    }
  }

  async get(tenant: string, name: string): Promise<ClusterState> {
    try {
      return await this.client.workflow.getHandle(clusterWorkflowId(tenant, name)).query<ClusterState>('clusterState');
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) throw new RequestError(`no cluster ${name} for tenant ${tenant}`, 404);
      throw e;
    }
  }

  async list(tenant: string): Promise<ClusterSummary[]> {
    const out: ClusterSummary[] = [];
    const q = `WorkflowType = 'clusterLifecycle' AND StrataTenant = '${tenant.replace(/'/g, '')}'`;
    for await (const w of this.client.workflow.list({ query: q })) {
      const name = w.workflowId.split('/').slice(2).join('/');
      if (out.some((o) => o.workflowId === w.workflowId)) continue;
      const s: ClusterSummary = { name, workflowId: w.workflowId, status: w.status.name };
      if (w.status.name === 'RUNNING') s.state = await this.get(tenant, name).catch(() => undefined);
      out.push(s);
    }
    return out;
  }

  private async signalRunning(tenant: string, name: string, signal: string, arg: unknown) {
    const gone = new RequestError(`no running cluster ${name} for tenant ${tenant}`, 404);
    if (!(await this.isRunning(tenant, name))) throw gone;
    try {
      await this.client.workflow.getHandle(clusterWorkflowId(tenant, name)).signal(signal, arg);
    } catch (e) {
      // It ended between the check and the signal (idle or lifetime limit).
      if (e instanceof WorkflowNotFoundError) throw gone;
      throw e;
    }
  }

  delete(tenant: string, name: string, reason = 'deleted through the API') {
    return this.signalRunning(tenant, name, 'terminate', { reason });
  }

  touch(tenant: string, name: string, by?: string) {
    return this.signalRunning(tenant, name, 'touch', { by });
  }

  async resize(tenant: string, name: string, size: ClusterSize): Promise<ClusterState> {
    if (!Number.isInteger(size.instances) || size.instances < 1)
      throw new RequestError('instances: a cluster needs at least 1 instance', 400);
    this.checkSize(tenant, size);
    if (!(await this.isRunning(tenant, name)))
      throw new RequestError(`no running cluster ${name} for tenant ${tenant}`, 404);
    try {
      return await this.client.workflow
        .getHandle(clusterWorkflowId(tenant, name))
        .executeUpdate<ClusterState, [ClusterSize]>('resize', { args: [size] });
    } catch (e) {
      if (e instanceof WorkflowUpdateFailedError)
        throw new RequestError(`resize refused: ${e.cause?.message ?? e.message}`, 409);
      throw e;
    }
  }
}
