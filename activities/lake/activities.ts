/**
 * Temporal adapters for the lake: dataset-writing SQL, file and table ingestion. Each
 * first asks the catalog whether this run's task already committed (a retry after a
 * crash between commit and completion), and returns that version instead of writing again.
 */
import { registerMacros } from '../sql/macros.js';
import { Context } from '@temporalio/activity';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { DatasetId, Layer } from '../../schemas/lake.js';
import { parseDatasetName } from '../../schemas/lake.js';
import type { TaskActivityInput, TaskOutput } from '../../schemas/run.js';
import type { DatasetVersion, Producer } from '../../store/catalog.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { IngestFileTask, IngestTableTask, SqlTask, parseTask } from '../../schemas/kinds.js';
import { taskActivity } from '../core/task.js';
import { landingFiles, splitSql, sqlType, stageRaw } from '../ingest/file.js';
import { extractTable } from '../ingest/table.js';
import { resolveConnection, type Connections } from '../sql/connections.js';
import { duckdbFailure } from '../sql/duckdb.js';
import { quoteLiteral } from '../sql/quote.js';
import { oneSelectColumns } from '../sql/sandbox.js';
import { forTenant } from './open.js';
import {
  attachCheckRefs,
  attachInputs,
  commitVersions,
  localFile,
  openDuck,
  outputFile,
  versionOutput,
  versionRef,
  withLineage,
  writeVersion,
  type LakeDeps,
} from './engine.js';

export function attemptTag(): string {
  const info = Context.current().info;
  return `${info.workflowExecution?.runId ?? 'run'}-${info.activityId}-a${info.attempt}`;
}

function producerOf(input: TaskActivityInput): Producer & { workflowId: string } {
  return {
    tenant: input.run.tenant,
    runId: input.run.workflowId,
    pipelineId: input.run.pipelineId,
    taskId: input.task.id,
    workflowId: input.run.workflowId,
  };
}

function outputId(task: TaskActivityInput['task'], field = 'output'): DatasetId {
  const o = parseDatasetName(String(task[field]));
  if (!o)
    throw new NonRetryableError(
      `${field} "${String(task[field])}" is not a dataset name: write layer.name`,
      'ConfigError',
    );
  return { layer: o.layer, name: o.name, namespace: typeof task.namespace === 'string' ? task.namespace : 'default' };
}

/** True when a sql task belongs to the lake engine: it writes or reads datasets. */
export function isLakeSql(task: TaskActivityInput['task']): boolean {
  return (
    (task.engine ?? 'duckdb') === 'duckdb' &&
    (!!task.layer || (typeof task.output === 'string' && !!parseDatasetName(task.output)))
  );
}

export async function runLakeSql(
  platform: LakeDeps,
  input: TaskActivityInput,
  signal: AbortSignal,
  macros: { name: string; version: string; sql: string }[] = [],
): Promise<TaskOutput> {
  const entered = performance.now();
  const { task } = input;
  const deps = forTenant(platform, input.run.tenant);
  const producer = producerOf(input);
  const id = outputId(task);
  const done = await deps.catalog.findCommit(producer, id);
  if (done) {
    if (done.status === 'rejected')
      throw new NonRetryableError(
        `quality gate failed earlier for ${id.layer}.${id.name}@${done.version}`,
        'QualityGateFailed',
      );
    return versionOutput(done, deps.store);
  }
  const duck = await openDuck();
  const onAbort = () => duck.conn.interrupt();
  signal.addEventListener('abort', onAbort, { once: true });
  const tag = attemptTag();
  try {
    const started = performance.now();
    let timings: Record<string, number> = {};
    const r = await withLineage(deps, producer, async () => {
      const t0 = performance.now();
      const { sql, inputs, files } = await attachInputs(
        duck.conn,
        deps,
        producer.tenant,
        id.namespace,
        String(task.sql),
      );
      const ta = performance.now();
      const { checks, failingRowsLimit, partitionBy } = parseTask(SqlTask, task);
      const refs = await attachCheckRefs(duck.conn, deps, producer.tenant, id.namespace, checks);
      const tr = performance.now();
      // From here on the SQL reaches exactly the versions it names and the attempt's output.
      await duck.lock({
        files: [...files, ...refs.files, outputFile(deps, id, tag).local],
        dirs: [outputFile(deps, id, tag).partsDir],
        scratch: scratchDir(deps, tag),
      });
      // Macro libraries are registered inside the locked sandbox: their bodies reach only this grant.
      if (macros.length) await registerMacros(duck.conn, macros);
      const tl = performance.now();
      // One bind serves the one-statement check and the columns the version is planned with.
      const columns = await oneSelectColumns(duck.conn, sql, `the SQL of a task writing ${id.layer}.${id.name}`);
      const t1 = performance.now();
      const w = await writeVersion(deps, {
        conn: duck.conn,
        id,
        producer,
        select: sql,
        columns,
        attemptTag: tag,
        inputs: inputs.map(versionRef),
        checks,
        refs,
        failingRowsLimit,
        partitionBy,
      });
      const t2 = performance.now();
      const [v] = await commitVersions(deps, producer, [{ ...w, inputs: inputs.map(versionRef) }]);
      timings = {
        // Before the body: the idempotency lookup and taking a DuckDB instance.
        pre: Math.round(started - entered),
        inputs: Math.round(t1 - t0),
        attach: Math.round(ta - t0),
        refs: Math.round(tr - ta),
        lock: Math.round(tl - tr),
        bind: Math.round(t1 - tl),
        ...w.timings,
        commit: Math.round(performance.now() - t2),
      };
      return { outputs: [v], inputs };
    });
    return {
      ...versionOutput(r.outputs[0], deps.store),
      timings: { ...timings, total: Math.round(performance.now() - started) },
    };
  } catch (e) {
    throw duckdbFailure(e);
  } finally {
    signal.removeEventListener('abort', onAbort);
    // Closed off the path to the next task (see Duck.retire); the task's SQL has ended either way.
    duck.retire(() => rm(scratchDir(deps, tag), { recursive: true, force: true }));
  }
}

/** The attempt's private scratch folder (DuckDB temp spill, staged landing files). */
export function scratchDir(deps: LakeDeps, tag: string): string {
  return path.join(deps.cacheDir, 'scratch', tag);
}

export function createLakeActivities(deps: { lake?: LakeDeps; connections: Connections }) {
  const need = (input: TaskActivityInput): LakeDeps => {
    if (!deps.lake)
      throw new NonRetryableError(
        'this worker has no lake catalog configured (metastore): start it with the lake enabled',
        'ConfigError',
      );
    return forTenant(deps.lake, input.run.tenant);
  };
  return {
    ingestFile: taskActivity(async (input) => {
      const lake = need(input);
      const { task } = input;
      const producer = producerOf(input);
      const id = outputId(task);
      const qid = task.quarantine ? outputId(task, 'quarantine') : { ...id, name: `${id.name}_quarantine` };
      const [done, qdone] = [await lake.catalog.findCommit(producer, id), await lake.catalog.findCommit(producer, qid)];
      if (done && qdone)
        return { ...versionOutput(done, lake.store), quarantined: qdone.rowCount, quarantineVersion: qdone.version };
      const t = parseTask(IngestFileTask, task);
      const columns = t.columns;
      for (const d of Object.values(columns)) sqlType(d);
      const keys = await landingFiles(lake.store, t.source);
      const duck = await openDuck();
      const tag = attemptTag();
      const scratch = scratchDir(lake, tag);
      try {
        const r = await withLineage(lake, producer, async () => {
          const locals = await Promise.all(keys.map((k) => localFile(lake, k, path.join(scratch, 'landing'))));
          const checks = t.checks;
          const refs = await attachCheckRefs(duck.conn, lake, producer.tenant, id.namespace, checks);
          await duck.lock({
            files: [...locals, ...refs.files, outputFile(lake, id, tag).local, outputFile(lake, qid, tag).local],
            dirs: [outputFile(lake, id, tag).partsDir, outputFile(lake, qid, tag).partsDir],
            scratch,
          });
          await stageRaw(duck.conn, locals, t.format, Object.keys(columns), t.csv);
          const { good, bad } = splitSql(columns, new Map(locals.map((l, i) => [l, keys[i]])));
          const w = await writeVersion(lake, {
            conn: duck.conn,
            id,
            producer,
            select: good,
            attemptTag: tag,
            inputs: [],
            checks,
            refs,
            partitionBy: t.partitionBy,
          });
          const q = await writeVersion(lake, {
            conn: duck.conn,
            id: qid,
            producer,
            select: bad,
            attemptTag: tag,
            inputs: [],
          });
          const [v, qv] = await commitVersions(lake, producer, [
            { ...w, inputs: [] },
            { ...q, inputs: [] },
          ]);
          return { outputs: [v, qv], inputs: [] };
        });
        const [v, qv] = r.outputs;
        return {
          ...versionOutput(v, lake.store),
          quarantined: qv.rowCount,
          quarantineVersion: qv.version,
          files: keys.length,
        };
      } finally {
        duck.retire(() => rm(scratch, { recursive: true, force: true }));
      }
    }),

    ingestTable: taskActivity(async (input, signal, heartbeat) => {
      const lake = need(input);
      const { task } = input;
      const producer = producerOf(input);
      const id = outputId(task);
      const done = await lake.catalog.findCommit(producer, id);
      if (done) return versionOutput(done, lake.store);
      const t = parseTask(IngestTableTask, task);
      const incremental = t.mode === 'incremental';
      const name = t.connection;
      const conn = resolveConnection(deps.connections, name, undefined, producer.tenant);
      const since = incremental
        ? await lake.catalog.watermark(producer.tenant, producer.pipelineId, producer.taskId)
        : undefined;
      const prev = incremental ? await lake.catalog.current(producer.tenant, id) : undefined;
      const tag = attemptTag();
      const file = path.join(scratchDir(lake, tag), 'extract.jsonl');
      const ex = await extractTable(conn, {
        table: t.table,
        query: t.query,
        cursor: t.cursor,
        since,
        batchSize: t.batchSize,
        file,
        signal,
        progress: (n) => heartbeat({ rows: n }),
      });
      if (incremental && ex.rows === 0 && prev)
        return { ...versionOutput(prev, lake.store), newRows: 0, watermark: since };
      const duck = await openDuck();
      try {
        const r = await withLineage(lake, producer, async () => {
          const checks = t.checks;
          const refs = await attachCheckRefs(duck.conn, lake, producer.tenant, id.namespace, checks);
          await duck.lock({
            files: [file, ...refs.files, outputFile(lake, id, tag).local],
            dirs: [outputFile(lake, id, tag).partsDir],
            scratch: scratchDir(lake, tag),
          });
          const cols = Object.entries(ex.columns)
            .map(([n, t]) => `${quoteLiteral(n)}: ${quoteLiteral(t)}`)
            .join(', ');
          const select = ex.rows
            ? `SELECT * FROM read_json(${quoteLiteral(file)}, format = 'newline_delimited', columns = {${cols}})`
            : `SELECT ${
                Object.entries(ex.columns)
                  .map(([n, t]) => `CAST(NULL AS ${t}) AS "${n}"`)
                  .join(', ') || '1 AS empty'
              } LIMIT 0`;
          const w = await writeVersion(lake, {
            conn: duck.conn,
            id,
            producer,
            select,
            attemptTag: tag,
            inputs: [],
            checks,
            refs,
            partitionBy: t.partitionBy,
          });
          // Incremental: the new version is the previous one plus this increment.
          const merged = prev
            ? {
                ...w,
                files: [...prev.files, ...w.files],
                iceberg: { ...w.iceberg, append: true },
                rowCount: prev.rowCount + w.rowCount,
                bytes: prev.bytes + w.bytes,
              }
            : w;
          const [v] = await commitVersions(
            lake,
            producer,
            [{ ...merged, inputs: [] }],
            incremental ? (ex.maxCursor ?? since) : undefined,
          );
          const inputs: DatasetVersion[] = [];
          return { outputs: [v], inputs };
        });
        return {
          ...versionOutput(r.outputs[0], lake.store),
          newRows: ex.rows,
          ...(incremental ? { watermark: ex.maxCursor ?? since } : {}),
        };
      } finally {
        duck.retire(() => rm(scratchDir(lake, tag), { recursive: true, force: true }));
      }
    }),
  };
}

export type { Layer };
