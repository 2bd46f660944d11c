/**
 * Cluster providers as activities (Spark Connect servers on Kubernetes, EMR clusters),
 * and `ensureClusterReady`, which a job uses to get its named cluster started and ready.
 */
import { Context } from '@temporalio/activity';
import { z } from 'zod';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ClustersService } from '../../client/clusters.js';
import { clusterWorkflowId, type ClusterSize, type ClusterSpec, type ClusterState } from '../../schemas/cluster.js';
import { TIERS, type Tier } from '../../schemas/external.js';
import { allows, sparkTierPolicy, type SparkPolicyConfig } from '../../schemas/spark-policy.js';
import { jobActivities } from '../core/job.js';
import { abortableSleep } from '../core/task.js';
import { NonRetryableError, errorNumber } from '../../schemas/errors.js';
import { recordOf } from '../../schemas/guards.js';
import { EmrError, type EmrJobsClient } from '../emr/client.js';
import { K8sError, SPARK_CONNECT_VERSION, type SparkK8sClient } from '../spark-k8s/client.js';
import { ensureTenantNamespace, tierNameOf } from '../spark-k8s/activities.js';
import { buildSparkConnect, DEFAULT_SPARK, tenantNamespace, type SparkDefaults } from '../spark-k8s/manifest.js';
import type { ClusterProvider, ClusterSlotStatus } from '../../schemas/cluster-provider.js';

export interface ClusterDeps {
  spark?: SparkK8sClient;
  emr?: EmrJobsClient;
  tenantTiers?: Record<string, Tier>;
  sparkDefaults?: Partial<SparkDefaults>;
  sparkPolicy?: SparkPolicyConfig;
  /** Settings for clusters that tasks create on first use (`cluster: NAME`). */
  clusterDefaults?: {
    idleTimeout?: string | number;
    maxLifetime?: string | number;
    pollInterval?: string | number;
    instances?: number;
    cores?: number;
    memoryGi?: number;
    emrInstanceType?: string;
    emrLogUri?: string;
  };
}

const PLURAL = 'sparkconnects';

/** What the operator reports of a SparkConnect server (the fields read here). */
const SparkConnectStatus = z.object({
  state: z.string().optional(),
  conditions: z.array(z.object({ message: z.string().optional() })).optional(),
});

function nonRetryable(e: unknown): never {
  if ((e instanceof K8sError || e instanceof EmrError) && !e.retryable)
    throw new NonRetryableError(e.message, 'ClusterRejected');
  throw e;
}

export type ClusterActivities = ClusterProvider & {
  ensureClusterReady: (a: EnsureArgs) => Promise<ClusterState>;
  clusterSlotStatuses: (a: { tenant: string; names: string[] }) => Promise<Record<string, ClusterSlotStatus>>;
};

export function createClusterActivities(deps: ClusterDeps): ClusterActivities {
  const k8s = () => {
    if (!deps.spark)
      throw new NonRetryableError('this worker has no Kubernetes client for Spark Connect clusters', 'ConfigError');
    return deps.spark;
  };
  const emr = () => {
    if (!deps.emr) throw new NonRetryableError('this worker has no EMR client for EMR clusters', 'ConfigError');
    return deps.emr;
  };
  const emrName = (spec: ClusterSpec) => `strata/${spec.tenant}/${spec.name}`;
  const sparkDefaults = { ...DEFAULT_SPARK, ...deps.sparkDefaults };
  return jobActivities<ClusterActivities>({
    async provisionCluster(spec, workflowId) {
      try {
        if (spec.engine === 'spark-connect') {
          const tierName = tierNameOf(deps, spec.tenant);
          const image = spec.release ?? sparkDefaults.image;
          // The API refuses these already (403); checked again here, where the pod is made.
          const images = sparkTierPolicy(tierName, sparkDefaults, deps.sparkPolicy).images;
          if (!allows(images, image))
            throw new NonRetryableError(
              `cluster ${spec.name}: image "${image}" is not allowed on the ${tierName} tier (allowed: ${images.join(', ')})`,
              'PolicyViolation',
            );
          const namespace = tenantNamespace(spec.tenant);
          await ensureTenantNamespace(k8s(), spec.tenant, TIERS[tierName], {}, sparkDefaults.serviceAccount);
          const obj = buildSparkConnect({
            name: spec.name,
            namespace,
            run: spec,
            image,
            sparkVersion: sparkDefaults.sparkVersion,
            executors: spec.size.instances,
            cores: spec.size.cores,
            memoryGi: spec.size.memoryGi,
            owner: workflowId,
          });
          await k8s().createOrAdopt(PLURAL, SPARK_CONNECT_VERSION, obj);
          return {
            providerId: `${namespace}/${spec.name}`,
            endpoint: `sc://${spec.name}-server.${namespace}.svc.cluster.local:15002`,
          };
        }
        const name = emrName(spec);
        const existing = await emr().findActiveCluster(name);
        if (existing) return { providerId: existing };
        const id = await emr().runCluster({
          name,
          release: spec.release ?? 'emr-7.5.0',
          instanceType: deps.clusterDefaults?.emrInstanceType ?? 'm5.xlarge',
          coreInstances: spec.size.instances,
          logUri: deps.clusterDefaults?.emrLogUri,
          tags: { 'strata:tenant': spec.tenant, 'strata:cluster': spec.name, 'strata:workflow': workflowId },
        });
        return { providerId: id };
      } catch (e) {
        return nonRetryable(e);
      }
    },

    async clusterStatus(spec, providerId) {
      try {
        if (spec.engine === 'spark-connect') {
          const [ns, name] = providerId.split('/');
          const obj = await k8s().get(PLURAL, SPARK_CONNECT_VERSION, ns, name);
          const status = SparkConnectStatus.safeParse(obj.status ?? {});
          if (!status.success)
            throw new Error(
              `SparkConnect ${providerId} has a status of unexpected shape: ${z.prettifyError(status.error)}`,
            );
          const state = status.data.state ?? '';
          if (state === 'Ready') return { phase: 'ready' };
          if (state === 'Failed') {
            const conds = (status.data.conditions ?? []).map((c) => c.message).filter(Boolean);
            return { phase: 'failed', message: conds.join('; ') || 'SparkConnect failed' };
          }
          return { phase: 'provisioning' };
        }
        const c = await emr().describeCluster(providerId);
        const state = c.Status?.State ?? 'STARTING';
        if (state === 'RUNNING' || state === 'WAITING') return { phase: 'ready' };
        if (state.startsWith('TERMINAT'))
          return { phase: 'failed', message: `${state}: ${c.Status?.StateChangeReason?.Message ?? 'no reason given'}` };
        return { phase: 'provisioning' };
      } catch (e) {
        return nonRetryable(e);
      }
    },

    async resizeCluster(spec, providerId, size: ClusterSize) {
      try {
        if (spec.engine === 'spark-connect') {
          const [ns, name] = providerId.split('/');
          const obj = await k8s().get(PLURAL, SPARK_CONNECT_VERSION, ns, name);
          const executor = {
            ...recordOf(obj.spec.executor),
            instances: size.instances,
            cores: size.cores,
            memory: `${size.memoryGi}g`,
          };
          await k8s().replace(PLURAL, SPARK_CONNECT_VERSION, { ...obj, spec: { ...obj.spec, executor } });
          return;
        }
        await emr().resizeCore(providerId, size.instances);
      } catch (e) {
        return nonRetryable(e);
      }
    },

    async terminateCluster(spec, providerId) {
      try {
        if (spec.engine === 'spark-connect') {
          const [ns, name] = providerId.split('/');
          return { result: await k8s().delete(PLURAL, SPARK_CONNECT_VERSION, ns, name) };
        }
        await emr().terminate(providerId);
        return { result: 'terminating' };
      } catch (e) {
        return nonRetryable(e);
      }
    },

    /** For the tenant's quota workflow: which slot holders' cluster workflows still run. */
    async clusterSlotStatuses(a: { tenant: string; names: string[] }): Promise<Record<string, ClusterSlotStatus>> {
      const client = Context.current().client;
      const out: Record<string, ClusterSlotStatus> = {};
      for (const name of a.names) {
        try {
          const d = await client.workflow.getHandle(clusterWorkflowId(a.tenant, name)).describe();
          out[name] =
            d.status.name === 'RUNNING'
              ? { state: 'running' }
              : { state: 'closed', closedAt: d.closeTime?.getTime() ?? 0 };
        } catch (e) {
          if (!(e instanceof WorkflowNotFoundError)) throw e;
          out[name] = { state: 'missing' };
        }
      }
      return out;
    },

    async ensureClusterReady(a: EnsureArgs): Promise<ClusterState> {
      const ctx = Context.current();
      const svc = new ClustersService(ctx.client, {
        taskQueue: ctx.info.taskQueue,
        tenantTiers: deps.tenantTiers,
        sparkImage: sparkDefaults.image,
        sparkPolicy: deps.sparkPolicy,
      });
      const d = deps.clusterDefaults ?? {};
      const engine = a.engine === 'emr' ? 'emr' : 'spark-connect';
      try {
        await svc.ensure(
          {
            tenant: a.tenant,
            name: a.name,
            engine,
            idleTimeout: d.idleTimeout,
            maxLifetime: d.maxLifetime,
            pollInterval: d.pollInterval ?? a.pollMs,
            instances: d.instances,
            cores: d.cores,
            memoryGi: d.memoryGi,
          },
          a.requestedBy,
        );
      } catch (e) {
        const status = errorNumber(e, 'status');
        if (e instanceof Error && status !== undefined && status < 500)
          throw new NonRetryableError(e.message, status === 403 ? 'QuotaExceeded' : 'ConfigError');
        throw e;
      }
      for (;;) {
        const st = await svc.get(a.tenant, a.name);
        if (st.engine !== engine)
          throw new NonRetryableError(
            `cluster ${a.name} is a ${st.engine} cluster; this task needs ${engine}`,
            'ConfigError',
          );
        if (st.phase === 'ready') return st;
        if (st.phase === 'failed' || st.phase === 'terminated')
          throw new NonRetryableError(
            `cluster ${a.name} is ${st.phase}: ${st.error ?? st.terminationReason ?? ''}`,
            'ClusterFailed',
          );
        ctx.heartbeat(st.phase);
        await abortableSleep(Math.max(50, a.pollMs), ctx.cancellationSignal);
      }
    },
  });
}

export interface EnsureArgs {
  tenant: string;
  name: string;
  engine: string;
  pollMs: number;
  requestedBy?: string;
}
