/**
 * Spark on Kubernetes as Temporal activities: submit (idempotent by name), poll,
 * logs, cancel. Errors a retry cannot fix are non-retryable; 5xx and network errors retry.
 */
import { jobName, TIERS, type ExternalJobInput, type JobRef, type JobStatus, type Tier } from '../../schemas/external.js';
import { jobActivities } from '../core/job.js';
import { NonRetryableError } from '../core/task.js';
import { K8sError, SPARK_APP_VERSION, type SparkAppStatus, type SparkK8sClient } from './client.js';
import { buildSparkApplication, DEFAULT_SPARK, runLabels, tenantNamespace, type SparkDefaults } from './manifest.js';

export interface SparkDeps {
  spark?: SparkK8sClient;
  sparkDefaults?: Partial<SparkDefaults>;
  /** Tier per tenant (default free): sets the namespace quota and caps one job's resources. */
  tenantTiers?: Record<string, Tier>;
}

const PLURAL = 'sparkapplications';
/** The operator's states; only COMPLETED and FAILED are terminal. */
export const SPARK_STATES = ['', 'SUBMITTED', 'RUNNING', 'COMPLETED', 'FAILED', 'SUBMISSION_FAILED', 'PENDING_RERUN', 'INVALIDATING', 'SUCCEEDING', 'FAILING', 'UNKNOWN', 'SUSPENDING', 'SUSPENDED', 'RESUMING'];

export function tierOf(deps: { tenantTiers?: Record<string, Tier> }, tenant: string) {
  return TIERS[deps.tenantTiers?.[tenant] ?? 'free'];
}

/** 4xx other than throttling means the request itself is wrong: do not retry it. */
export function classify(e: unknown): never {
  if (e instanceof K8sError && !e.retryable) throw new NonRetryableError(e.message, e.code === 404 ? 'JobNotFound' : 'K8sRejected');
  throw e;
}

function memoryGi(m: string): number {
  const r = /^(\d+(?:\.\d+)?)([kmgt]?)(i?)$/i.exec(m);
  if (!r) return 0;
  const n = Number(r[1]);
  const u = r[2].toLowerCase();
  return u === 'k' ? n / 1024 / 1024 : u === 'm' ? n / 1024 : u === 'g' ? n : u === 't' ? n * 1024 : n / 1024 ** 3;
}

export function checkJobQuota(task: Record<string, any>, tenant: string, tier: (typeof TIERS)[Tier]) {
  const inst = task.dynamicAllocation?.maxExecutors ?? task.executor?.instances ?? 1;
  const cores = (task.driver?.cores ?? 1) + inst * (task.executor?.cores ?? 1);
  const mem = memoryGi(task.driver?.memory ?? '1g') + inst * memoryGi(task.executor?.memory ?? '1g');
  const over: string[] = [];
  if (inst > tier.maxInstances) over.push(`${inst} executors (tier allows ${tier.maxInstances})`);
  if (cores > tier.maxCores) over.push(`${cores} cores (tier allows ${tier.maxCores})`);
  if (mem > tier.maxMemoryGi) over.push(`${mem}Gi memory (tier allows ${tier.maxMemoryGi}Gi)`);
  if (over.length) throw new NonRetryableError(`task ${task.id} asks for more than tenant ${tenant}'s tier allows: ${over.join(', ')}; lower it or move the tenant to a larger tier`, 'QuotaExceeded');
}

export function createSparkActivities(deps: SparkDeps) {
  const client = () => {
    if (!deps.spark) throw new NonRetryableError('this worker has no Kubernetes client: set KUBECONFIG or run in-cluster to use engine spark', 'ConfigError');
    return deps.spark;
  };
  const defaults = { ...DEFAULT_SPARK, ...deps.sparkDefaults };
  return jobActivities({
    async sparkSubmit(input: ExternalJobInput & { cluster?: { endpoint?: string } }): Promise<JobRef> {
      const k8s = client();
      const tier = tierOf(deps, input.run.tenant);
      checkJobQuota(input.task, input.run.tenant, tier);
      const namespace = tenantNamespace(input.run.tenant);
      const name = jobName(input.run.workflowId, input.task.id);
      try {
        await k8s.ensureNamespace(namespace, runLabels(input.run), { cpu: tier.maxCores, memoryGi: tier.maxMemoryGi, pods: tier.maxInstances * 4 + 8 });
        const manifest = buildSparkApplication({ name, namespace, task: input.task, run: input.run, defaults, remote: input.cluster?.endpoint });
        const { adopted } = await k8s.createOrAdopt(PLURAL, SPARK_APP_VERSION, manifest);
        return { engine: 'spark-k8s', name, scope: namespace, adopted };
      } catch (e) {
        return classify(e);
      }
    },

    async sparkPoll(ref: JobRef): Promise<JobStatus> {
      const k8s = client();
      let app;
      try {
        app = await k8s.get(PLURAL, SPARK_APP_VERSION, ref.scope, ref.name);
      } catch (e) {
        if (e instanceof K8sError && e.code === 404)
          throw new NonRetryableError(`SparkApplication ${ref.scope}/${ref.name} disappeared while running (deleted outside Strata, or removed by timeToLiveSeconds)`, 'JobNotFound');
        return classify(e);
      }
      const st = (app.status ?? {}) as SparkAppStatus;
      const state = st.applicationState?.state ?? '';
      const executors = Object.keys(st.executorState ?? {}).length;
      return {
        state: state || 'NEW',
        terminal: state === 'COMPLETED' || state === 'FAILED',
        succeeded: state === 'COMPLETED',
        message: st.applicationState?.errorMessage,
        facts: { driverPod: st.driverInfo?.podName ?? `${ref.name}-driver`, executors, sparkApplicationId: st.sparkApplicationId },
      };
    },

    async sparkLogs(ref: JobRef): Promise<{ facts?: Record<string, unknown>; logTail?: string }> {
      const k8s = client();
      let pod = `${ref.name}-driver`;
      try {
        const app = await k8s.get(PLURAL, SPARK_APP_VERSION, ref.scope, ref.name);
        pod = ((app.status ?? {}) as SparkAppStatus).driverInfo?.podName ?? pod;
      } catch {
        /* gone already: fall back to the conventional pod name */
      }
      const tail = await k8s.podLogTail(ref.scope, pod, 50).catch(() => undefined);
      const warnings = await k8s.warnings(ref.scope, ref.name);
      return { facts: { driverPod: pod, ...(warnings.length ? { warnings: warnings.slice(-5) } : {}) }, logTail: tail?.slice(-4000) };
    },

    async sparkCancel(ref: JobRef): Promise<{ result: string }> {
      try {
        return { result: await client().delete(PLURAL, SPARK_APP_VERSION, ref.scope, ref.name) };
      } catch (e) {
        return classify(e);
      }
    },
  });
}
