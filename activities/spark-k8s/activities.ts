/**
 * Spark on Kubernetes as Temporal activities: submit (idempotent by name), poll,
 * logs, cancel. Errors a retry cannot fix are non-retryable; 5xx and network errors retry.
 */
import { Context } from '@temporalio/activity';
import {
  jobName,
  TIERS,
  type ExternalJobInput,
  type JobRef,
  type JobStatus,
  type Tier,
  parseJobTask,
  SparkJobTask,
  type JobLogs,
} from '../../schemas/external.js';
import { sparkPolicyProblems, sparkTierPolicy, type SparkPolicyConfig } from '../../schemas/spark-policy.js';
import { engineJobActivities, type JobLedgerDeps } from '../core/job.js';
import { jobDeps, jobFileLocator, type JobFile, type JobFileDeps } from '../core/job-files.js';
import { resolveLibraries, withFunctions } from '../core/libraries.js';
import { catalogAccessFor, type CatalogDeps } from '../iceberg/job-catalog.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { K8sError, SPARK_APP_VERSION, SPARK_GROUP, sparkAppStatus, type SparkK8sClient } from './client.js';
import {
  buildCatalogSecret,
  buildSparkApplication,
  catalogSecretName,
  DEFAULT_SPARK,
  POD_SECURITY_LABELS,
  runLabels,
  tenantNamespace,
  type SparkDefaults,
  type SparkFiles,
} from './manifest.js';

export interface SparkDeps extends JobFileDeps, JobLedgerDeps, CatalogDeps {
  spark?: SparkK8sClient;
  sparkDefaults?: Partial<SparkDefaults>;
  /** Tier per tenant (default free): sets the namespace quota and caps one job's resources. */
  tenantTiers?: Record<string, Tier>;
  /** The platform operator's additions to each tier's images, service accounts and Spark settings. */
  sparkPolicy?: SparkPolicyConfig;
}

const PLURAL = 'sparkapplications';
/** The operator's states; only COMPLETED and FAILED are terminal. */
export const SPARK_STATES = [
  '',
  'SUBMITTED',
  'RUNNING',
  'COMPLETED',
  'FAILED',
  'SUBMISSION_FAILED',
  'PENDING_RERUN',
  'INVALIDATING',
  'SUCCEEDING',
  'FAILING',
  'UNKNOWN',
  'SUSPENDING',
  'SUSPENDED',
  'RESUMING',
];

export function tierOf(deps: { tenantTiers?: Record<string, Tier> }, tenant: string) {
  return TIERS[tierNameOf(deps, tenant)];
}
export const tierNameOf = (deps: { tenantTiers?: Record<string, Tier> }, tenant: string): Tier =>
  deps.tenantTiers && Object.hasOwn(deps.tenantTiers, tenant) ? deps.tenantTiers[tenant] : 'free';

/**
 * A tenant namespace, created with the Pod Security `restricted` labels, the tier's quota and
 * limit range (labels added to an older one), and the tenant's Spark service account, whose
 * Role reaches only this namespace.
 */
export function ensureTenantNamespace(
  k8s: SparkK8sClient,
  tenant: string,
  tier: (typeof TIERS)[Tier],
  labels: Record<string, string> = {},
  serviceAccount: string = DEFAULT_SPARK.serviceAccount,
) {
  return k8s.ensureNamespace(
    tenantNamespace(tenant),
    { ...labels, 'app.kubernetes.io/managed-by': 'strata', 'strata.dev/tenant': tenant, ...POD_SECURITY_LABELS },
    {
      cpu: tier.maxCores,
      memoryGi: tier.maxMemoryGi,
      pods: tier.maxInstances * 4 + 8,
    },
    { serviceAccount, limits: { maxCores: tier.maxCores, maxMemoryGi: tier.maxMemoryGi } },
  );
}

/** The URI Spark reads an object at: S3 through the s3a file system. */
const sparkUri = (f: JobFile, taskId: string, field: string) => {
  if (f.uri.startsWith('s3://')) return `s3a://${f.uri.slice('s3://'.length)}`;
  throw new NonRetryableError(
    `task ${taskId}: ${field} ${f.uri} is a file on the worker, which Spark on Kubernetes cannot read: keep job files in a lake on S3 (STRATA_LAKE_ROOT=s3://…) or in an s3:// location allowed for your tenant`,
    'ConfigError',
  );
};

/** 4xx other than throttling means the request itself is wrong: do not retry it. */
export function classify(e: unknown): never {
  if (e instanceof K8sError && !e.retryable)
    throw new NonRetryableError(e.message, e.code === 404 ? 'JobNotFound' : 'K8sRejected');
  throw e;
}

function memoryGi(m: string): number {
  const r = /^(\d+(?:\.\d+)?)([kmgt]?)(i?)$/i.exec(m);
  if (!r) return 0;
  const n = Number(r[1]);
  const u = r[2].toLowerCase();
  return u === 'k' ? n / 1024 / 1024 : u === 'm' ? n / 1024 : u === 'g' ? n : u === 't' ? n * 1024 : n / 1024 ** 3;
}

/**
 * The executors a job can really reach: with dynamic allocation, its ceiling (or the initial
 * count when that is larger: Spark starts with it); without, the fixed count.
 */
export function reachableExecutors(task: SparkJobTask): number {
  const fixed = task.executor?.instances ?? 1;
  const dyn = task.dynamicAllocation;
  if (!dyn || dyn.enabled === false) return fixed;
  // Without maxExecutors Spark grows without limit (refused before this is asked).
  return Math.max(dyn.maxExecutors ?? Infinity, dyn.minExecutors ?? 0, task.executor?.instances ?? 0);
}

export function checkJobQuota(task: SparkJobTask, tenant: string, tier: (typeof TIERS)[Tier]) {
  const inst = reachableExecutors(task);
  const cores = (task.driver?.cores ?? 1) + inst * (task.executor?.cores ?? 1);
  const mem = memoryGi(task.driver?.memory ?? '1g') + inst * memoryGi(task.executor?.memory ?? '1g');
  const over: string[] = [];
  if (inst > tier.maxInstances) over.push(`${inst} executors (tier allows ${tier.maxInstances})`);
  if (cores > tier.maxCores) over.push(`${cores} cores (tier allows ${tier.maxCores})`);
  if (mem > tier.maxMemoryGi) over.push(`${mem}Gi memory (tier allows ${tier.maxMemoryGi}Gi)`);
  if (over.length)
    throw new NonRetryableError(
      `task ${task.id} asks for more than tenant ${tenant}'s tier allows: ${over.join(', ')}; lower it or move the tenant to a larger tier`,
      'QuotaExceeded',
    );
}

export function createSparkActivities(deps: SparkDeps) {
  const client = () => {
    if (!deps.spark)
      throw new NonRetryableError(
        'this worker has no Kubernetes client: set KUBECONFIG or run in-cluster to use engine spark',
        'ConfigError',
      );
    return deps.spark;
  };
  const defaults = { ...DEFAULT_SPARK, ...deps.sparkDefaults };
  const ledger = { engine: 'spark-k8s', db: deps.db } as const;
  return engineJobActivities(ledger, {
    async sparkSubmit(input: ExternalJobInput & { cluster?: { endpoint?: string } }): Promise<JobRef> {
      const k8s = client();
      const { run } = input;
      const task = parseJobTask(SparkJobTask, input.task);
      const tierName = tierNameOf(deps, run.tenant);
      const tier = TIERS[tierName];
      // Everything is checked before anything is created: a refused job leaves no trace in the cluster.
      const problems = sparkPolicyProblems(
        task,
        sparkTierPolicy(tierName, defaults, deps.sparkPolicy),
        tier.maxInstances,
      );
      if (problems.length)
        throw new NonRetryableError(
          `task ${task.id} is refused for tenant ${run.tenant}: ${problems.join('; ')}`,
          'PolicyViolation',
        );
      checkJobQuota(task, run.tenant, tier);
      const resolve = jobFileLocator(deps, run.tenant, task.id);
      const files: SparkFiles = {};
      if (task.kind !== 'sql') files.main = sparkUri(resolve(String(task.file), 'file'), task.id, 'file');
      const fileDeps = jobDeps(task, resolve);
      for (const k of ['pyFiles', 'jars', 'files'] as const)
        if (fileDeps[k]) files[k] = fileDeps[k].map((f, i) => sparkUri(f, task.id, `${k}[${i}]`));
      // UDF libraries: on the classpath (or pyFiles), and their functions registered before the task's SQL.
      const libs = await resolveLibraries(deps, run.tenant, task, resolve);
      if (libs.jars.length)
        files.jars = [...(files.jars ?? []), ...libs.jars.map((f) => sparkUri(f, task.id, 'libraries'))];
      if (libs.pyFiles.length)
        files.pyFiles = [...(files.pyFiles ?? []), ...libs.pyFiles.map((f) => sparkUri(f, task.id, 'libraries'))];
      const job = withFunctions(task, libs);
      const namespace = tenantNamespace(run.tenant);
      const name = jobName(run.workflowId, task.id);
      // Declared outputs: the job commits through Strata's catalog with a credential scoped to this run,
      // which it reads from a Secret of its own (never from the SparkApplication, which many can read).
      const catalog = await catalogAccessFor(deps, input);
      const secret = catalog ? catalogSecretName(name) : undefined;
      try {
        await ensureTenantNamespace(k8s, run.tenant, tier, runLabels(run), defaults.serviceAccount);
        const secretOf = (token: string, owner?: { apiVersion: string; kind: string; name: string; uid: string }) =>
          buildCatalogSecret({ app: name, namespace, run, taskId: task.id, token, owner });
        // First the Secret, so the pods never start without it; owned by the application once that exists.
        if (catalog) await k8s.putSecret(secretOf(catalog.token));
        const manifest = buildSparkApplication({
          name,
          namespace,
          task: job,
          run,
          defaults,
          remote: input.cluster?.endpoint,
          files,
          catalogConf: catalog?.conf,
          catalogSecret: secret,
          // The externalJob watching it: once that workflow has closed, the sweeper stops the application.
          owner: Context.current().info.workflowExecution?.workflowId,
        });
        const { obj, adopted } = await k8s.createOrAdopt(PLURAL, SPARK_APP_VERSION, manifest);
        const uid = obj.metadata.uid;
        if (catalog && uid)
          await k8s.putSecret(
            secretOf(catalog.token, {
              apiVersion: `${SPARK_GROUP}/${SPARK_APP_VERSION}`,
              kind: 'SparkApplication',
              name,
              uid,
            }),
          );
        return { engine: 'spark-k8s', name, scope: namespace, adopted, ...(secret ? { secret } : {}) };
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
          throw new NonRetryableError(
            `SparkApplication ${ref.scope}/${ref.name} disappeared while running (deleted outside Strata, or removed by timeToLiveSeconds)`,
            'JobNotFound',
          );
        return classify(e);
      }
      const st = sparkAppStatus(app);
      const state = st.applicationState?.state ?? '';
      const executors = Object.keys(st.executorState ?? {}).length;
      const terminal = state === 'COMPLETED' || state === 'FAILED';
      // The job has ended: its catalog credential leaves the cluster (the audit revokes it next).
      if (terminal && ref.secret) await k8s.deleteSecret(ref.scope, ref.secret).catch(classify);
      return {
        state: state || 'NEW',
        terminal,
        succeeded: state === 'COMPLETED',
        message: st.applicationState?.errorMessage,
        facts: {
          driverPod: st.driverInfo?.podName ?? `${ref.name}-driver`,
          executors,
          sparkApplicationId: st.sparkApplicationId,
        },
      };
    },

    async sparkLogs(ref: JobRef): Promise<JobLogs> {
      const k8s = client();
      let pod = `${ref.name}-driver`;
      try {
        const app = await k8s.get(PLURAL, SPARK_APP_VERSION, ref.scope, ref.name);
        pod = sparkAppStatus(app).driverInfo?.podName ?? pod;
      } catch {
        /* gone already: fall back to the conventional pod name */
      }
      const tail = await k8s.podLogTail(ref.scope, pod, 50).catch(() => undefined);
      const warnings = await k8s.warnings(ref.scope, ref.name);
      return {
        facts: { driverPod: pod, ...(warnings.length ? { warnings: warnings.slice(-5) } : {}) },
        logTail: tail?.slice(-4000),
      };
    },

    async sparkCancel(ref: JobRef): Promise<{ result: string }> {
      try {
        const result = await client().delete(PLURAL, SPARK_APP_VERSION, ref.scope, ref.name);
        if (ref.secret) await client().deleteSecret(ref.scope, ref.secret);
        return { result };
      } catch (e) {
        return classify(e);
      }
    },
  });
}
