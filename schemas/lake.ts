import { z } from 'zod';
import { Duration } from './duration.js';

/**
 * Medallion datasets. A dataset is named `layer.name` (e.g. `silver.orders`) inside a
 * namespace (the task's `namespace`, default "default"); in SQL the same name reads the
 * current version, `silver.orders@3` a given version and `silver.orders@'2026-01-02T00:00:00Z'`
 * the version that was current at that time. Lake layout: {root}/{layer}/{namespace}/{name}/…
 */
export const LAYERS = ['bronze', 'silver', 'gold'] as const;
export const Layer = z.enum(LAYERS);
export type Layer = z.infer<typeof Layer>;
export const isLayer = (s: unknown): s is Layer => Layer.safeParse(s).success;

const NAME = '[a-z_][a-z0-9_]{0,62}';
export const DATASET_NAME_RE = new RegExp(`^(bronze|silver|gold)\\.(${NAME})$`);
/** Dataset references in SQL: layer.name, optionally @version or @'timestamp'. */
export const DATASET_REF_IN_SQL_RE = new RegExp(
  `(?<![\\w."'])(bronze|silver|gold)\\.(${NAME})(?:@(\\d+|'[^']+'))?(?![\\w(])`,
  'g',
);

export interface DatasetId {
  layer: Layer;
  namespace: string;
  name: string;
}
export interface DatasetVersionRef extends DatasetId {
  version: number;
}

export const Namespace = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,62}$/, 'a namespace is lower-case letters, digits and "_"');

export function parseDatasetName(s: string): { layer: Layer; name: string } | undefined {
  const m = DATASET_NAME_RE.exec(s);
  return m && isLayer(m[1]) ? { layer: m[1], name: m[2] } : undefined;
}

/** The dataset references a SQL text makes (string literals are not scanned). */
export function datasetRefsInSql(sql: string): { text: string; layer: Layer; name: string; at?: string }[] {
  const out: { text: string; layer: Layer; name: string; at?: string }[] = [];
  const noStrings = sql.replace(/'(?:[^']|'')*'/g, (s, off: number) =>
    sql[off - 1] === '@' ? s : ' '.repeat(s.length),
  );
  for (const m of noStrings.matchAll(DATASET_REF_IN_SQL_RE))
    out.push({ text: m[0], layer: m[1] as Layer, name: m[2], at: m[3] });
  return out;
}

/** A task in a layer reads its own layer or the one below. */
export function layerMayRead(reader: Layer, read: Layer): boolean {
  const d = LAYERS.indexOf(reader) - LAYERS.indexOf(read);
  return d === 0 || d === 1;
}

const Severity = z.enum(['error', 'warn']).default('error');
const col = z.string().min(1);
const common = { severity: Severity, name: z.string().optional() };

/** Quality checks on a task's output, run before the version is made current. */
export const Check = z.union([
  z.object({ not_null: z.union([col, z.array(col).min(1)]), ...common }).strict(),
  z.object({ unique: z.union([col, z.array(col).min(1)]), ...common }).strict(),
  z
    .object({
      accepted_values: z
        .object({ column: col, values: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1) })
        .strict(),
      ...common,
    })
    .strict(),
  z
    .object({
      range: z.object({ column: col, min: z.number().optional(), max: z.number().optional() }).strict(),
      ...common,
    })
    .strict(),
  z
    .object({
      row_count: z
        .object({
          min: z.number().int().min(0).optional(),
          max: z.number().int().min(0).optional(),
          /** Relative to the current version before this one: 0.5 = at least half as many rows. */
          min_ratio: z.number().min(0).optional(),
          max_ratio: z.number().min(0).optional(),
        })
        .strict(),
      ...common,
    })
    .strict(),
  z.object({ freshness: z.object({ column: col, max_age: Duration }).strict(), ...common }).strict(),
  z
    .object({
      references: z
        .object({
          column: z.union([col, z.array(col).min(1)]),
          dataset: z.string().regex(DATASET_NAME_RE, 'write the dataset as layer.name, e.g. silver.customers'),
          key: z.union([col, z.array(col).min(1)]),
        })
        .strict(),
      ...common,
    })
    .strict(),
  /** Custom SQL: a predicate every row must satisfy. */
  z.object({ expect: z.string().min(1), ...common }).strict(),
]);
export type Check = z.infer<typeof Check>;

/**
 * A dataset's partition spec, as Iceberg transforms over its columns: `customer` (identity),
 * `day(ordered_at)`, `month(ts)`, `year(d)`, `hour(ts)`, `bucket(16, id)`, `truncate(4, name)`. Strata's writer
 * writes one data file per partition with the values in the manifests; readers prune by them.
 */
export const PARTITION_RE =
  /^\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(identity|year|month|day|hour)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)|(bucket|truncate)\s*\(\s*(\d{1,7})\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\))\s*$/;
export const PartitionBy = z
  .array(
    z
      .string()
      .regex(
        PARTITION_RE,
        "write a partition as COLUMN, identity(COLUMN), year(COLUMN), month(COLUMN), day(COLUMN), hour(COLUMN), bucket(N, COLUMN) or truncate(W, COLUMN) (in a YAML [a, b] list, quote bucket and truncate: 'bucket(16, id)', their comma splits them otherwise)",
      ),
  )
  .min(1)
  .max(8, 'at most 8 partition fields');

export const ColumnType = z.enum(['string', 'int', 'bigint', 'double', 'decimal', 'boolean', 'date', 'timestamp']);
export const ColumnDecl = z.union([
  ColumnType,
  z
    .object({
      type: ColumnType,
      nullable: z.boolean().default(true),
      precision: z.number().int().min(1).max(38).optional(),
      scale: z.number().int().min(0).max(38).optional(),
    })
    .strict(),
]);
export type ColumnDecl = z.infer<typeof ColumnDecl>;

const DatasetOutput = z.string().regex(DATASET_NAME_RE, 'write the output dataset as layer.name, e.g. bronze.orders');

export const IngestFileFields = {
  /** Lake key or prefix of the landing files (e.g. landing/orders/), or a glob suffix *.csv. */
  source: z.string().min(1),
  format: z.enum(['csv', 'jsonl', 'parquet']),
  columns: z.record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'column names are letters, digits and "_"'),
    ColumnDecl,
  ),
  output: DatasetOutput,
  namespace: Namespace.default('default'),
  partitionBy: PartitionBy.optional(),
  /** Where rejected rows go; default {output}_quarantine. */
  quarantine: DatasetOutput.optional(),
  csv: z
    .object({ delimiter: z.string().length(1).default(','), header: z.boolean().default(true) })
    .strict()
    .optional(),
  checks: z.array(Check).default([]),
};

export const IngestTableFields = {
  connection: z.string().min(1),
  /** A table name, or `query` for a SELECT. */
  table: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_.]*$/, 'a table name is letters, digits, "_" and "."')
    .optional(),
  query: z.string().min(1).optional(),
  mode: z.enum(['full', 'incremental']).default('full'),
  /** Incremental: the column whose high-water mark is kept in the metastore. */
  cursor: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional(),
  batchSize: z.number().int().min(1).max(1_000_000).default(10_000),
  output: DatasetOutput,
  namespace: Namespace.default('default'),
  partitionBy: PartitionBy.optional(),
  checks: z.array(Check).default([]),
};

export const LakeSqlFields = {
  /** The layer this task writes; with it, `output` is a dataset name (layer.name). */
  layer: Layer.optional(),
  namespace: Namespace.default('default'),
  checks: z.array(Check).default([]),
  /** Failing rows kept per check for inspection. */
  failingRowsLimit: z.number().int().min(0).max(1000).default(20),
};

export const S3WaitFields = {
  /** A key, or a prefix ending in "/", relative to the lake root (or an s3:// / file:// URI). */
  path: z.string().min(1),
  /** Wait for this file under the prefix (e.g. _SUCCESS) as well. */
  marker: z.string().min(1).optional(),
  minCount: z.number().int().min(1).default(1),
  pollInterval: Duration.default('30s'),
  waitTimeout: Duration.default('1h'),
};
export const S3CopyFields = { from: z.string().min(1), to: z.string().min(1) };
export const S3ListFields = { prefix: z.string().min(1) };
export const S3DeleteFields = {
  path: z.string().min(1),
  recursive: z.boolean().default(false),
};

/**
 * A location field checked when the spec is registered (the worker checks again after
 * templates are rendered, against the tenant's lake and allowed locations): a lake path
 * or an s3:// / file:// URI, with no "." or ".." segments.
 */
export function locationProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.replace(/\{\{[^}]*\}\}/g, 'x');
  if (/^[a-z][a-z0-9+.-]*:/i.test(v) && !/^(s3|file):\/\//.test(v))
    return `"${value}" has a scheme Strata does not read: use a path in your lake, or an s3:// or file:// URI your platform operator allowed`;
  if (v.split(/[/\\]/).some((s) => s === '..'))
    return `"${value}" climbs out with "..": name the location inside your lake`;
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\u0000-\u001f]/.test(v)) return `"${value}" holds control characters`;
  return undefined;
}
