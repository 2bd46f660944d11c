import { z } from 'zod';
import { taskFieldError } from './errors.js';
import { Duration } from './duration.js';
import { Check, DATASET_NAME_RE, Namespace } from './lake.js';
import type { RunContext, TaskOutput } from './run.js';

/**
 * External engines: tasks that run as jobs on Spark (Kubernetes), EMR or Airbyte.
 * Each runs as one `externalJob` child workflow (workflows/external-job.ts).
 */

/** How often the child workflow polls the job: a durable timer that backs off. */
export const PollFields = z
  .object({
    initial: Duration.default('5s'),
    max: Duration.default('1m'),
    backoff: z.number().min(1).max(10).default(1.5),
  })
  .strict();
export type PollFields = z.infer<typeof PollFields>;

/** A library (and version) a task pins, and the functions of it the task registers. */
export const LIBRARY_NAME_RE = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
export const LIBRARY_VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const FUNCTION_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
export const LibraryUse = z
  .object({
    name: z
      .string()
      .regex(
        LIBRARY_NAME_RE,
        'a library name starts with a letter and holds letters, digits, "_" and "-" (at most 64)',
      ),
    version: z
      .union([
        z.number().int().min(0),
        z.string().regex(LIBRARY_VERSION_RE, 'a library version is letters, digits, ".", "_" and "-" (at most 64)'),
      ])
      .transform(String),
    functions: z
      .array(
        z.string().regex(FUNCTION_NAME_RE, 'a function name is letters, digits and "_", not starting with a digit'),
      )
      .max(256)
      .default([]),
  })
  .strict();
export type LibraryUse = z.infer<typeof LibraryUse>;

/** The libraries a task pins (checked when its pipeline was registered, and again as it runs). */
export function taskLibraryUses(task: Record<string, unknown> & { id: string }): LibraryUse[] {
  if (task.libraries === undefined) return [];
  const r = z.array(LibraryUse).safeParse(task.libraries);
  if (!r.success)
    throw taskFieldError(task.id, { issues: r.error.issues.map((i) => ({ ...i, path: ['libraries', ...i.path] })) });
  return r.data;
}

/** Spark settings a task passes through (`spark.*` keys, string values). */
export const SparkConf = z.record(z.string(), z.string());

const Memory = z.string().regex(/^\d+(\.\d+)?[kmgtKMGT]i?$|^\d+$/, 'write memory like "512m", "2g" or "4Gi"');

/** Spark resources; defaults are applied when the manifest is built (activities/spark-k8s). */
export const SparkResourceFields = {
  image: z.string().optional(),
  sparkVersion: z.string().optional(),
  driver: z
    .object({ cores: z.number().int().min(1).max(64).optional(), memory: Memory.optional() })
    .strict()
    .optional(),
  executor: z
    .object({
      cores: z.number().int().min(1).max(64).optional(),
      memory: Memory.optional(),
      instances: z.number().int().min(1).max(1000).optional(),
    })
    .strict()
    .optional(),
  dynamicAllocation: z
    .object({
      enabled: z.boolean().default(true),
      minExecutors: z.number().int().min(0).optional(),
      maxExecutors: z.number().int().min(1).optional(),
    })
    .strict()
    .optional(),
  serviceAccount: z.string().optional(),
  /** Name of a Kubernetes Secret holding S3 credentials; referenced, never read. */
  s3Secret: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a Secret name is lower-case letters, digits, "-" and "."')
    .optional(),
  sparkConf: SparkConf.optional(),
};

/**
 * A table an external job writes (write-audit-publish): the job commits it through Strata's
 * Iceberg catalog, its commit is staged on the run's audit branch, and when the job ends
 * Strata runs `checks` on that snapshot and publishes it to `main`, or keeps it staged as
 * rejected. `silver.orders`, or `{dataset, namespace, checks, failingRowsLimit}`.
 */
export const JobOutput = z.union([
  z.string().regex(DATASET_NAME_RE, 'write an output table as layer.name, e.g. silver.orders'),
  z
    .object({
      dataset: z.string().regex(DATASET_NAME_RE, 'write an output table as layer.name, e.g. silver.orders'),
      namespace: Namespace.default('default'),
      checks: z.array(Check).default([]),
      failingRowsLimit: z.number().int().min(0).max(1000).default(20),
    })
    .strict(),
]);
export type JobOutput = z.infer<typeof JobOutput>;

export const ExternalCommonFields = {
  /** Iceberg tables the job writes through Strata's catalog: audited, then published (see JobOutput). */
  outputs: z.array(JobOutput).max(16, 'a task declares at most 16 output tables').optional(),
  /** EMR: the cluster id (j-…) the step runs on. */
  clusterId: z
    .string()
    .regex(
      /^(j-[A-Z0-9]{1,64}|.*\{\{.*\}\}.*)$/,
      'an EMR cluster id looks like "j-2AXXXXXXGAPLF" (or a template such as "{{ params.cluster }}")',
    )
    .optional(),
  /** A Strata-managed cluster (workflows/cluster.ts) to run on; ensured and touched while the task runs. */
  cluster: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,39}$/, 'a cluster name is lower-case letters, digits and "-" (at most 40)')
    .optional(),
  poll: PollFields.optional(),
  args: z.array(z.string()).optional(),
  /**
   * UDF libraries the job uses (POST /api/v1/libraries), each pinned to a version, and the
   * functions of it to register before the task's SQL runs. Checked against the tenant's
   * libraries when the pipeline is registered, resolved again when the job is submitted.
   */
  libraries: z.array(LibraryUse).max(32, 'a task uses at most 32 libraries').optional(),
};

export const SqlDialect = z.enum(['spark', 'hive', 'presto']);

export const PysparkFields = {
  engine: z.enum(['spark', 'emr']).default('spark'),
  /**
   * The main Python file: a path in the tenant's lake (jobs/main.py), or an s3:// / file://
   * URI inside it or inside a location the platform operator allowed for the tenant.
   */
  file: z.string().min(1, 'write the main application file, a path in your lake such as jobs/main.py'),
  /** Dependencies, each from the tenant's lake (or allowed locations) like `file`. */
  pyFiles: z.array(z.string().min(1)).optional(),
  jars: z.array(z.string().min(1)).optional(),
  files: z.array(z.string().min(1)).optional(),
  ...ExternalCommonFields,
  ...SparkResourceFields,
};

export const HiveFields = {
  engine: z.literal('emr').default('emr'),
  /** A HiveQL script in the tenant's lake (or an allowed location), or inline `query`. */
  script: z.string().optional(),
  query: z.string().optional(),
  ...ExternalCommonFields,
};

export const AirbyteSyncFields = {
  connectionId: z.string().uuid('an Airbyte connection id is a UUID'),
  poll: PollFields.optional(),
  /**
   * Stream tables (bronze) of a sync into Iceberg whose checks run before they are published:
   * each sync's snapshot is staged on the run's audit branch, audited, then published or rejected.
   */
  outputs: ExternalCommonFields.outputs,
};

export type ExternalEngine = 'spark-k8s' | 'emr' | 'airbyte';

/** What the externalJob child workflow receives. */
/** An external job's input. Its engine derives from the task (externalEngineOf). */
export interface ExternalJobInput {
  task: Record<string, unknown> & { id: string; kind: string };
  run: RunContext;
  /** The task's timeout: past it the job is stopped and the task fails. */
  timeoutMs?: number;
  heartbeatTimeoutMs?: number;
}

/** Which engine runs a task that the registry routed to externalJob. */
export function externalEngineOf(task: { kind: string; engine?: unknown }): ExternalEngine {
  if (task.kind === 'airbyte.sync') return 'airbyte';
  if (task.kind === 'hive' || task.engine === 'emr') return 'emr';
  return 'spark-k8s';
}

/** Activity name prefix per engine: `${prefix}Submit`, `…Poll`, `…Logs`, `…Cancel`. */
export const ENGINE_ACTIVITY_PREFIX = {
  'spark-k8s': 'spark',
  emr: 'emr',
  airbyte: 'airbyte',
} as const satisfies Record<ExternalEngine, string>;

/** Turns any id into a DNS-1123 label (k8s names) of at most `max` characters, stable and unique by hash. */
export function jobName(workflowId: string, taskId: string, max = 63): string {
  const raw = `${workflowId}/task/${taskId}`;
  const hash = fnv1a(raw);
  let base = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (!/^[a-z]/.test(base)) base = `j-${base}`;
  base = base.slice(0, max - hash.length - 1).replace(/-+$/, '');
  return `${base}-${hash}`;
}

function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(36).padStart(7, '0');
}

/** A job as the engine knows it: enough to poll, log and cancel it again after a crash. */
export interface JobRef {
  engine: ExternalEngine;
  /** Deterministic name derived from workflow and task ids. */
  name: string;
  /** spark-k8s: namespace; emr: cluster id; airbyte: connection id. */
  scope: string;
  /** emr: step id; airbyte: job id. */
  id?: string;
  /** True when the submit found the job already there (a retried submit). */
  adopted: boolean;
  /**
   * Where the job's catalog credential is kept, deleted when the job ends: spark-k8s, the
   * Secret's name; emr, the object's key under the scripts URI.
   */
  secret?: string;
}

/** What an engine says of a finished job besides its status: facts for the output, and the log's tail. */
export interface JobLogs {
  facts?: Record<string, unknown>;
  logTail?: string;
}

export interface JobStatus {
  state: string;
  terminal: boolean;
  succeeded: boolean;
  message?: string;
  /** Small engine facts for the task output (driver pod, executors, rows…). */
  facts?: Record<string, unknown>;
}

export interface JobResult {
  output: TaskOutput;
  attempt: number;
}

/**
 * How an externalJob ended, as it tells its run (signal `jobFinished`): a run that continued as
 * new while the job ran learns the outcome this way, since only the execution that started a
 * child sees its result.
 */
export interface JobFinished {
  taskId: string;
  ok: boolean;
  result?: JobResult;
  cancelled?: boolean;
  message?: string;
  type?: string;
  attempt?: number;
  output?: TaskOutput;
}

/** The Spark image jobs and Spark Connect clusters run unless the platform sets another (STRATA_SPARK_IMAGE). */
export const DEFAULT_SPARK_IMAGE = 'apache/spark:3.5.3-python3';

/** Tenant tiers: caps on clusters and on one job's resources. */
export const TIERS = {
  free: { maxCores: 8, maxMemoryGi: 32, maxInstances: 4, maxClusters: 1 },
  team: { maxCores: 64, maxMemoryGi: 256, maxInstances: 16, maxClusters: 3 },
  enterprise: { maxCores: 512, maxMemoryGi: 2048, maxInstances: 128, maxClusters: 20 },
} as const;
export type Tier = keyof typeof TIERS;
export const TierName = z.enum(['free', 'team', 'enterprise']);

/** STRATA_TENANT_TIERS: `acme=team,big=enterprise`; tenants not listed are on `free`. */
/** `a=1, b=2` as its pairs (blank entries skipped); `extra` holds anything after a second `=`. */
export function envPairs(text: string | undefined): { pair: string; key: string; value: string; extra: string[] }[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((pair) => {
      const [key = '', value = '', ...extra] = pair.split('=').map((s) => s.trim());
      return { pair, key, value, extra };
    });
}

export function parseTenantTiers(text: string | undefined): Record<string, Tier> {
  const out: Record<string, Tier> = {};
  for (const { pair, key: tenant, value: tier } of envPairs(text)) {
    const t = TierName.safeParse(tier);
    if (!tenant || !t.success)
      throw new Error(
        `STRATA_TENANT_TIERS: "${pair}" should be TENANT=TIER with TIER one of ${TierName.options.join(', ')}`,
      );
    out[tenant] = t.data;
  }
  return out;
}

/**
 * A Spark job's task (pyspark, or sql on engine spark/emr) with the fields the manifest and
 * the tier checks read, parsed again after templates rendered: the Spark path works on typed
 * values, never on whatever the rendered task holds.
 */
export const SparkJobTask = z
  .object({
    id: z.string(),
    kind: z.string(),
    file: z.string().optional(),
    sql: z.string().optional(),
    pyFiles: z.array(z.string()).optional(),
    jars: z.array(z.string()).optional(),
    files: z.array(z.string()).optional(),
    ...ExternalCommonFields,
    ...SparkResourceFields,
  })
  .passthrough();
export type SparkJobTask = z.infer<typeof SparkJobTask>;

/** An EMR step's task: a Spark job's fields, or a Hive script/query, or SQL in a dialect. */
export const EmrStepTask = SparkJobTask.extend({
  script: z.string().optional(),
  query: z.string().optional(),
  dialect: SqlDialect.optional(),
});
export type EmrStepTask = z.infer<typeof EmrStepTask>;

/** Parses a rendered task for an external engine: a task that no longer fits its kind fails, and says where. */
export function parseJobTask<S extends z.ZodType<{ id: string }>>(schema: S, task: { id: string }): z.infer<S> {
  const parsed = schema.safeParse(task);
  if (parsed.success) return parsed.data;
  throw taskFieldError(task.id, parsed.error);
}
