import { z } from 'zod';
import { Namespace } from './lake.js';
import { MappingNotifyRules } from './notify.js';

export const CsvOptions = z
  .object({
    delimiter: z.string().min(1).max(4).default(','),
    quote: z.string().max(1).default('"'),
    escape: z.string().max(1).default('"'),
    header: z.boolean().default(true),
    encoding: z.enum(['utf8', 'utf-8', 'latin1', 'utf16le', 'ascii']).default('utf8'),
  })
  .strict();
export type CsvOptions = z.infer<typeof CsvOptions>;

export const DatasetRef = z
  .object({
    /** A path, or a file:// URI (relative paths resolve under the lake root). */
    uri: z.string().min(1),
    format: z.enum(['csv', 'parquet']).optional(),
    csv: CsvOptions.optional(),
  })
  .strict();
export type DatasetRef = z.infer<typeof DatasetRef>;

/** A catalog dataset: `layer.name`, `layer.name@3` or `layer.name@'2026-01-02T00:00:00Z'`. */
export const DATASET_INPUT_RE = /^(bronze|silver|gold)\.([a-z_][a-z0-9_]{0,62})(?:@(\d+|'[^']+'))?$/;
/** File extensions that make a `layer.name`-shaped string a file name, not a dataset. */
const FILE_EXT = /\.(csv|tsv|txt|parquet|json|jsonl|gz)$/;

export const CatalogInput = z
  .object({
    dataset: z.string().regex(DATASET_INPUT_RE, "a dataset is layer.name, layer.name@VERSION or layer.name@'ISO time'"),
    namespace: Namespace.optional(),
  })
  .strict();
export const ConnectionInput = z
  .object({
    /** One of the tenant's named Postgres/MySQL connections. */
    connection: z.string().min(1),
    table: z
      .string()
      .regex(
        /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/,
        'a table is NAME or SCHEMA.NAME (letters, digits, _)',
      )
      .optional(),
    /** One reading statement (SELECT, WITH, VALUES, TABLE), run in a read-only transaction. */
    query: z.string().min(1).max(65536).optional(),
  })
  .strict()
  .refine((v) => !v.table !== !v.query, { message: 'give exactly one of "table" or "query"' });
export const TaskInput = z
  .object({ task: z.string().regex(/^[A-Za-z0-9_-]+$/, 'a task id (letters, digits, _ and -)') })
  .strict();

/**
 * What a comparison reads: a file (lake path, s3:// or file:// URI), a catalog dataset, a
 * table or query on one of the tenant's connections, or (in a pipeline) another task's output.
 */
export const ReconcileInput = z.union([DatasetRef, CatalogInput, ConnectionInput, TaskInput]);
export type ReconcileInput = z.infer<typeof ReconcileInput>;

/** A plain object (not null, not an array): its keys can be looked at. */
const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/**
 * Parses an input with messages that name the form meant: a string `layer.name[@v]` names
 * a dataset, any other string a file; an object is picked by its key (uri, dataset,
 * connection, task).
 */
export function parseReconcileInput(v: unknown): z.ZodSafeParseResult<ReconcileInput> {
  if (typeof v === 'string')
    return DATASET_INPUT_RE.test(v) && !FILE_EXT.test(v.split('@')[0])
      ? CatalogInput.safeParse({ dataset: v })
      : DatasetRef.safeParse({ uri: v });
  const o = isObject(v) ? v : undefined;
  if (o && 'uri' in o) return DatasetRef.safeParse(o);
  if (o && 'dataset' in o) return CatalogInput.safeParse(o);
  if (o && 'connection' in o) return ConnectionInput.safeParse(o);
  if (o && 'task' in o) return TaskInput.safeParse(o);
  return z
    .custom<never>(() => false, {
      message:
        'an input is a path or URI, {uri}, a dataset ("silver.orders@3" or {dataset}), {connection, table|query} or {task}',
    })
    .safeParse(v);
}

/** A readable label for an input (results, the runs list, the Web UI). */
export function inputLabel(i: ReconcileInput): string {
  if ('uri' in i) return i.uri;
  if ('dataset' in i) return i.namespace ? `${i.namespace}:${i.dataset}` : i.dataset;
  if ('connection' in i) return i.table ? `${i.connection}:${i.table}` : `${i.connection}:query`;
  return `task:${i.task}`;
}

export const ReconcileOptions = z
  .object({
    /** Key columns; none = compare whole rows as multisets. */
    key: z.array(z.string().min(1)).default([]),
    /** Compare only these columns (default: every column both sides have). */
    columns: z.array(z.string()).optional(),
    ignore: z.array(z.string()).default([]),
    /** Numbers within this absolute difference are equal. */
    tolerance: z.number().nonnegative().default(0),
    trim: z.boolean().default(false),
    caseInsensitive: z.boolean().default(false),
    /** Values that count as null on both sides (a missing value always does). */
    nullValues: z.array(z.string()).default(['']),
    sampleLimit: z.number().int().min(0).max(1000).default(10),
    /** Inputs larger than this (both sides together) take the partitioned path. */
    memoryLimitBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
    /** Partitions for the partitioned path (default: sized from the inputs). */
    partitions: z.number().int().min(1).max(4096).optional(),
    /**
     * Which engine compares: auto (on the worker: in memory, or for large inputs DuckDB when the
     * inputs and options allow it, else Strata's streaming partitioner), stream (always the
     * streaming partitioner), or spark (beyond one machine: the same exact comparison as a Spark
     * job — a SparkApplication on Kubernetes, or an EMR step with `clusterId` — over inputs on S3;
     * README: Reconciliation).
     */
    engine: z.enum(['auto', 'stream', 'spark']).default('auto'),
    /**
     * engine spark: the tenant's EMR cluster (j-…, tagged strata:tenant={tenant}) to run the
     * job on as an EMR step; without it the job is a SparkApplication on Kubernetes.
     */
    clusterId: z
      .string()
      .regex(/^j-[A-Z0-9]{1,64}$/, 'an EMR cluster id looks like "j-2AXXXXXXGAPLF"')
      .optional(),
    /**
     * exact (what auto means) compares every row; bloom is a quick approximate pass that
     * may miss differences at about `falsePositiveRate` of them, and says so in its result.
     */
    method: z.enum(['auto', 'exact', 'bloom']).default('auto'),
    /** bloom: the declared false-positive rate of its filters (a difference is missed at about this rate). */
    falsePositiveRate: z.number().gt(0).max(0.5).default(0.01),
    /**
     * Write the full lists of differences (changed keys with the differing columns' values,
     * one-sided rows, duplicated keys) as this dataset (layer.name), catalogued like any output.
     */
    differences: z
      .string()
      .regex(/^(bronze|silver|gold)\.[a-z_][a-z0-9_]{0,62}$/, 'write layer.name, e.g. silver.orders_differences')
      .optional(),
    /** Partitions compared at once. */
    parallelism: z.number().int().min(1).max(32).default(2),
  })
  .strict();
export type ReconcileOptions = z.infer<typeof ReconcileOptions>;

/** What a `clusterId` without `engine: spark` is told (the local engines run on the worker). */
export const CLUSTER_ID_NEEDS_SPARK =
  'clusterId runs the comparison as an EMR step on that cluster: set engine spark, or remove clusterId';

export interface RowSample {
  key: Record<string, string | null>;
  row?: Record<string, string | null>;
}
export interface ChangedSample {
  key: Record<string, string | null>;
  diffs: Record<string, { left: string | null; right: string | null }>;
}

export interface ReconcileResult {
  method: 'memory' | 'partitioned' | 'duckdb' | 'bloom' | 'spark';
  reason: string;
  /** False only for method bloom (see `approximate`). */
  exact: boolean;
  /** method bloom: how far the answer can be off. */
  approximate?: {
    /** The rate asked for. */
    declaredRate: number;
    /** The filters' rate for the rows they actually hold (at most the declared one). */
    falsePositiveRate: number;
    /** Differences expected to have been counted as matched (each slips through at that rate). */
    expectedMissed: number;
    /** Not counted in this mode. */
    notComputed: string[];
  };
  counts: { left: number; right: number; matched: number; changed: number; onlyLeft: number; onlyRight: number };
  columnMismatches: Record<string, number>;
  columns: { compared: string[]; onlyLeft: string[]; onlyRight: string[] };
  duplicates: {
    left: { keys: number; rows: number; samples: Record<string, string | null>[] };
    right: { keys: number; rows: number; samples: Record<string, string | null>[] };
  };
  samples: { onlyLeft: RowSample[]; onlyRight: RowSample[]; changed: ChangedSample[] };
  partitions?: number;
}

export interface ReconcileProgress {
  phase: 'reading' | 'partition-left' | 'partition-right' | 'compare' | 'done';
  rows: number;
  bytes: number;
  partitionsDone?: number;
  partitions?: number;
}

// ---- Reconciliation mappings (the `reconciliations:` section of a pipeline spec) ----

export const POLICIES = ['record', 'warn', 'fail'] as const;

/**
 * A named reconciliation a pipeline declares: two inputs (tasks' outputs, datasets, files,
 * tables), comparison options and a policy — record the result, warn (the task succeeds
 * with a warning), or fail (the run fails when they differ). It runs after the tasks it
 * names (and the tasks of this pipeline that write a dataset it names), every run; its
 * results are listed over time by name (`GET /api/v1/reconciliations?mapping=`).
 */
export const ReconcileMapping = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'a mapping name is letters, digits, _ and - (at most 100)'),
    description: z.string().optional(),
    left: z.unknown(),
    right: z.unknown(),
    policy: z.enum(POLICIES, { message: 'policy is record, warn or fail' }).default('record'),
    /** Who hears what this comparison found in a run (events: MAPPING_EVENTS in schemas/notify.ts). */
    notify: MappingNotifyRules.optional(),
    ...ReconcileOptions.partial().shape,
  })
  .strict();
export type ReconcileMapping = z.infer<typeof ReconcileMapping>;

/** `.field[0].other`: a path inside a mapping, as spec problems write paths. */
const subPath = (p: readonly PropertyKey[]) =>
  p.map((x) => (typeof x === 'number' ? `[${x}]` : `.${String(x)}`)).join('');

/** The task id a mapping runs as. */
export const mappingTaskId = (name: string) => `reconcile-${name}`;

/**
 * Mappings as reconcile tasks appended to the pipeline: each needs the tasks whose output it
 * reads (`{task}`) and the tasks that write a dataset it names. Problems carry the
 * `reconciliations[i]` path.
 */
export function mappingTasks(
  raw: unknown[],
  tasks: Record<string, unknown>[],
): { tasks: Record<string, unknown>[]; problems: { path: string; message: string }[] } {
  const problems: { path: string; message: string }[] = [];
  const out: Record<string, unknown>[] = [];
  const ids = new Set(tasks.map((t) => t.id));
  const writers = new Map<string, string>();
  for (const t of tasks) if (typeof t.output === 'string') writers.set(t.output, String(t.id));
  const names = new Set<string>();
  raw.forEach((m, i) => {
    const at = `reconciliations[${i}]`;
    const before = problems.length;
    const given = isObject(m) ? m.name : undefined;
    if (typeof given === 'string' && names.has(given))
      problems.push({ path: `${at}.name`, message: `duplicate mapping "${given}": name each once` });
    if (typeof given === 'string') names.add(given);
    const r = ReconcileMapping.safeParse(m);
    if (!r.success) {
      for (const is of r.error.issues) problems.push({ path: at + subPath(is.path), message: is.message });
      return;
    }
    const { name, policy, description, left, right, notify, ...options } = r.data;
    const id = mappingTaskId(name);
    if (ids.has(id))
      problems.push({
        path: `${at}.name`,
        message: `a task is already called "${id}": rename the task or the mapping`,
      });
    const needs: string[] = [];
    for (const [side, v] of [
      ['left', left],
      ['right', right],
    ] as const) {
      const p = parseReconcileInput(v);
      if (!p.success) {
        for (const is of p.error.issues)
          problems.push({ path: `${at}.${side}${subPath(is.path)}`, message: is.message });
        continue;
      }
      if ('task' in p.data) {
        if (!ids.has(p.data.task))
          problems.push({
            path: `${at}.${side}.task`,
            message: `no task "${p.data.task}" in this pipeline: name one of its tasks`,
          });
        else needs.push(p.data.task);
      }
      if ('dataset' in p.data) {
        const w = writers.get(p.data.dataset.split('@')[0]);
        if (w) needs.push(w);
      }
    }
    // A mapping with problems of its own is not checked again as a task.
    if (problems.length > before) return;
    out.push({
      id,
      kind: 'reconcile',
      ...(description ? { description } : {}),
      ...(needs.length ? { needs: [...new Set(needs)] } : {}),
      left,
      right,
      ...options,
      mapping: name,
      policy,
      ...(policy === 'fail' ? { failOnDifference: true } : {}),
      ...(notify?.length ? { notify } : {}),
    });
  });
  return { tasks: out, problems };
}
