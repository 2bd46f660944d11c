/**
 * The UDF libraries a task pins, resolved when its job is submitted: each version read from
 * the metastore (the tenant's own; another tenant's does not exist for it), its file located
 * in the tenant's lake, and the statements that register the functions the task names.
 */
import { SparkConf, taskLibraryUses } from '../../schemas/external.js';
import { getLibraryVersion, libraryKey, type LibraryFunction, type LibraryVersion } from '../../store/libraries.js';
import type { JobFile, JobFileDeps } from './job-files.js';
import { NonRetryableError } from '../../schemas/errors.js';

export interface ResolvedLibraries {
  /** JAR libraries (for the classpath) and Python packages (for pyFiles), as located files. */
  jars: JobFile[];
  pyFiles: JobFile[];
  /** The functions the task registers, with the file (JAR) each comes from. */
  functions: { fn: LibraryFunction; library: LibraryVersion; file: JobFile }[];
}

export async function resolveLibraries(
  deps: JobFileDeps,
  tenant: string,
  task: Record<string, unknown> & { id: string },
  locate: (p: string, field: string) => JobFile,
): Promise<ResolvedLibraries> {
  const out: ResolvedLibraries = { jars: [], pyFiles: [], functions: [] };
  const uses = taskLibraryUses(task);
  if (!uses.length) return out;
  const db = deps.lake?.catalog.db;
  if (!db)
    throw new NonRetryableError(
      `task ${task.id} uses libraries, but this worker has no metastore: set DATABASE_URL and STRATA_LAKE_ROOT on the worker`,
      'ConfigError',
    );
  for (const [i, use] of uses.entries()) {
    const version = String(use.version);
    const v = await getLibraryVersion(db, tenant, use.name, version);
    if (!v)
      throw new NonRetryableError(
        `task ${task.id}: libraries[${i}]: no library "${use.name}" version "${version}" (deleted since the pipeline was registered?): upload it again or register a version of the pipeline that pins another`,
        'LibraryNotFound',
      );
    const file = locate(libraryKey(v.name, v.version, v.file), `libraries[${i}]`);
    (v.kind === 'jar' ? out.jars : out.pyFiles).push(file);
    for (const name of use.functions ?? []) {
      const fn = v.functions.find((f) => f.name === name);
      if (!fn)
        throw new NonRetryableError(
          `task ${task.id}: libraries[${i}]: library "${v.name}" ${v.version} declares no function "${name}"`,
          'LibraryNotFound',
        );
      out.functions.push({ fn, library: v, file });
    }
  }
  return out;
}

/** Spark SQL: the JARs are on the classpath already, so each function is a temporary function of its class. */
export function sparkFunctionStatements(r: ResolvedLibraries): string[] {
  return r.functions
    .filter((f) => f.library.kind === 'jar')
    .map((f) => `CREATE TEMPORARY FUNCTION ${f.fn.name} AS '${f.fn.class}'`);
}

/** Hive: each JAR added to the session, then each function created from its class in its JAR. */
export function hiveFunctionStatements(r: ResolvedLibraries, uri: (f: JobFile) => string): string[] {
  const jars = [...new Set(r.jars.map(uri))];
  return [
    ...jars.map((u) => `ADD JAR ${u}`),
    ...r.functions
      .filter((f) => f.library.kind === 'jar')
      .map((f) => `CREATE TEMPORARY FUNCTION ${f.fn.name} AS '${f.fn.class}' USING JAR '${uri(f.file)}'`),
  ];
}

/** PySpark functions from Python packages, for the runner to register with spark.udf.register. */
export function pythonFunctions(r: ResolvedLibraries): { name: string; function: string; returnType?: string }[] {
  return r.functions
    .filter((f) => f.library.kind === 'python')
    .map((f) => ({
      name: f.fn.name,
      function: f.fn.class,
      ...(f.fn.returnType ? { returnType: f.fn.returnType } : {}),
    }));
}

/** Statements ahead of a script, each ending in ";" on its own line. */
export const prependStatements = (stmts: string[], sql: string) =>
  stmts.length ? `${stmts.map((s) => `${s};`).join('\n')}\n${sql}` : sql;

/** The Spark settings a pyspark job reads its functions from (set by Strata, never by the spec). */
export const SPARK_FUNCTIONS_CONF = 'spark.strata.functions';
export const SPARK_PY_FUNCTIONS_CONF = 'spark.strata.pythonFunctions';

/**
 * The task as its job runs it, with its functions registered first: a SQL task's script
 * starts with the CREATE TEMPORARY FUNCTION statements; a pyspark job gets them (and its
 * Python functions) as Spark settings its code registers from. Spec values of those
 * settings are dropped: only Strata sets them.
 */
export function withFunctions<T extends Record<string, unknown>>(
  task: T,
  libs: ResolvedLibraries,
  statements = sparkFunctionStatements(libs),
): T {
  const conf = { ...SparkConf.parse(task.sparkConf ?? {}) };
  delete conf[SPARK_FUNCTIONS_CONF];
  delete conf[SPARK_PY_FUNCTIONS_CONF];
  const out: Record<string, unknown> = {};
  if (task.sparkConf !== undefined || libs.functions.length) out.sparkConf = conf;
  if (task.kind === 'sql') {
    if (statements.length) out.sql = prependStatements(statements, String(task.sql));
  } else if (task.kind === 'hive') {
    if (statements.length && task.query !== undefined)
      out.query = prependStatements(statements, typeof task.query === 'string' ? task.query : '');
  } else if (task.kind === 'pyspark') {
    if (statements.length) conf[SPARK_FUNCTIONS_CONF] = JSON.stringify(statements);
    const py = pythonFunctions(libs);
    if (py.length) conf[SPARK_PY_FUNCTIONS_CONF] = JSON.stringify(py);
  }
  return Object.assign({ ...task }, out);
}
