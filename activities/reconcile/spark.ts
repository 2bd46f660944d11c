/**
 * `engine: spark`: the comparison as a Spark job (activities/reconcile/spark-sql.ts), in three
 * steps the reconcileJob workflow runs: prepare (here: resolve both inputs to objects on S3
 * inside the tenant's reach, read their columns, write the job's script to the tenant's
 * lake), the job itself (an externalJob: a SparkApplication, or an EMR step on the tenant's
 * cluster when the task names a `clusterId`), and collect
 * (here: read the job's output directories back into the result every path returns).
 *
 * The job's output is data the tenant's code could have touched (it runs in the tenant's
 * namespace with the tenant's credentials): it is read as untrusted input, bounded, and only
 * ever yields the tenant's own result.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { DuckDBInstance } from '@duckdb/node-api';
import { NonRetryableError } from '../../schemas/errors.js';
import type { CsvOptions, ReconcileInput, ReconcileOptions, ReconcileResult } from '../../schemas/reconcile.js';
import { parseJobTask, SparkJobTask } from '../../schemas/external.js';
import type { LakeDeps } from '../lake/engine.js';
import { allowedLocations, forTenant } from '../lake/open.js';
import type { ObjectStore, S3Config } from '../s3/client.js';
import { locate } from '../s3/tenant.js';
import { CatalogError } from '../../store/catalog.js';
import { emptyResult, layout, type DiffRecord, type Layout } from './compare.js';
import { diffLine } from './diffs.js';
import { fastCsvRecords } from './fast-csv.js';
import { parseDatasetInput, taskOutputVersion } from './inputs.js';
import { comparisonPlan, DIFF_KINDS, sqlAnswer, type DiffKind, type SqlPlan } from './spark-sql.js';
import { quoteLiteral } from '../sql/quote.js';

/** One side as the job reads it: objects on S3, their format, and their columns in order. */
export interface SparkInput {
  format: 'csv' | 'parquet';
  /** s3:// URIs (one CSV file, or a dataset version's Parquet files). */
  uris: string[];
  csv?: CsvOptions;
  columns: string[];
  source: { input: string; dataset?: string; namespace?: string; version?: number; rows?: number };
}

/** What prepare hands the workflow: the job to run, and what collect needs to read its answer. */
export interface SparkPrepared {
  /** The externalJob task (a pyspark job running the generated script). */
  job: Record<string, unknown> & { id: string; kind: string };
  /** The tenant-lake folder holding the script and the job's outputs. */
  folder: string;
  columns: {
    key: string[];
    compared: string[];
    left: string[];
    right: string[];
    onlyLeft: string[];
    onlyRight: string[];
  };
  inputs: { left: SparkInput['source']; right: SparkInput['source'] };
}

/** The tenant-lake folder of one reconcile task's Spark job (stable across retries). */
export function sparkFolder(workflowId: string, taskId: string): string {
  return `.strata/reconcile/${createHash('sha256').update(`${workflowId}/${taskId}`).digest('hex').slice(0, 20)}`;
}

const HEADER_BYTES = 1024 * 1024;

/** Where an input's objects are: inside the tenant's lake or an allowed location, on S3. */
export async function sparkInput(
  input: ReconcileInput,
  side: 'left' | 'right',
  env: { tenant: string; lake: LakeDeps; s3?: S3Config; workflowId?: string; scratch: string },
): Promise<SparkInput> {
  const lake = forTenant(env.lake, env.tenant);
  const onS3 = (uri: string, what: string) => {
    if (!/^s3:\/\//.test(uri))
      throw new NonRetryableError(
        `${side}: ${what} is at ${uri}, which Spark cannot read: engine spark compares data on S3 (a lake on S3, STRATA_LAKE_ROOT=s3://…, or an s3:// location allowed for your tenant); use engine auto for local files`,
        'ConfigError',
      );
    return uri;
  };
  if ('connection' in input)
    throw new NonRetryableError(
      `${side}: engine spark reads files and datasets, not connections: land the table first (kind ingest.table) and compare the dataset, or use engine auto`,
      'BadInput',
    );
  if ('uri' in input) {
    const at = locate(
      { lake: lake.store, allowed: allowedLocations(env.lake, env.tenant), s3: env.s3 },
      input.uri.replace(/^s3[an]:\/\//i, 's3://'),
    );
    const head = at.key && !at.key.endsWith('/') ? await at.store.head(at.key) : undefined;
    if (!head) throw new NonRetryableError(`dataset not found: ${input.uri}`, 'NotFound');
    const uri = onS3(at.store.uri(at.key), input.uri);
    const format = input.format ?? (at.key.endsWith('.parquet') ? 'parquet' : 'csv');
    const csv: CsvOptions = { delimiter: ',', quote: '"', escape: '"', header: true, encoding: 'utf8', ...input.csv };
    const columns =
      format === 'csv'
        ? await csvHeader(at.store, at.key, head.size, csv, env.scratch, side)
        : await parquetColumns(at.store, at.key, head.size, env.scratch, side);
    return { format, uris: [uri], ...(format === 'csv' ? { csv } : {}), columns, source: { input: input.uri } };
  }
  // A catalog dataset, or another task's output in this run: its version's Parquet files and schema.
  let v;
  let label: string;
  try {
    if ('dataset' in input) {
      const id = parseDatasetInput(input.dataset, input.namespace);
      v = await lake.catalog.resolve(env.tenant, id.id, id.at);
      label = input.dataset;
    } else {
      v = await taskOutputVersion(lake, env.tenant, env.workflowId, input.task);
      label = `task:${input.task}`;
    }
  } catch (e) {
    if (e instanceof CatalogError) throw new NonRetryableError(e.message, 'DatasetError');
    throw e;
  }
  return {
    format: 'parquet',
    uris: v.files.map((f) => onS3(lake.store.uri(f), label)),
    columns: v.schema.map((c) => c.name),
    source: {
      input: label,
      dataset: `${v.layer}.${v.name}`,
      namespace: v.namespace,
      version: v.version,
      rows: v.rowCount,
    },
  };
}

/** A CSV's header (or its width, without one) from its first MiB. */
async function csvHeader(
  store: ObjectStore,
  key: string,
  size: number,
  o: CsvOptions,
  scratch: string,
  side: string,
): Promise<string[]> {
  if (o.delimiter.length !== 1 || o.quote.length !== 1 || o.escape !== o.quote)
    throw new NonRetryableError(
      `${side}: engine spark reads CSV with a one-character delimiter and quote, escaped by doubling; use engine auto for this file`,
      'BadInput',
    );
  const file = path.join(scratch, `${side}.head.csv`);
  await mkdir(scratch, { recursive: true });
  await writeFile(file, await store.getBytes(key, { start: 0, end: Math.min(size, HEADER_BYTES) - 1 }));
  try {
    for await (const rec of fastCsvRecords(file, o.delimiter, o.quote))
      return o.header ? rec : rec.map((_, i) => String(i + 1));
  } catch {
    /* a header cut off at 1 MiB reads as malformed: said below */
  } finally {
    await rm(file, { force: true });
  }
  throw new NonRetryableError(`${side}: no CSV header in the first MiB of ${key}`, 'BadInput');
}

/** A Parquet file's columns, from its footer alone (two ranged reads). */
async function parquetColumns(
  store: ObjectStore,
  key: string,
  size: number,
  scratch: string,
  side: string,
): Promise<string[]> {
  const bad = () => new NonRetryableError(`${side}: ${key} is not a Parquet file`, 'BadInput');
  if (size < 12) throw bad();
  const tail = await store.getBytes(key, { start: size - 8, end: size - 1 });
  if (tail.subarray(4).toString('latin1') !== 'PAR1') throw bad();
  const len = tail.readUInt32LE(0);
  if (len + 12 > size) throw bad();
  const footer = await store.getBytes(key, { start: size - 8 - len, end: size - 9 });
  // The footer behind a leading magic number is a Parquet file as far as its schema goes.
  await mkdir(scratch, { recursive: true });
  const file = path.join(scratch, `${side}.footer.parquet`);
  await writeFile(file, Buffer.concat([Buffer.from('PAR1'), footer, tail]));
  const db = await DuckDBInstance.create(':memory:', {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
  });
  const c = await db.connect();
  try {
    const rows = (await c.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${quoteLiteral(file)})`)).getRows();
    return rows.map((r) => String(r[0]));
  } catch {
    throw bad();
  } finally {
    c.closeSync();
    db.closeSync();
    await rm(file, { force: true });
  }
}

/** The comparison's columns for both inputs (the same checks as the local path: a key must be on both sides). */
export function sparkLayout(left: SparkInput, right: SparkInput, o: ReconcileOptions): Layout {
  return layout(left.columns, right.columns, o);
}

export function planFor(l: Layout, left: SparkInput, right: SparkInput, o: ReconcileOptions): SqlPlan {
  return comparisonPlan(
    { key: l.keyNames, compared: l.compared, leftColumns: left.columns, rightColumns: right.columns },
    o,
    { sampleLimit: o.sampleLimit, differences: !!o.differences },
  );
}

// ---- The job's script ----

const s3a = (uri: string) => uri.replace(/^s3:\/\//, 's3a://');

/** Where the job runs: an EMR step on the tenant's cluster (`clusterId`), else a SparkApplication on Kubernetes. */
export type SparkTarget = 'spark-k8s' | 'emr';
export const sparkTarget = (o: Pick<ReconcileOptions, 'clusterId'>): SparkTarget => (o.clusterId ? 'emr' : 'spark-k8s');

/** An S3 object as the job names it: EMR reads `s3://` (EMRFS), Spark on Kubernetes `s3a://` (Hadoop's S3A). */
const jobUri = (uri: string, target: SparkTarget) => (target === 'emr' ? uri : s3a(uri));
/** A Spark SQL string literal (Spark reads backslash escapes in literals). */
const sparkLit = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
const tick = (s: string) => `\`${s.replaceAll('`', '``')}\``;
const ENCODINGS: Record<CsvOptions['encoding'], string> = {
  utf8: 'UTF-8',
  'utf-8': 'UTF-8',
  latin1: 'ISO-8859-1',
  utf16le: 'UTF-16LE',
  ascii: 'US-ASCII',
};

/**
 * Spark statements making `strata_left` / `strata_right`: the inputs' columns by position, as
 * text. A CSV is read with a declared all-text schema (its header skipped, never trusted for
 * names), whole records across lines, failing on a malformed row as the local reader does.
 */
export function sparkViews(
  view: 'strata_left' | 'strata_right',
  input: SparkInput,
  target: SparkTarget = 'spark-k8s',
): string[] {
  const n = input.columns.length;
  const pos = Array.from({ length: n }, (_, j) => j);
  if (input.format === 'csv') {
    const o = input.csv;
    if (!o) throw new Error(`${input.uris[0]}: a CSV input without its dialect`);
    const opts = {
      path: jobUri(input.uris[0], target),
      header: String(o.header),
      multiLine: 'true',
      sep: o.delimiter,
      quote: o.quote,
      escape: o.escape,
      encoding: ENCODINGS[o.encoding],
      mode: 'FAILFAST',
      enforceSchema: 'true',
    };
    return [
      `CREATE OR REPLACE TEMPORARY VIEW ${view}_file (${pos.map((j) => `c${j} STRING`).join(', ')}) USING csv OPTIONS (${Object.entries(
        opts,
      )
        .map(([k, v]) => `${k} ${sparkLit(v)}`)
        .join(', ')})`,
      // A CSV has no nulls: an empty field is the empty string (Spark reads an unquoted one as null).
      `CREATE OR REPLACE TEMPORARY VIEW ${view} AS SELECT ${pos.map((j) => `COALESCE(c${j}, '') AS c${j}`).join(', ')} FROM ${view}_file`,
    ];
  }
  const select = (uri: string) =>
    `SELECT ${input.columns.map((c, j) => `CAST(${tick(c)} AS STRING) AS c${j}`).join(', ')} FROM parquet.${tick(jobUri(uri, target))}`;
  return [`CREATE OR REPLACE TEMPORARY VIEW ${view} AS ${input.uris.map(select).join('\nUNION ALL\n')}`];
}

/** What the job runs, as written next to its runner (`plan.json`): views, stages, outputs with where they go. */
export interface SparkJobPlan {
  views: string[];
  stages: SqlPlan['stages'];
  outputs: { name: string; select: string; path: string; small: boolean }[];
  /** The inputs the views read (for a reader of the plan; the job reads the views). */
  inputs: { left: Omit<SparkInput, 'source'>; right: Omit<SparkInput, 'source'> };
}

export function sparkJobPlan(
  plan: SqlPlan,
  left: SparkInput,
  right: SparkInput,
  out: string,
  target: SparkTarget = 'spark-k8s',
): SparkJobPlan {
  const bare = ({ source: _s, ...x }: SparkInput) => x;
  return {
    views: [...sparkViews('strata_left', left, target), ...sparkViews('strata_right', right, target)],
    stages: plan.stages,
    outputs: plan.outputs.map((o) => ({
      ...o,
      path: jobUri(`${out}/${o.name}`, target),
      small: !o.name.startsWith('differences_'),
    })),
    inputs: { left: bare(left), right: bare(right) },
  };
}

/** The task fields that shape the Spark job (resources, image, settings, polling): passed on as they are. */
export const SPARK_JOB_FIELDS = [
  'image',
  'sparkVersion',
  'driver',
  'executor',
  'dynamicAllocation',
  'serviceAccount',
  's3Secret',
  'sparkConf',
  'poll',
  'cluster',
] as const;

/**
 * The externalJob task: the runner (a file in the tenant's lake) given its plan. On Kubernetes
 * with the task's Spark fields; on EMR (`clusterId`) a pyspark step on that cluster, the task's
 * `driver` and `executor` becoming the matching Spark settings (the cluster's own Spark reads
 * them), its `sparkConf` and `poll` as they are.
 */
export function sparkJobTask(
  task: Record<string, unknown> & { id: string },
  runner: string,
  planUri: string,
  clusterId?: string,
): Record<string, unknown> & { id: string; kind: string } {
  if (clusterId) {
    const t = parseJobTask(SparkJobTask, task);
    const sparkConf = { ...t.sparkConf, ...resourceConf(t) };
    return {
      id: task.id,
      kind: 'pyspark',
      engine: 'emr',
      clusterId,
      file: runner,
      args: [jobUri(planUri, 'emr')],
      ...(Object.keys(sparkConf).length ? { sparkConf } : {}),
      ...(t.poll ? { poll: t.poll } : {}),
    };
  }
  const job: Record<string, unknown> & { id: string; kind: string } = {
    id: task.id,
    kind: 'pyspark',
    engine: 'spark',
    file: runner,
    args: [s3a(planUri)],
  };
  for (const f of SPARK_JOB_FIELDS) if (task[f] !== undefined) job[f] = task[f];
  return job;
}

/** A task's `driver` / `executor` as spark-submit settings (what a SparkApplication's spec says of them). */
export function resourceConf(t: Pick<SparkJobTask, 'driver' | 'executor'>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const role of ['driver', 'executor'] as const) {
    const r = t[role];
    if (r?.cores !== undefined) out[`spark.${role}.cores`] = String(r.cores);
    if (r?.memory !== undefined) out[`spark.${role}.memory`] = sparkMemory(r.memory);
  }
  if (t.executor?.instances !== undefined) out['spark.executor.instances'] = String(t.executor.instances);
  return out;
}

/** MiB per unit; a bare number is MiB, as Spark reads it. */
const MIB_PER = { '': 1, k: 1 / 1024, m: 1, g: 1024, t: 1024 * 1024 } as const;

/**
 * A task's memory ("512m", "1.5g", "4Gi", or MiB) in the form spark-submit reads: whole MiB
 * (Spark takes no fractions and no "Gi"; Kubernetes quantities and Spark's units are both binary).
 */
export function sparkMemory(memory: string): string {
  const m = /^(\d+(?:\.\d+)?)([kmgt]?)i?$/i.exec(memory);
  if (!m) throw new NonRetryableError(`memory "${memory}": write it like "512m", "2g" or "4Gi"`, 'BadInput');
  const unit = m[2].toLowerCase();
  const per = unit === 'k' || unit === 'm' || unit === 'g' || unit === 't' ? MIB_PER[unit] : MIB_PER[''];
  return `${Math.max(1, Math.ceil(Number(m[1]) * per))}m`;
}

/**
 * The job's main file: runs the plan it is given (its first argument): the views, each stage
 * materialised once, each output written as JSON lines (one file for the small ones). The
 * SQL is all in the plan, so what a test runs on DuckDB is what Spark runs.
 */
export const SPARK_RUNNER = `# Strata: runs a reconciliation plan (plan.json, the first argument) on Spark.
import json
import sys

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("strata-reconcile").getOrCreate()
plan = json.loads(spark.read.text(sys.argv[1], wholetext=True).first()[0])
for statement in plan["views"]:
    spark.sql(statement)
for stage in plan["stages"]:
    spark.sql("CACHE TABLE " + stage["name"] + " AS " + stage["select"])
for output in plan["outputs"]:
    df = spark.sql(output["select"])
    if output["small"]:
        df = df.coalesce(1)
    df.write.mode("overwrite").json(output["path"])
spark.stop()
`;

// ---- Reading the outputs back ----

/** The data files of one output directory (Spark's `part-*`; `_SUCCESS` and dot files are markers). */
async function outputFiles(store: ObjectStore, dir: string): Promise<string[] | undefined> {
  const all = await store.list(`${dir}/`);
  if (!all.some((o) => o.key === `${dir}/_SUCCESS`)) return undefined;
  return all
    .map((o) => o.key)
    .filter((k) => {
      const base = k.slice(dir.length + 1);
      return !base.includes('/') && !base.startsWith('_') && !base.startsWith('.');
    });
}

/** A JSON object (a row of the job's output), not null, an array or a scalar. */
const isRow = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Each JSON line of an output directory, one file at a time through a local copy (lists can be large). */
async function* outputRows(
  store: ObjectStore,
  dir: string,
  scratch: string,
  what: string,
): AsyncGenerator<Record<string, unknown>> {
  const files = await outputFiles(store, dir);
  if (!files)
    throw new NonRetryableError(
      `the Spark job ended COMPLETED but its ${what} is missing (no ${dir}/_SUCCESS): it did not run the generated script to the end`,
      'ExternalJobFailed',
    );
  await mkdir(scratch, { recursive: true });
  for (const [i, key] of files.entries()) {
    const local = path.join(scratch, `part-${i}`);
    await store.getFile(key, local);
    try {
      const lines = createInterface({ input: createReadStream(local), crlfDelay: Infinity });
      for await (const line of lines) {
        if (!line.trim()) continue;
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch {
          throw new NonRetryableError(
            `the Spark job's ${what} holds a line that is not JSON (${key})`,
            'ExternalJobFailed',
          );
        }
        if (!isRow(row))
          throw new NonRetryableError(
            `the Spark job's ${what} holds a line that is not a row (${key})`,
            'ExternalJobFailed',
          );
        yield row;
      }
    } finally {
      await rm(local, { force: true });
    }
  }
}

/** A value of the job's output as text (what it writes is text; anything else is shown as JSON). */
const text = (v: unknown): string | null =>
  v === null || v === undefined ? null : typeof v === 'string' ? v : JSON.stringify(v);

/** Turns one output row of a kind into the difference records the local path writes. */
function recordsOf(kind: DiffKind, row: Record<string, unknown>, c: SparkPrepared['columns']): DiffRecord[] {
  const key = (names: string[]) => Object.fromEntries(names.map((n, i) => [n, text(row[`k${i}`])]));
  const keyFromRow = (header: string[]) => {
    const out: Record<string, string | null> = {};
    for (const k of c.key) out[k] = text(row[`c${header.indexOf(k)}`]);
    return out;
  };
  const whole = (header: string[]) => Object.fromEntries(header.map((n, j) => [n, text(row[`c${j}`])]));
  switch (kind) {
    case 'changed': {
      const k = key(c.key);
      return c.compared.flatMap((column, i) =>
        Number(row[`d${i}`]) === 1
          ? [{ kind, key: k, column, left: text(row[`l${i}`]), right: text(row[`r${i}`]) }]
          : [],
      );
    }
    case 'only_left':
      return [{ kind, key: keyFromRow(c.left), row: whole(c.left) }];
    case 'only_right':
      return [{ kind, key: keyFromRow(c.right), row: whole(c.right) }];
    default:
      return [{ kind, key: key(c.key), count: Number(row.n) }];
  }
}

/**
 * The result from the job's outputs: the answer row's counts, the samples of each kind (as
 * the local path shapes them), and, when `diffs` is given, every difference record.
 */
export async function readSparkOutputs(
  store: ObjectStore,
  folder: string,
  prepared: Pick<SparkPrepared, 'columns'>,
  o: ReconcileOptions,
  diffs?: (d: DiffRecord) => void | Promise<void>,
  scratch = path.join(os.tmpdir(), 'strata-reconcile-spark'),
): Promise<Omit<ReconcileResult, 'method' | 'reason'>> {
  const c = prepared.columns;
  const out = `${folder}/out`;
  const r = emptyResult();
  let answer: Record<string, unknown> | undefined;
  for await (const row of outputRows(store, `${out}/answer`, scratch, 'answer')) answer ??= row;
  if (!answer) throw new NonRetryableError('the Spark job wrote an empty answer', 'ExternalJobFailed');
  const a = sqlAnswer(answer, c.compared);
  Object.assign(r.counts, a.counts);
  r.columnMismatches = a.columnMismatches;
  r.duplicates.left.keys = a.duplicates.left.keys;
  r.duplicates.left.rows = a.duplicates.left.rows;
  r.duplicates.right.keys = a.duplicates.right.keys;
  r.duplicates.right.rows = a.duplicates.right.rows;
  const keyed = c.key.length > 0;
  for (const kind of DIFF_KINDS) {
    if (!keyed && (kind === 'changed' || kind.startsWith('duplicate_'))) continue;
    let n = 0;
    for await (const row of outputRows(store, `${out}/samples_${kind}`, scratch, `samples of ${kind}`)) {
      if (n++ >= o.sampleLimit) break;
      const recs = recordsOf(kind, row, c);
      if (kind === 'changed') {
        if (!recs.length) continue;
        const diffs: Record<string, { left: string | null; right: string | null }> = {};
        for (const d of recs) if (d.column) diffs[d.column] = { left: d.left ?? null, right: d.right ?? null };
        r.samples.changed.push({ key: recs[0].key, diffs });
      } else if (kind === 'only_left' || kind === 'only_right')
        r.samples[kind === 'only_left' ? 'onlyLeft' : 'onlyRight'].push({ key: recs[0].key, row: recs[0].row });
      else r.duplicates[kind === 'duplicate_left' ? 'left' : 'right'].samples.push(recs[0].key);
    }
    if (diffs)
      for await (const row of outputRows(store, `${out}/differences_${kind}`, scratch, `differences of ${kind}`))
        for (const d of recordsOf(kind, row, c)) await diffs(d);
  }
  return {
    ...r,
    columns: { compared: c.compared, onlyLeft: c.onlyLeft, onlyRight: c.onlyRight },
  };
}

/** Difference records as the lists the differences dataset is published from (diffs.ts), one file, streamed. */
export function diffLines(dir: string) {
  let out: ReturnType<typeof createWriteStream> | undefined;
  return {
    async write(d: DiffRecord) {
      if (!out) {
        await mkdir(dir, { recursive: true });
        out = createWriteStream(path.join(dir, 'diff-0.jsonl'));
      }
      const stream = out;
      if (!stream.write(diffLine(d))) await new Promise<void>((res) => stream.once('drain', () => res()));
    },
    async close() {
      const o = out;
      if (o) await new Promise<void>((res, rej) => o.end((e?: Error | null) => (e ? rej(e) : res())));
    },
  };
}
