import { z } from 'zod';
import { Duration } from './duration.js';
import { taskFieldError } from './errors.js';
import { MappingNotifyRules } from './notify.js';
import { parseReconcileInput, ReconcileOptions } from './reconcile.js';
import {
  Check,
  IngestFileFields,
  IngestTableFields,
  Layer,
  Namespace,
  PartitionBy,
  S3CopyFields,
  S3DeleteFields,
  S3ListFields,
  S3WaitFields,
  datasetRefsInSql,
  layerMayRead,
  locationProblem,
  parseDatasetName,
} from './lake.js';
import {
  AirbyteSyncFields,
  ExternalCommonFields,
  HiveFields,
  PollFields,
  PysparkFields,
  SparkResourceFields,
  SqlDialect,
} from './external.js';
import type { SqlTextDialect } from './sql-text.js';
import { blockedSparkConf, dynamicAllocationProblem } from './spark-policy.js';
import { CompactFields, ExpireSnapshotsFields, RemoveOrphansFields } from './maintenance.js';

/**
 * The task-kind registry. A kind is its spec fields (validated here) and how the
 * pipeline workflow runs it: an activity by name, or a durable timer. Adding a kind is
 * one entry here plus one folder in `activities/` that exports the named activity.
 */
export const SqlEngine = z.enum(['duckdb', 'postgres', 'mysql', 'spark', 'emr']);
export type SqlEngine = z.infer<typeof SqlEngine>;

export const SqlFields = {
  engine: SqlEngine.default('duckdb'),
  sql: z.string().min(1, 'write the SQL to run'),
  /** Named connection (postgres/mysql), defined in the worker's config. */
  connection: z.string().optional(),
  /**
   * duckdb: where the result goes. A dataset name (`silver.orders`, see schemas/lake.ts)
   * writes a new catalogued dataset version; anything else is a path under the lake root
   * written as one Parquet file.
   */
  output: z.string().optional(),
  /** The medallion layer this task writes (duckdb); `output` must then be a dataset in it. */
  layer: Layer.optional(),
  namespace: Namespace.optional(),
  /** The dataset's partition spec (Iceberg transforms; see schemas/lake.ts PartitionBy). */
  partitionBy: PartitionBy.optional(),
  /** Quality checks on a dataset output; `error` ones block promotion. */
  checks: z.array(Check).optional(),
  failingRowsLimit: z.number().int().min(0).max(1000).optional(),
  /** engine emr: which SQL engine runs the statement on the cluster. */
  dialect: SqlDialect.optional(),
  ...ExternalCommonFields,
  ...SparkResourceFields,
};

export const WaitFields = { duration: Duration };
/** A rendered `wait` task, as its timer reads it. */
export const WaitTask = z.object(WaitFields);

export const FailFields = {
  message: z.string().default('failed on purpose'),
  /** Succeed from this attempt on (to exercise retries); absent = always fail. */
  succeedOnAttempt: z.number().int().min(1).optional(),
  /** Fail without retrying, like a bad SQL statement would. */
  nonRetryable: z.boolean().default(false),
};

export const NoopFields = {
  /** Sleep inside the activity (for tests and benchmarks of long tasks). */
  sleep: Duration.optional(),
  /**
   * The output to report, as given (at most 4 KiB of JSON): tests and benchmarks of payload
   * sizes give no-ops the outputs real tasks report (dataset refs, check verdicts).
   */
  returns: z
    .record(z.string(), z.unknown())
    .refine((o) => JSON.stringify(o).length <= 4096, 'returns is at most 4 KiB of JSON')
    .optional(),
};

/** A reconcile input (see schemas/reconcile.ts): checked with messages that name the form meant. */
const DatasetInput = z.unknown().superRefine((v, ctx) => {
  const r = parseReconcileInput(v);
  if (!r.success) for (const i of r.error.issues) ctx.addIssue({ ...i, path: i.path });
});

export const ReconcileFields = {
  left: DatasetInput,
  right: DatasetInput,
  ...ReconcileOptions.partial().shape,
  /** engine spark: the job's resources, image and settings (as a pyspark task's), and how often it is polled. */
  ...SparkResourceFields,
  poll: PollFields.optional(),
  cluster: ExternalCommonFields.cluster,
  /** engine spark on EMR: the tenant's cluster the job runs on as a step (a template may give it). */
  clusterId: ExternalCommonFields.clusterId,
  /** Fail the task (a quality gate) when the datasets differ. */
  failOnDifference: z.boolean().default(false),
  /** The mapping its results are listed under (set by a pipeline's `reconciliations:`, or by hand). */
  mapping: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,100}$/)
    .optional(),
  /** record (default), warn (succeed with a warning when they differ) or fail (as failOnDifference). */
  policy: z.enum(['record', 'warn', 'fail']).optional(),
  /** The mapping's own notify rules (a pipeline's `reconciliations:` puts them here); needs `mapping`. */
  notify: MappingNotifyRules.optional(),
};

/**
 * The activities that run tasks, by name: the worker registers each (its implementations are
 * checked against this list in activities/index.ts) and workflows proxy them by this type.
 */
export const TASK_ACTIVITIES = [
  'runSql',
  'failTask',
  'noopTask',
  'reconcileTask',
  'ingestFile',
  'ingestTable',
  's3Check',
  's3Copy',
  's3List',
  's3Delete',
  'compactTask',
  'expireSnapshotsTask',
  'removeOrphansTask',
] as const;
export type TaskActivityName = (typeof TASK_ACTIVITIES)[number];

/** The child workflows that run tasks (external jobs; a reconciliation as a Spark job). */
export type TaskWorkflowName = 'externalJob' | 'reconcileJob';

export type KindRunner =
  /** `local`: short and free of I/O, so it may run as a local activity (run option `localShortTasks`). */
  | { type: 'activity'; activity: TaskActivityName; heartbeat?: boolean; local?: boolean }
  | { type: 'timer' }
  /** A sensor: the activity checks once (output.done), the workflow sleeps on a durable
   * timer for the task's `pollInterval` between checks, until `waitTimeout`. */
  | { type: 'poll'; activity: TaskActivityName; heartbeat?: boolean }
  /** A child workflow per task (external jobs: submit, poll on timers, cancel on cancel). */
  | { type: 'child'; workflow: TaskWorkflowName };

export const EXTERNAL_JOB: KindRunner = { type: 'child', workflow: 'externalJob' };
/** A comparison on an engine that scales out: prepare, the job (an externalJob child), collect. */
export const RECONCILE_JOB: KindRunner = { type: 'child', workflow: 'reconcileJob' };

export interface KindDef {
  fields: z.ZodRawShape;
  run: KindRunner;
  /** Picks the runner per task when it depends on fields (e.g. sql on engine spark). */
  route?: (task: Record<string, unknown>) => KindRunner;
  /** Cross-field checks on one task; return problems as [path, message]. */
  check?: (task: Record<string, unknown>) => [string[], string][];
  /** The fields that become SQL text, by path (e.g. ["sql"]), and the dialect they are read in. */
  sqlText?: (task: Record<string, unknown>, path: readonly (string | number)[]) => SqlTextDialect | undefined;
}

const field =
  (name: string, dialect: (t: Record<string, unknown>) => SqlTextDialect) =>
  (t: Record<string, unknown>, path: readonly (string | number)[]) =>
    path.length === 1 && path[0] === name ? dialect(t) : undefined;

/** The dialect a sql task's statement is read in. */
function sqlTaskDialect(t: Record<string, unknown>): SqlTextDialect {
  const engine = t.engine ?? 'duckdb';
  if (engine === 'emr') return t.dialect === 'hive' ? 'hive' : t.dialect === 'presto' ? 'presto' : 'spark';
  return engine === 'postgres' || engine === 'mysql' || engine === 'spark' ? engine : 'duckdb';
}

/**
 * Whether a task field is SQL text, and in which dialect: the kind's own SQL fields, and
 * the `expect` of quality checks (run by DuckDB over the output on any kind).
 */
export function sqlDialectAt(
  task: Record<string, unknown>,
  path: readonly (string | number)[],
): SqlTextDialect | undefined {
  if (path.length === 3 && path[0] === 'checks' && typeof path[1] === 'number' && path[2] === 'expect') return 'duckdb';
  // An external job's output checks run in DuckDB over the staged snapshot too.
  if (path.length === 5 && path[0] === 'outputs' && path[2] === 'checks' && path[4] === 'expect') return 'duckdb';
  const kind =
    typeof task.kind === 'string' && Object.hasOwn(TASK_KINDS, task.kind) ? TASK_KINDS[task.kind] : undefined;
  return kind?.sqlText?.(task, path);
}

const KINDS = {
  sql: {
    fields: SqlFields,
    run: { type: 'activity', activity: 'runSql', heartbeat: true },
    sqlText: field('sql', sqlTaskDialect),
    route: (t) => (t.engine === 'spark' || t.engine === 'emr' ? EXTERNAL_JOB : TASK_KINDS.sql.run),
    check: (t) => {
      const engine = typeof t.engine === 'string' ? t.engine : 'duckdb';
      if (engine === 'spark' || engine === 'emr') return externalChecks(t, engine);
      const problems: [string[], string][] = [];
      for (const f of [
        'dialect',
        'clusterId',
        'cluster',
        'poll',
        'args',
        'image',
        's3Secret',
        'serviceAccount',
        'sparkConf',
        'dynamicAllocation',
        'sparkVersion',
        'driver',
        'executor',
        'libraries',
      ])
        // DuckDB tasks take macro libraries (registered in their sandbox); Postgres and MySQL none.
        if (t[f] !== undefined && !(f === 'libraries' && engine === 'duckdb'))
          problems.push([[f], `"${f}" applies to engines spark and emr only: remove it or set engine`]);
      if (engine !== 'duckdb' && !t.connection)
        problems.push([['connection'], `engine ${engine} needs a named connection: add "connection: NAME"`]);
      if (engine === 'duckdb' && t.connection)
        problems.push([['connection'], 'engine duckdb runs over the lake and takes no connection: remove it']);
      if (engine !== 'duckdb' && t.output)
        problems.push([
          ['output'],
          `output files are written by engine duckdb only; with ${engine}, write the result in SQL`,
        ]);
      problems.push(...lakeSqlProblems(t), ...locations('output')(t));
      return problems;
    },
  },
  wait: { fields: WaitFields, run: { type: 'timer' } },
  fail: { fields: FailFields, run: { type: 'activity', activity: 'failTask', local: true } },
  noop: {
    fields: NoopFields,
    run: { type: 'activity', activity: 'noopTask', heartbeat: true, local: true },
    // A noop that sleeps is not short: it runs as an ordinary activity (heartbeats, worker restarts).
    route: (t) => (t.sleep === undefined ? TASK_KINDS.noop.run : { ...TASK_KINDS.noop.run, local: false }),
  },
  reconcile: {
    fields: ReconcileFields,
    run: { type: 'activity', activity: 'reconcileTask', heartbeat: true },
    route: (t) => (t.engine === 'spark' ? RECONCILE_JOB : TASK_KINDS.reconcile.run),
    check: (t) => {
      const p: [string[], string][] = [
        ...sparkReconcileChecks(t),
        ...locations('left', 'right')(t),
        ...locations(
          'left',
          'right',
        )({ left: (t.left as { uri?: unknown })?.uri, right: (t.right as { uri?: unknown })?.uri }),
      ];
      if (Array.isArray(t.notify) && t.notify.length && typeof t.mapping !== 'string')
        p.push([['notify'], 'notify rules on a reconcile task need "mapping" (the name its deliveries go by)']);
      // Another task's output is read after that task: it must be one the task needs.
      const needs = Array.isArray(t.needs) ? (t.needs as unknown[]) : [];
      for (const side of ['left', 'right']) {
        const other = (t[side] as { task?: unknown } | undefined)?.task;
        if (typeof other === 'string' && !needs.includes(other))
          p.push([[side, 'task'], `reads task "${other}"'s output: add "${other}" to needs`]);
      }
      return p;
    },
  },
  'ingest.file': {
    fields: IngestFileFields,
    run: { type: 'activity', activity: 'ingestFile', heartbeat: true },
    check: (t) => [...writesBronze(t), ...locations('source')(t)],
  },
  'ingest.table': {
    fields: IngestTableFields,
    run: { type: 'activity', activity: 'ingestTable', heartbeat: true },
    // The connection (Postgres or MySQL) is known only on the worker.
    sqlText: field('query', () => 'portable'),
    check: (t) => {
      const p: [string[], string][] = [...writesBronze(t)];
      if (!t.table === !t.query) p.push([['table'], 'give exactly one of "table" or "query"']);
      if (t.mode === 'incremental' && !t.cursor)
        p.push([['cursor'], 'incremental mode needs "cursor: COLUMN" (an increasing column, e.g. updated_at or id)']);
      return p;
    },
  },
  's3.wait': { fields: S3WaitFields, run: { type: 'poll', activity: 's3Check' }, check: locations('path', 'marker') },
  's3.copy': {
    fields: S3CopyFields,
    run: { type: 'activity', activity: 's3Copy', heartbeat: true },
    check: locations('from', 'to'),
  },
  's3.list': { fields: S3ListFields, run: { type: 'activity', activity: 's3List' }, check: locations('prefix') },
  's3.delete': { fields: S3DeleteFields, run: { type: 'activity', activity: 's3Delete' }, check: locations('path') },
  pyspark: {
    fields: PysparkFields,
    run: EXTERNAL_JOB,
    check: (t) => [
      ...externalChecks(t, typeof t.engine === 'string' ? t.engine : 'spark'),
      ...locations('file')(t),
      ...locationLists('pyFiles', 'jars', 'files')(t),
    ],
  },
  hive: {
    fields: HiveFields,
    run: EXTERNAL_JOB,
    sqlText: field('query', () => 'hive'),
    check: (t) => [
      ...externalChecks(t, 'emr'),
      ...locations('script')(t),
      ...((t.script === undefined) === (t.query === undefined)
        ? [[['script'], 'give exactly one of "script" (an s3:// HiveQL file) or "query"'] as [string[], string]]
        : []),
    ],
  },
  'airbyte.sync': {
    fields: AirbyteSyncFields,
    run: EXTERNAL_JOB,
    // Which tables the connection's streams land in is known on the worker (from the Airbyte API), checked before the sync.
    check: (t) => [
      ...outputProblems(t),
      ...jobOutputNames(t).flatMap(({ dataset, i }): [string[], string][] => {
        const n = parseDatasetName(dataset);
        return n && n.layer !== 'bronze'
          ? [[['outputs', String(i)], `an Airbyte sync lands its streams in bronze: name the output bronze.${n.name}`]]
          : [];
      }),
    ],
  },
  // Table maintenance (also run on every table by the strata-table-maintenance schedule).
  'table.compact': { fields: CompactFields, run: { type: 'activity', activity: 'compactTask', heartbeat: true } },
  'table.expire_snapshots': {
    fields: ExpireSnapshotsFields,
    run: { type: 'activity', activity: 'expireSnapshotsTask', heartbeat: true },
  },
  'table.remove_orphans': {
    fields: RemoveOrphansFields,
    run: { type: 'activity', activity: 'removeOrphansTask', heartbeat: true },
  },
} satisfies Record<string, KindDef>;

/** The task kinds by name: what a spec's `kind` may be. */
export type KindName = keyof typeof KINDS;

/** One kind's own fields (besides id, needs, retries…), as its zod schema parses them. */
export type KindFields<K extends KindName> = z.infer<z.ZodObject<(typeof KINDS)[K]['fields']>>;

/**
 * A rendered task checked against its kind's fields (e.g. `parseTask(IngestFileTask, task)`)
 * before an activity reads them: templates render after registration, so a value can change
 * shape. A field that does not parse fails the task for good, naming the field.
 */
export function parseTask<S extends z.ZodType<object>>(
  schema: S,
  task: Record<string, unknown> & { id: string; kind: string },
): z.infer<S> & { id: string; kind: string } {
  const parsed = schema.safeParse(task);
  if (!parsed.success) throw taskFieldError(task.id, parsed.error);
  return { ...parsed.data, id: task.id, kind: task.kind };
}

/** Kinds' fields as schemas, for parseTask. */
export const SqlTask = z.object(SqlFields);
export const FailTask = z.object(FailFields);
export const NoopTask = z.object(NoopFields);
export const IngestFileTask = z.object(IngestFileFields);
export const IngestTableTask = z.object(IngestTableFields);
/** Every sensor's timing (its kind's other fields are its check's). */
export const SensorTiming = z.object({
  pollInterval: S3WaitFields.pollInterval,
  waitTimeout: S3WaitFields.waitTimeout,
});

/** The registry, looked up by a spec's (unchecked) `kind` string. */
export const TASK_KINDS: Record<string, KindDef> = KINDS;

/** Location fields: lake paths or allowed URIs, never climbing out (checked again at run time). */
function locations(...fields: string[]) {
  return (t: Record<string, unknown>): [string[], string][] =>
    fields.flatMap((f) => {
      const m = locationProblem(t[f]);
      return m ? [[[f], m] as [string[], string]] : [];
    });
}

/** Lists of location fields (a job's dependencies), checked entry by entry. */
function locationLists(...fields: string[]) {
  return (t: Record<string, unknown>): [string[], string][] =>
    fields.flatMap((f) =>
      (Array.isArray(t[f]) ? (t[f] as unknown[]) : []).flatMap((v, i) => {
        const m = locationProblem(v);
        return m ? [[[f, String(i)], m] as [string[], string]] : [];
      }),
    );
}

/** Ingestion lands data in bronze only. */
function writesBronze(t: Record<string, unknown>): [string[], string][] {
  const out = parseDatasetName(String(t.output));
  return out && out.layer !== 'bronze'
    ? [[['output'], `ingestion writes the bronze layer: name the output bronze.${out.name}`]]
    : [];
}

/** Dataset outputs and layer rules of a duckdb sql task. */
function lakeSqlProblems(t: Record<string, unknown>): [string[], string][] {
  const p: [string[], string][] = [];
  const layer = t.layer as Layer | undefined;
  const output = typeof t.output === 'string' ? t.output : undefined;
  const out = output !== undefined ? parseDatasetName(output) : undefined;
  if (layer && !t.output)
    p.push([['output'], `a task in layer ${layer} writes a dataset: add "output: ${layer}.NAME"`]);
  if (layer && typeof t.output === 'string' && !out)
    p.push([
      ['output'],
      `with "layer", output is a dataset name: write ${layer}.NAME (lower-case letters, digits, "_")`,
    ]);
  if (layer && out && out.layer !== layer)
    p.push([
      ['output'],
      `output ${output} is in layer ${out.layer}, but the task's layer is ${layer}: make them agree`,
    ]);
  if ((t.checks as unknown[] | undefined)?.length && !out)
    p.push([['checks'], 'checks run on a dataset output: set "output: LAYER.NAME"']);
  if (t.partitionBy !== undefined && !out)
    p.push([['partitionBy'], 'a partition spec belongs to a dataset output: set "output: LAYER.NAME"']);
  const writer = layer ?? out?.layer;
  if (writer && typeof t.sql === 'string')
    for (const r of datasetRefsInSql(t.sql))
      if (!layerMayRead(writer, r.layer))
        p.push([
          ['sql'],
          `a ${writer} task may read only ${writer}${writer === 'bronze' ? '' : ` or ${writer === 'silver' ? 'bronze' : 'silver'}`} datasets, not ${r.layer}.${r.name}: move the task to another layer or read another dataset`,
        ]);
  return p;
}

/** A reconcile task's Spark fields: only with engine spark, and within what every tier allows. */
function sparkReconcileChecks(t: Record<string, unknown>): [string[], string][] {
  const spark = t.engine === 'spark';
  const p: [string[], string][] = [];
  if (!spark) {
    for (const f of [...Object.keys(SparkResourceFields), 'poll', 'cluster', 'clusterId'])
      if (t[f] !== undefined) p.push([[f], `"${f}" applies to engine spark only: remove it or set "engine: spark"`]);
    return p;
  }
  // On EMR (clusterId) the job is a step on the tenant's cluster: what shapes a pod has no place there.
  const emr = t.clusterId !== undefined;
  if (emr) {
    if (t.cluster !== undefined) p.push([['cluster'], 'give "clusterId" or "cluster", not both']);
    for (const f of K8S_ONLY_FIELDS)
      if (t[f] !== undefined)
        p.push([
          [f],
          `"${f}" shapes a SparkApplication on Kubernetes; an EMR step (clusterId) runs on the cluster's own Spark: remove it`,
        ]);
  }
  if (t.method === 'bloom')
    p.push([['method'], 'engine spark compares exactly: remove "method: bloom" or use engine auto']);
  for (const side of ['left', 'right'])
    if (t[side] && typeof t[side] === 'object' && 'connection' in t[side])
      p.push([
        [side, 'connection'],
        'engine spark reads files and datasets, not connections: land the table first (kind ingest.table) and compare the dataset, or use engine auto',
      ]);
  for (const [key, message] of blockedSparkConf(t.sparkConf, emr ? 'emr' : 'spark'))
    p.push([['sparkConf', key], message]);
  const dyn = emr
    ? undefined
    : dynamicAllocationProblem(t.dynamicAllocation as Parameters<typeof dynamicAllocationProblem>[0]);
  if (dyn) p.push([['dynamicAllocation'], dyn]);
  return p;
}

/** A reconcile task's Spark fields that only a SparkApplication has (refused with clusterId). */
const K8S_ONLY_FIELDS = ['image', 'sparkVersion', 'serviceAccount', 's3Secret', 'dynamicAllocation'];

function externalChecks(t: Record<string, unknown>, engine: string): [string[], string][] {
  const problems: [string[], string][] = [];
  if (t.connection) problems.push([['connection'], `engine ${engine} takes no connection: remove it`]);
  if (t.output) problems.push([['output'], `engine ${engine} writes where its SQL says; remove "output"`]);
  if (engine === 'emr' && !t.clusterId && !t.cluster)
    problems.push([['clusterId'], 'engine emr needs "clusterId: j-…" or a managed "cluster: NAME"']);
  if (engine === 'emr' && t.clusterId && t.cluster)
    problems.push([['cluster'], 'give "clusterId" or "cluster", not both']);
  if (engine !== 'emr' && t.clusterId)
    problems.push([['clusterId'], `"clusterId" is for engine emr; with ${engine}, remove it`]);
  if (engine === 'spark' && t.dialect && t.dialect !== 'spark')
    problems.push([['dialect'], 'engine spark runs Spark SQL only: remove "dialect" or use engine emr']);
  if (Array.isArray(t.libraries) && t.libraries.length) {
    if (t.kind === 'sql' && t.dialect === 'presto')
      problems.push([
        ['libraries'],
        'libraries register Spark SQL and Hive functions: use dialect spark or hive, or remove "libraries"',
      ]);
    if (t.kind === 'hive' && t.script !== undefined)
      problems.push([
        ['libraries'],
        'libraries are registered ahead of an inline "query": move the script into "query", or register the functions in the script',
      ]);
  }
  // The tier's allow-lists are checked by the worker, which knows the tenant's tier; what no tier allows is refused here.
  for (const [key, message] of blockedSparkConf(t.sparkConf, engine === 'emr' ? 'emr' : 'spark'))
    problems.push([['sparkConf', key], message]);
  problems.push(...outputProblems(t));
  const dyn =
    engine === 'spark'
      ? dynamicAllocationProblem(t.dynamicAllocation as Parameters<typeof dynamicAllocationProblem>[0])
      : undefined;
  if (dyn) problems.push([['dynamicAllocation'], dyn]);
  return problems;
}

/** A job's declared outputs (`outputs:`), each as its dataset name and namespace. */
function jobOutputNames(t: Record<string, unknown>): { dataset: string; namespace: string; i: number }[] {
  const outs = Array.isArray(t.outputs) ? (t.outputs as unknown[]) : [];
  return outs.map((o, i) =>
    typeof o === 'string'
      ? { dataset: o, namespace: 'default', i }
      : {
          dataset: String((o as { dataset?: string }).dataset),
          namespace: String((o as { namespace?: string }).namespace ?? 'default'),
          i,
        },
  );
}

/** An output declared twice. */
function outputProblems(t: Record<string, unknown>): [string[], string][] {
  const names = jobOutputNames(t).map((o) => `${o.namespace}.${o.dataset}`);
  return names.flatMap((n, i): [string[], string][] =>
    names.indexOf(n) !== i ? [[['outputs', String(i)], `${n} is declared twice: list each output once`]] : [],
  );
}

export const KIND_NAMES = () => Object.keys(TASK_KINDS).sort();
