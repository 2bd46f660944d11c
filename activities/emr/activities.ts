/**
 * EMR steps as Temporal activities: add (idempotent by step name), describe, cancel, logs.
 * A step runs only on a cluster tagged as the run's tenant's, and only code from the tenant's
 * lake (or its allowed locations). Scripts (SQL, inline HiveQL, job files of a folder lake)
 * are uploaded to `emrScriptsUri` before the step is added; step logs are read from the
 * cluster's LogUri.
 */
import type { StepConfig } from '@aws-sdk/client-emr';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { z } from 'zod';
import {
  EmrStepTask,
  jobName,
  parseJobTask,
  type ExternalJobInput,
  type JobRef,
  type JobStatus,
  type JobLogs,
} from '../../schemas/external.js';
import { blockedSparkConf } from '../../schemas/spark-policy.js';
import { engineJobActivities, type JobLedgerDeps } from '../core/job.js';
import { jobDeps, jobFileLocator, type JobFile, type JobFileDeps } from '../core/job-files.js';
import { hiveFunctionStatements, resolveLibraries, sparkFunctionStatements, withFunctions } from '../core/libraries.js';
import { NonRetryableError, errorMessage } from '../../schemas/errors.js';
import { openStore, toS3Uri, type ObjectStore, type S3Config } from '../s3/client.js';
import { catalogAccessFor, type CatalogDeps } from '../iceberg/job-catalog.js';
import { jobOutputs, SPARK_CATALOG_TOKEN_CONF } from '../iceberg/audit.js';
import { EmrError, STEP_TERMINAL, type EmrJobsClient } from './client.js';

export interface EmrDeps extends JobFileDeps, JobLedgerDeps, CatalogDeps {
  emr?: EmrJobsClient;
  /** s3://bucket/prefix where scripts are uploaded before a step is added (STRATA_EMR_SCRIPTS_URI). */
  emrScriptsUri?: string;
  /** S3 settings for EMR's buckets (scripts, step logs); else the lake's `s3`. */
  emrS3?: S3Config;
  s3?: S3Config;
}

/** Inline SQL longer than this goes to S3 (EMR caps a step's arguments around 10 KB). */
export const EMR_INLINE_SQL_MAX = 10 * 1024;
/** How much of a step's stderr (or stdout) the task output keeps. */
export const LOG_TAIL_LINES = 60;
export const LOG_TAIL_BYTES = 8 * 1024;
/** Larger log objects are not downloaded; the output points at them instead. */
const LOG_READ_MAX = 32 * 1024 * 1024;

function classify(e: unknown): never {
  if (e instanceof EmrError && !e.retryable) throw new NonRetryableError(e.message, e.type);
  throw e;
}

/**
 * Runs presto-cli on a script in S3: presto-cli reads only local files (`--file`), so the
 * step copies the script to a temp file on the primary node first. $1 is the script URI,
 * the rest are the task's extra arguments.
 */
export const PRESTO_FROM_S3 =
  'set -e; f=$(mktemp --suffix=.sql); trap \'rm -f "$f"\' EXIT; aws s3 cp --quiet "$1" "$f"; shift; presto-cli --file "$f" "$@"';

/**
 * Runs a Spark command with the run's catalog credential read from S3 on the primary node:
 * a step's arguments are shown by DescribeStep and ListSteps, written to the step's controller
 * log and to CloudTrail, so the credential is never one of them. $1 is the credential's S3 URI,
 * $2 the command (spark-submit or spark-sql), the rest its arguments; the credential goes in
 * as `--conf spark.sql.catalog.strata.token=…` (Spark redacts settings named like a token).
 */
export const CATALOG_TOKEN_FROM_S3 = `set -e; t=$(aws s3 cp --quiet "$1" -); [ -n "$t" ] || { echo "strata: no catalog credential at $1" >&2; exit 1; }; shift; c=$1; shift; exec "$c" --conf "${SPARK_CATALOG_TOKEN_CONF}=$t" "$@"`;

/**
 * The command-runner.jar arguments for a task: spark-sql/hive/presto for sql, spark-submit
 * for pyspark. `script` is the S3 URI the task's SQL (or local file) was uploaded to; without
 * it SQL is passed inline.
 */
export function stepArgs(
  task: Partial<EmrStepTask> & { kind: string },
  script?: string,
  deps: StepDeps = {},
): string[] {
  const args = commandArgs(task, script, deps);
  return deps.catalogToken ? ['bash', '-c', CATALOG_TOKEN_FROM_S3, 'strata-catalog', deps.catalogToken, ...args] : args;
}

function commandArgs(task: Partial<EmrStepTask> & { kind: string }, script: string | undefined, deps: StepDeps) {
  const extra = task.args ?? [];
  const catalog = Object.entries(deps.conf ?? {}).flatMap(([k, v]) => ['--conf', `${k}=${v}`]);
  if (task.kind === 'pyspark') {
    const conf = [...Object.entries(task.sparkConf ?? {}).flatMap(([k, v]) => ['--conf', `${k}=${v}`]), ...catalog];
    const dep = (
      [
        ['--py-files', deps.pyFiles],
        ['--jars', deps.jars],
        ['--files', deps.files],
      ] as const
    ).flatMap(([opt, l]) => (l?.length ? [opt, l.join(',')] : []));
    return ['spark-submit', '--deploy-mode', 'cluster', ...conf, ...dep, script ?? String(task.file), ...extra];
  }
  if (task.kind === 'hive') {
    if (script) return ['hive', '-f', script, ...extra];
    return task.script ? ['hive', '-f', String(task.script), ...extra] : ['hive', '-e', String(task.query), ...extra];
  }
  const dialect = task.dialect ?? 'spark';
  if (dialect === 'hive') return script ? ['hive', '-f', script, ...extra] : ['hive', '-e', String(task.sql), ...extra];
  if (dialect === 'presto')
    return script
      ? ['bash', '-c', PRESTO_FROM_S3, 'strata-presto', script, ...extra]
      : ['presto-cli', '--execute', String(task.sql), ...extra];
  const jars = [...(deps.jars?.length ? ['--jars', deps.jars.join(',')] : []), ...catalog];
  return script
    ? ['spark-sql', ...jars, '-f', script, ...extra]
    : ['spark-sql', ...jars, '-e', String(task.sql), ...extra];
}

/** A pyspark step's dependencies, as S3 URIs. */
export interface StepDeps {
  /** Strata's Iceberg catalog settings for a task with outputs (`--conf`, after the task's own), without the credential. */
  conf?: Record<string, string>;
  /** The S3 URI of the run's catalog credential, read by the step itself (CATALOG_TOKEN_FROM_S3). */
  catalogToken?: string;
  pyFiles?: string[];
  jars?: string[];
  files?: string[];
}

/** The cluster a task names itself (`clusterId`), when it names one. */
const EmrClusterField = z.object({ id: z.string(), clusterId: z.string().optional() });

/** An EMR job's step id: a reference without one was not made by emrSubmit. */
function stepIdOf(ref: JobRef): string {
  if (!ref.id) throw new NonRetryableError(`EMR job ${ref.name} on ${ref.scope} has no step id`, 'TaskError');
  return ref.id;
}

/** The S3 URI a library JAR was uploaded to (each was, before its functions are registered). */
function uploadedJar(uris: Map<string, string>, uri: string): string {
  const u = uris.get(uri);
  if (u === undefined) throw new Error(`library JAR ${uri} was not uploaded before its functions were registered`);
  return u;
}

/** A path segment safe as part of an S3 key: no "..", no characters that need escaping. */
const keySegment = (s: string) => {
  const clean = s.replace(/[^A-Za-z0-9._=-]+/g, '_');
  return /^\.*$/.test(clean) ? clean.replace(/\./g, '_') || '_' : clean;
};

/** A run's folder under the scripts URI: its workflow id (pipeline/{tenant}/…), segment by segment. */
const runFolder = (workflowId: string) => workflowId.split('/').filter(Boolean).map(keySegment).join('/') || '_';

/** Where a task's script goes under the scripts URI: {workflowId}/{taskId}-{sha256 prefix}{ext}. */
export function scriptKey(workflowId: string, taskId: string, content: Uint8Array, ext: string): string {
  const sha = createHash('sha256').update(content).digest('hex').slice(0, 16);
  return `${runFolder(workflowId)}/${keySegment(taskId)}-${sha}${ext}`;
}

/**
 * Where a task's catalog credential is kept for its step: {workflowId}/{taskId}.catalog-token,
 * in the run's folder like its scripts (so under the tenant's prefix, which a cluster's role can
 * be limited to). A retried submit overwrites it; the poll that sees the step end deletes it.
 */
export const catalogTokenKey = (workflowId: string, taskId: string) =>
  `${runFolder(workflowId)}/${keySegment(taskId)}.catalog-token`;

/** The tag that says which tenant an EMR cluster belongs to (Strata sets it on the clusters it starts). */
export const TENANT_TAG = 'strata:tenant';

/** The last lines (at most LOG_TAIL_LINES / LOG_TAIL_BYTES) of a log. */
export function logTail(text: string): string {
  let t = text.replace(/\s+$/, '');
  if (Buffer.byteLength(t) > LOG_TAIL_BYTES)
    t = Buffer.from(t)
      .subarray(-LOG_TAIL_BYTES)
      .toString('utf8')
      .replace(/^[^\n]*\n/, '');
  return t.split('\n').slice(-LOG_TAIL_LINES).join('\n');
}

const gunzipMaybe = (b: Buffer) =>
  b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b, { maxOutputLength: 4 * LOG_READ_MAX }) : b;

export function createEmrActivities(deps: EmrDeps) {
  const client = () => {
    if (!deps.emr)
      throw new NonRetryableError(
        'this worker has no EMR client: configure AWS region and credentials to use engine emr',
        'ConfigError',
      );
    return deps.emr;
  };
  // One store (and S3 client) per root: the scripts folder and each cluster's LogUri.
  const stores = new Map<string, ObjectStore>();
  const storeAt = (root: string) => {
    const s3 = deps.emrS3 ?? deps.s3;
    if (!s3) return undefined;
    let st = stores.get(root);
    if (!st) stores.set(root, (st = openStore(root, s3)));
    return st;
  };

  const scriptsStore = (what: string) => {
    if (!deps.emrScriptsUri)
      throw new NonRetryableError(
        `STRATA_EMR_SCRIPTS_URI is not set, so ${what} cannot be uploaded: set it to s3://bucket/prefix`,
        'ConfigError',
      );
    const root = toS3Uri(deps.emrScriptsUri);
    if (!root)
      throw new NonRetryableError(
        `STRATA_EMR_SCRIPTS_URI "${deps.emrScriptsUri}" is not an S3 URI: write s3://bucket/prefix`,
        'ConfigError',
      );
    const store = storeAt(root);
    if (!store)
      throw new NonRetryableError(
        `STRATA_EMR_SCRIPTS_URI is set but the worker has no S3 settings to upload ${what} with: set AWS_REGION (or STRATA_S3_*)`,
        'ConfigError',
      );
    return store;
  };

  /** The task's SQL (or inline HiveQL) uploaded to the scripts bucket; undefined to run it inline. */
  async function uploadSql(input: ExternalJobInput): Promise<string | undefined> {
    const t = parseJobTask(EmrStepTask, input.task);
    const content = Buffer.from(String(t.kind === 'sql' ? t.sql : t.query), 'utf8');
    if (!deps.emrScriptsUri) {
      if (content.byteLength <= EMR_INLINE_SQL_MAX) return undefined;
      throw new NonRetryableError(
        `task ${t.id}: its SQL is ${content.byteLength} bytes, too long to pass inline as an EMR step argument (limit ${EMR_INLINE_SQL_MAX}): set STRATA_EMR_SCRIPTS_URI (s3://bucket/prefix) on the worker so scripts are uploaded to S3`,
        'ConfigError',
      );
    }
    // Same content, same key: a retried submit rewrites the same object.
    const store = scriptsStore('sql');
    const key = scriptKey(input.run.workflowId, t.id, content, '.sql');
    await store.putBytes(key, content);
    return store.uri(key);
  }

  /**
   * The S3 URI EMR reads a job file at: an object on S3 as it is; a file in a folder lake (or
   * an allowed folder) uploaded to the scripts bucket first. `keep` keeps the file's name (a
   * dependency is imported or opened by it).
   */
  async function emrUri(input: ExternalJobInput, f: JobFile, field: string, keep: boolean): Promise<string> {
    if (f.uri.startsWith('s3://')) return f.uri;
    const id = input.task.id;
    if (!deps.emrScriptsUri)
      throw new NonRetryableError(
        `task ${id}: ${field} ${f.uri} is a file on the worker; EMR cannot read it: set STRATA_EMR_SCRIPTS_URI (s3://bucket/prefix) to upload it, or keep the file in a lake on S3`,
        'ConfigError',
      );
    const store = scriptsStore(f.uri);
    let content: Buffer;
    try {
      content = await f.store.getBytes(f.key);
    } catch (e) {
      throw new NonRetryableError(`task ${id}: cannot read ${field} ${f.uri}: ${errorMessage(e)}`, 'ConfigError');
    }
    const base = f.key.slice(f.key.lastIndexOf('/') + 1);
    const key = keep
      ? scriptKey(input.run.workflowId, id, content, '').replace(/$/, `/${keySegment(base)}`)
      : scriptKey(input.run.workflowId, id, content, path.extname(base) || '.py');
    await store.putBytes(key, content);
    return store.uri(key);
  }

  /**
   * Deletes a job's catalog credential object (`ref.secret`, its key under the scripts URI), if
   * it has one. Best effort: a poll does not fail on it, and the audit revokes the credential
   * either way.
   */
  async function dropCatalogToken(ref: JobRef): Promise<void> {
    if (!ref.secret) return;
    const root = deps.emrScriptsUri ? toS3Uri(deps.emrScriptsUri) : undefined;
    const store = root ? storeAt(root) : undefined;
    await store?.delete([ref.secret]).catch(() => undefined);
  }

  /** The cluster must be the run's tenant's: tagged strata:tenant={tenant}. */
  async function checkClusterTenant(clusterId: string, tenant: string, taskId: string) {
    let tags: { Key?: string; Value?: string }[];
    try {
      tags = (await client().describeCluster(clusterId)).Tags ?? [];
    } catch (e) {
      return classify(e);
    }
    const owner = tags.find((t) => t.Key === TENANT_TAG)?.Value;
    if (owner === tenant) return;
    if (owner === undefined)
      throw new NonRetryableError(
        `task ${taskId}: EMR cluster ${clusterId} has no ${TENANT_TAG} tag, so Strata cannot tell whose it is: the platform operator must tag it ${TENANT_TAG}=${tenant} before tenant ${tenant}'s tasks run on it (or use a managed "cluster: NAME")`,
        'ClusterNotOwned',
      );
    throw new NonRetryableError(
      `task ${taskId}: EMR cluster ${clusterId} belongs to another tenant: use a cluster tagged ${TENANT_TAG}=${tenant}, or a managed "cluster: NAME"`,
      'ClusterNotOwned',
    );
  }

  const ledger = { engine: 'emr', db: deps.db } as const;
  return engineJobActivities(ledger, {
    async emrSubmit(input: ExternalJobInput & { cluster?: { providerId?: string } }): Promise<JobRef> {
      const { task, run } = input;
      const clusterId = input.cluster?.providerId ?? parseJobTask(EmrClusterField, task).clusterId;
      if (!clusterId)
        throw new NonRetryableError(`task ${task.id} has no EMR cluster: set "clusterId" or "cluster"`, 'ConfigError');
      // Checked before anything is uploaded or added: settings, where the code comes from, whose cluster it is.
      const blocked = blockedSparkConf(task.sparkConf, 'emr');
      if (blocked.length)
        throw new NonRetryableError(
          `task ${task.id} is refused: ${blocked.map(([, m]) => m).join('; ')}`,
          'PolicyViolation',
        );
      // Objects on S3 are handed to EMR by URI, never read here: EMR's S3 settings do when the lake has none.
      const resolve = jobFileLocator({ lake: deps.lake, s3: deps.s3 ?? deps.emrS3 }, run.tenant, task.id);
      const fileField =
        task.kind === 'pyspark' ? 'file' : task.kind === 'hive' && task.script !== undefined ? 'script' : undefined;
      const main = fileField ? { field: fileField, file: resolve(String(task[fileField]), fileField) } : undefined;
      const depFiles = jobDeps(task, resolve);
      await checkClusterTenant(clusterId, run.tenant, task.id);
      const name = jobName(run.workflowId, task.id, 200);
      // UDF libraries: JARs by their S3 URI (--jars, or ADD JAR for Hive), functions registered ahead of the SQL.
      const libs = await resolveLibraries(deps, run.tenant, task, resolve);
      const libJars = await Promise.all(libs.jars.map((f) => emrUri(input, f, 'libraries', true)));
      const libPy = await Promise.all(libs.pyFiles.map((f) => emrUri(input, f, 'libraries', true)));
      const jarUri = new Map(libs.jars.map((f, i) => [f.uri, libJars[i]]));
      const hive = task.kind === 'hive' || (task.kind === 'sql' && task.dialect === 'hive');
      const job = withFunctions(
        task,
        libs,
        hive ? hiveFunctionStatements(libs, (f) => uploadedJar(jarUri, f.uri)) : sparkFunctionStatements(libs),
      );
      const jobInput = { ...input, task: job };
      const script = main ? await emrUri(input, main.file, main.field, false) : await uploadSql(jobInput);
      const stepDeps: StepDeps = {};
      for (const k of ['pyFiles', 'jars', 'files'] as const) {
        const list = depFiles[k];
        if (list) stepDeps[k] = await Promise.all(list.map((f, i) => emrUri(input, f, `${k}[${i}]`, true)));
      }
      if (!hive && libJars.length) stepDeps.jars = [...(stepDeps.jars ?? []), ...libJars];
      if (libPy.length) stepDeps.pyFiles = [...(stepDeps.pyFiles ?? []), ...libPy];
      if (Array.isArray(task.outputs) && task.outputs.length && (hive || task.dialect === 'presto'))
        throw new NonRetryableError(
          `task ${task.id} declares outputs, which Spark commits through Strata's Iceberg catalog: run it as pyspark or sql with dialect spark`,
          'ConfigError',
        );
      // Declared outputs: the step commits through Strata's catalog with a credential scoped to this
      // run, which it reads from the scripts bucket (never one of its arguments).
      const tokenStore = jobOutputs(task).length
        ? scriptsStore(`task ${task.id}'s catalog credential (it declares outputs)`)
        : undefined;
      const access = tokenStore && (await catalogAccessFor(deps, input));
      let secret: string | undefined;
      if (access) {
        secret = catalogTokenKey(input.run.workflowId, task.id);
        await tokenStore.putBytes(secret, access.token);
        stepDeps.conf = access.conf;
        stepDeps.catalogToken = tokenStore.uri(secret);
      }
      const step: StepConfig = {
        Name: name,
        ActionOnFailure: 'CONTINUE',
        HadoopJarStep: { Jar: 'command-runner.jar', Args: stepArgs(parseJobTask(EmrStepTask, job), script, stepDeps) },
      };
      try {
        const { stepId, adopted } = await client().addStepOnce(clusterId, step);
        return { engine: 'emr', name, scope: clusterId, id: stepId, adopted, ...(secret ? { secret } : {}) };
      } catch (e) {
        return classify(e);
      }
    },

    async emrPoll(ref: JobRef): Promise<JobStatus> {
      try {
        const step = await client().describeStep(ref.scope, stepIdOf(ref));
        const s = step.Status ?? {};
        const state = s.State ?? 'PENDING';
        // The step has ended: its catalog credential leaves the bucket (the audit revokes it next).
        if (STEP_TERMINAL.includes(state)) await dropCatalogToken(ref);
        const fd = s.FailureDetails;
        const message = fd
          ? [fd.Reason, fd.Message].filter(Boolean).join(': ') + (fd.LogFile ? ` (log: ${fd.LogFile})` : '')
          : s.StateChangeReason?.Message;
        return {
          state,
          terminal: STEP_TERMINAL.includes(state),
          succeeded: state === 'COMPLETED',
          message: message || undefined,
          facts: { stepId: ref.id, clusterId: ref.scope, ...(fd?.LogFile ? { logFile: fd.LogFile } : {}) },
        };
      } catch (e) {
        return classify(e);
      }
    },

    /**
     * The step's stderr (else stdout) tail from {LogUri}/{clusterId}/steps/{stepId}/. EMR
     * uploads these gzipped, minutes after the step ends: missing or unreadable logs give a
     * note, never an error.
     */
    async emrLogs(ref: JobRef): Promise<JobLogs> {
      let logUri: string | undefined;
      try {
        logUri = (await client().describeCluster(ref.scope)).LogUri;
      } catch (e) {
        return { facts: { logNote: `step logs not read: ${errorMessage(e)}` } };
      }
      if (!logUri) return { facts: { logNote: `cluster ${ref.scope} has no LogUri: EMR keeps no step logs in S3` } };
      const stepLogs = `${logUri.replace(/\/?$/, '/')}${ref.scope}/steps/${ref.id}/`;
      const root = toS3Uri(logUri);
      const store = root ? storeAt(root) : undefined;
      if (!store)
        return {
          facts: {
            stepLogs,
            logNote: root ? 'this worker has no S3 settings to read step logs with' : `LogUri ${logUri} is not on S3`,
          },
        };
      try {
        const folder = `${ref.scope}/steps/${ref.id}/`;
        const objects = await store.list(folder);
        const byName = new Map(objects.map((o) => [o.key.slice(folder.length), o]));
        const logFiles = [...byName.keys()].sort();
        const read = async (base: string): Promise<string | undefined> => {
          const o = byName.get(`${base}.gz`) ?? byName.get(base);
          if (!o) return undefined;
          if (o.size > LOG_READ_MAX)
            return `[${o.key.slice(folder.length)} is ${o.size} bytes; read it at ${stepLogs}]`;
          return gunzipMaybe(await store.getBytes(o.key)).toString('utf8');
        };
        const stderr = await read('stderr');
        const text = stderr?.trim() ? stderr : await read('stdout');
        const facts: Record<string, unknown> = { stepLogs, logFiles };
        if (stderr === undefined && !byName.has('stdout') && !byName.has('stdout.gz'))
          facts.logNote = `no stderr/stdout under ${stepLogs} yet: EMR uploads step logs a few minutes after the step ends`;
        return { facts, ...(text?.trim() ? { logTail: logTail(text) } : {}) };
      } catch (e) {
        return { facts: { stepLogs, logNote: `step logs not read: ${errorMessage(e)}` } };
      }
    },

    async emrCancel(ref: JobRef): Promise<{ result: string }> {
      try {
        const r = await client().cancelStep(ref.scope, stepIdOf(ref));
        await dropCatalogToken(ref);
        return { result: `${r?.Status ?? 'unknown'}${r?.Reason ? `: ${r.Reason}` : ''}` };
      } catch (e) {
        return classify(e);
      }
    },
  });
}
