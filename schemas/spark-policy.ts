/**
 * What a tenant's Spark job may ask of the platform. Pod security, images, service accounts
 * and resources belong to the platform and the tenant's tier, never to the spec: Spark
 * settings are checked against an allow-list per tier, and settings that reach past the job
 * (pod specs, host mounts, credentials, JVM options, extra code) are refused on every tier
 * and engine. Pure: used when a spec is registered and again by the worker at run time.
 */
import { envPairs, TierName, type SparkJobTask, type Tier } from './external.js';

/**
 * Refused on every tier and engine, whatever the platform operator allows: each reaches past
 * the job into the pod, the node, the platform's credentials, or loads code from elsewhere.
 */
const BLOCKED: [RegExp, string][] = [
  [
    /^spark\.kubernetes\./,
    'pod settings (namespace, image, service account, volumes and host mounts, pod templates, API credentials) come from the platform',
  ],
  [
    /^spark\.(driver|executor|yarn\.am)\.(extra|default)(JavaOptions|ClassPath|LibraryPath)$/,
    'JVM options and class paths can run code outside the job',
  ],
  [
    /^spark\.(jars|files|archives|submit\.pyFiles)(\.|$)/,
    'dependencies come from your lake: list them in the task\'s "jars", "pyFiles" or "files"',
  ],
  [/^spark\.pyspark\./, 'the Python interpreter is part of the platform image'],
  [/^spark\.(executorEnv|yarn\.appMasterEnv)\./, 'environment variables of the job come from the platform'],
  [
    /^spark\.((driver|executor)\.)?plugins$|^spark\.(extraListeners|sql\.queryExecutionListeners|sql\.streaming\.streamingQueryListeners|sql\.extensions)$/,
    'loads extra classes into the job',
  ],
  [
    /^spark\.hadoop\..*(credentials\.provider|\.impl|access\.key|secret\.key|session\.token|assumed\.role)/i,
    'storage credentials and file-system classes come from the platform (use "s3Secret")',
  ],
  [
    /^spark\.sql\.(catalog\.strata|defaultCatalog)(\.|$)/,
    'the Iceberg catalog of a job is Strata\'s, set by Strata for a task with "outputs" (its URI, warehouse and the run\'s credential)',
  ],
  [/^spark\.sql\.hive\.metastore\.(jars|sharedPrefixes|barrierPrefixes)/, 'loads jars from outside the image'],
  [
    /^spark\.sql\.(catalog\.strata|defaultCatalog)(\.|$)/,
    'the Iceberg catalog of a job is Strata\'s, set by Strata for a task with "outputs" (its URI, warehouse and the run\'s credential)',
  ],
  [/^spark\.(master|submit\.deployMode|driver\.host|driver\.bindAddress)$/, 'set by the platform'],
  [
    /^spark\.(authenticate|ssl|network\.crypto|io\.encryption|acls|admin\.acls|ui\.filters|redaction)(\.|$)/,
    'security settings come from the platform',
  ],
];

/** Resource settings: on Spark on Kubernetes they bypass the tier's quota check, so they are task fields. */
const RESOURCE_KEYS =
  /^spark\.((driver|executor)\.(memory|cores)|executor\.instances|dynamicAllocation\..*|cores\.max|kubernetes\..*)$/;

/** Spark settings each tier may set (entries ending in "*" are prefixes); higher tiers include the lower ones. */
const FREE_CONF = [
  'spark.sql.shuffle.partitions',
  'spark.sql.adaptive.*',
  'spark.sql.autoBroadcastJoinThreshold',
  'spark.sql.broadcastTimeout',
  'spark.sql.files.*',
  'spark.sql.parquet.*',
  'spark.sql.orc.*',
  'spark.sql.csv.*',
  'spark.sql.json.*',
  'spark.sql.session.timeZone',
  'spark.sql.sources.partitionOverwriteMode',
  'spark.sql.ansi.enabled',
  'spark.sql.caseSensitive',
  'spark.sql.execution.arrow.*',
  'spark.sql.legacy.timeParserPolicy',
  'spark.sql.cbo.*',
  'spark.sql.join.preferSortMergeJoin',
  'spark.sql.codegen.wholeStage',
  'spark.default.parallelism',
  'spark.task.maxFailures',
  'spark.speculation',
  'spark.speculation.*',
  'spark.network.timeout',
  'spark.executor.heartbeatInterval',
  'spark.memory.fraction',
  'spark.memory.storageFraction',
  'spark.locality.wait',
  'spark.shuffle.compress',
  'spark.shuffle.spill.compress',
  'spark.io.compression.codec',
  'spark.rdd.compress',
  'spark.broadcast.compress',
];
const TEAM_CONF = [
  ...FREE_CONF,
  'spark.executor.memoryOverhead',
  'spark.driver.memoryOverhead',
  'spark.executor.memoryOverheadFactor',
  'spark.driver.memoryOverheadFactor',
  'spark.task.cpus',
  'spark.scheduler.mode',
];
const ENTERPRISE_CONF = [
  ...TEAM_CONF,
  'spark.memory.offHeap.enabled',
  'spark.memory.offHeap.size',
  'spark.kryo.*',
  'spark.serializer',
];
export const TIER_SPARK_CONF: Record<Tier, readonly string[]> = {
  free: FREE_CONF,
  team: TEAM_CONF,
  enterprise: ENTERPRISE_CONF,
};

/** What the platform operator adds per tier (STRATA_SPARK_IMAGES, STRATA_SPARK_SERVICE_ACCOUNTS, STRATA_SPARK_CONF_ALLOW). */
export interface SparkPolicyConfig {
  images?: Partial<Record<Tier, string[]>>;
  serviceAccounts?: Partial<Record<Tier, string[]>>;
  conf?: Partial<Record<Tier, string[]>>;
}

/** One tier's allow-lists: the platform defaults, the tier's built-in settings and the operator's additions. */
export interface SparkTierPolicy {
  tier: Tier;
  images: string[];
  serviceAccounts: string[];
  conf: string[];
}

export function sparkTierPolicy(
  tier: Tier,
  defaults: { image: string; serviceAccount: string },
  extra: SparkPolicyConfig = {},
): SparkTierPolicy {
  return {
    tier,
    images: [defaults.image, ...(extra.images?.[tier] ?? [])],
    serviceAccounts: [defaults.serviceAccount, ...(extra.serviceAccounts?.[tier] ?? [])],
    conf: [...TIER_SPARK_CONF[tier], ...(extra.conf?.[tier] ?? [])],
  };
}

/** `pattern` is a value, or a prefix ending in "*". */
export const allows = (patterns: readonly string[], value: string) =>
  patterns.some((p) => (p.endsWith('*') ? value.startsWith(p.slice(0, -1)) : value === p));

/**
 * Settings refused whatever the tier: the ones that reach past the job, and (engine spark)
 * resources, which are task fields so the tier's limits can be checked.
 */
export function blockedSparkConf(conf: unknown, engine: 'spark' | 'emr'): [string, string][] {
  if (!conf || typeof conf !== 'object') return [];
  const out: [string, string][] = [];
  for (const key of Object.keys(conf)) {
    const hit = BLOCKED.find(([re]) => re.test(key));
    if (hit) out.push([key, `sparkConf "${key}" is not allowed: ${hit[1]}`]);
    else if (engine === 'spark' && RESOURCE_KEYS.test(key))
      out.push([
        key,
        `sparkConf "${key}" is not allowed: set resources with the task's "driver", "executor" and "dynamicAllocation" fields, which are checked against your tier`,
      ]);
  }
  return out;
}

/** Dynamic allocation must name its ceiling: without one, Spark grows without limit. */
export function dynamicAllocationProblem(
  dyn: { enabled?: boolean; minExecutors?: number; maxExecutors?: number } | undefined,
  maxInstances?: number,
): string | undefined {
  if (!dyn || dyn.enabled === false) return undefined;
  if (dyn.maxExecutors === undefined)
    return `dynamicAllocation needs "maxExecutors"${maxInstances ? ` (at most ${maxInstances} on your tier)` : ''}: without it Spark adds executors without limit`;
  if (dyn.minExecutors !== undefined && dyn.minExecutors > dyn.maxExecutors)
    return `dynamicAllocation: minExecutors (${dyn.minExecutors}) is above maxExecutors (${dyn.maxExecutors})`;
  return undefined;
}

/** Problems of a Spark-on-Kubernetes task under its tenant's tier policy (empty when allowed). */
export function sparkPolicyProblems(task: SparkJobTask, p: SparkTierPolicy, maxInstances: number): string[] {
  const out: string[] = [];
  if (task.image !== undefined && !allows(p.images, String(task.image)))
    out.push(
      `image "${task.image}" is not allowed on the ${p.tier} tier (allowed: ${p.images.join(', ')}): leave "image" out, or ask the platform operator to allow it (STRATA_SPARK_IMAGES)`,
    );
  if (task.serviceAccount !== undefined && !allows(p.serviceAccounts, String(task.serviceAccount)))
    out.push(
      `serviceAccount "${task.serviceAccount}" is not allowed on the ${p.tier} tier (allowed: ${p.serviceAccounts.join(', ')}): leave "serviceAccount" out, or ask the platform operator to allow it (STRATA_SPARK_SERVICE_ACCOUNTS)`,
    );
  const blocked = blockedSparkConf(task.sparkConf, 'spark');
  out.push(...blocked.map(([, m]) => m));
  for (const key of Object.keys(task.sparkConf ?? {}))
    if (!blocked.some(([k]) => k === key) && !allows(p.conf, key))
      out.push(
        `sparkConf "${key}" is not on the ${p.tier} tier's list of Spark settings: remove it, or ask the platform operator to allow it (STRATA_SPARK_CONF_ALLOW)`,
      );
  const dyn = dynamicAllocationProblem(task.dynamicAllocation, maxInstances);
  if (dyn) out.push(dyn);
  return out;
}

/** `team=a|b*,enterprise=*`: per-tier lists of an operator setting. */
export function parseTierLists(name: string, text: string | undefined): Partial<Record<Tier, string[]>> {
  const out: Partial<Record<Tier, string[]>> = {};
  for (const { pair, key, value, extra } of envPairs(text)) {
    const t = TierName.safeParse(key);
    const list = value
      .split('|')
      .map((s) => s.trim())
      .filter(Boolean);
    if (!t.success || !list.length || extra.length)
      throw new Error(
        `${name}: "${pair}" should be TIER=VALUE[|VALUE…] with TIER one of ${TierName.options.join(', ')} (a VALUE ending in "*" is a prefix)`,
      );
    (out[t.data] ??= []).push(...list);
  }
  return out;
}

/** The operator's Spark policy from the environment (worker and API alike). */
export function sparkPolicyFromEnv(env: {
  STRATA_SPARK_IMAGES?: string;
  STRATA_SPARK_SERVICE_ACCOUNTS?: string;
  STRATA_SPARK_CONF_ALLOW?: string;
}): SparkPolicyConfig {
  return {
    images: parseTierLists('STRATA_SPARK_IMAGES', env.STRATA_SPARK_IMAGES),
    serviceAccounts: parseTierLists('STRATA_SPARK_SERVICE_ACCOUNTS', env.STRATA_SPARK_SERVICE_ACCOUNTS),
    conf: parseTierLists('STRATA_SPARK_CONF_ALLOW', env.STRATA_SPARK_CONF_ALLOW),
  };
}
