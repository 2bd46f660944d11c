/**
 * Stands in for the Spark driver of `engine: spark` reconciliations: runs the generated plan's
 * SQL (the stages and outputs, unchanged) on DuckDB over local copies of the same input files,
 * and writes each output as a directory of JSON lines with `_SUCCESS`, as Spark's writer does.
 * Only the views over the files are DuckDB's own (Spark's are `CREATE TEMPORARY VIEW … USING`).
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CsvOptions } from '../../schemas/reconcile.js';
import type { SqlPlan } from '../../activities/reconcile/spark-sql.js';
import type { SparkJobPlan } from '../../activities/reconcile/spark.js';
import type { ObjectStore } from '../../activities/s3/client.js';

export interface LocalInput {
  format: 'csv' | 'parquet';
  files: string[];
  csv?: CsvOptions;
  columns: string[];
}

const q = (s: string) => `'${s.replaceAll("'", "''")}'`;

function duckView(view: string, i: LocalInput): string {
  const pos = i.columns.map((_, j) => j);
  if (i.format === 'csv') {
    const o = i.csv ?? { delimiter: ',', quote: '"', escape: '"', header: true, encoding: 'utf8' };
    const names = `[${pos.map((j) => `'c${j}'`).join(', ')}]`;
    const src = `read_csv(${q(i.files[0])}, header = ${o.header}, all_varchar = true, names = ${names}, delim = ${q(o.delimiter)}, quote = ${q(o.quote)}, escape = ${q(o.escape)}, allow_quoted_nulls = false, strict_mode = true)`;
    return `CREATE TEMP VIEW ${view} AS SELECT ${pos.map((j) => `COALESCE(c${j}, '') AS c${j}`).join(', ')} FROM ${src}`;
  }
  const cols = i.columns.map((c, j) => `CAST("${c.replaceAll('"', '""')}" AS VARCHAR) AS c${j}`).join(', ');
  return `CREATE TEMP VIEW ${view} AS SELECT ${cols} FROM read_parquet([${i.files.map(q).join(', ')}])`;
}

/** Runs `plan` over the two inputs; output `name` goes to `dirOf(name)`. */
export async function playPlanOnDuckDB(
  plan: Pick<SqlPlan, 'stages' | 'outputs'>,
  left: LocalInput,
  right: LocalInput,
  dirOf: (name: string) => string,
): Promise<void> {
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  try {
    await c.run(duckView('strata_left', left));
    await c.run(duckView('strata_right', right));
    for (const s of plan.stages) await c.run(`CREATE TEMP TABLE ${s.name} AS ${s.select}`);
    for (const o of plan.outputs) {
      const dir = dirOf(o.name);
      await mkdir(dir, { recursive: true });
      await c.run(`COPY (${o.select}) TO ${q(path.join(dir, 'part-00000.json'))} (FORMAT json)`);
      await writeFile(path.join(dir, '_SUCCESS'), '');
    }
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

/**
 * The Spark driver's part of a job, played from the tenant's lake: reads the plan at `planUri`,
 * runs it on DuckDB over copies of its inputs in `dir` and uploads each output directory where
 * the plan says. `keyOf` turns a URI the job was given into a key of `store` (and refuses any
 * other tenant's object). Returns the plan played.
 */
export async function playJobFromLake(
  store: ObjectStore,
  keyOf: (uri: string) => string,
  planUri: string,
  dir: string,
): Promise<SparkJobPlan> {
  const plan: SparkJobPlan = JSON.parse((await store.getBytes(keyOf(planUri))).toString());
  const local = async (side: 'left' | 'right'): Promise<LocalInput> => {
    const i = plan.inputs[side];
    const files: string[] = [];
    for (const [n, uri] of i.uris.entries()) {
      const f = path.join(dir, `${side}-${n}.${i.format}`);
      await store.getFile(keyOf(uri), f);
      files.push(f);
    }
    return { format: i.format, files, csv: i.csv, columns: i.columns };
  };
  const out = (n: string) => path.join(dir, 'out', n);
  await playPlanOnDuckDB(plan, await local('left'), await local('right'), out);
  for (const o of plan.outputs)
    for (const f of await readdir(out(o.name))) await store.putFile(`${keyOf(o.path)}/${f}`, path.join(out(o.name), f));
  return plan;
}
