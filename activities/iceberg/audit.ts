/**
 * Write-audit-publish for external jobs (Spark on Kubernetes, EMR): before the job, a
 * credential scoped to the run that commits through Strata's catalog onto the run's audit
 * branch; after it, the audit: find the snapshot the job staged on each declared output,
 * run the output's checks on it (DuckDB in the tenant's sandbox), record the dataset version
 * (lineage: the tables the job loaded through the catalog), and publish it — a guarded move
 * of `main` from the snapshot the branch forked from — or keep it staged as rejected.
 * Temporal-free: the adapter is activities/iceberg/activities.ts.
 */
import { errorMessage, NonRetryableError } from '../../schemas/errors.js';
import { isLayer, parseDatasetName, type Check, type DatasetId, type DatasetVersionRef } from '../../schemas/lake.js';
import { JobOutput } from '../../schemas/external.js';
import type { RunContext } from '../../schemas/run.js';
import { datasetKey, type DatasetVersion, type Producer } from '../../store/catalog.js';
import { AuditStore, auditBranch, type TableIdent } from '../../store/iceberg-audit.js';
import { IcebergStore } from '../../store/iceberg.js';
import { describeSelect } from '../sql/duckdb.js';
import { quoteLiteral } from '../sql/quote.js';
import {
  attachCheckRefs,
  datasetPrefix,
  localFile,
  openDuck,
  runChecks,
  withLineage,
  type LakeDeps,
} from '../lake/engine.js';
import { MetadataError, tableMetadata, tableMetadataOrUndefined, type TableMetadata } from './metadata.js';
import { icebergIdent, keyOf, snapshotFiles, writeMetadata } from './writer.js';
import { publishBranch, refHead, rejectBranch } from './wap.js';
import path from 'node:path';
import { rm } from 'node:fs/promises';

export interface OutputDecl {
  id: DatasetId;
  checks: Check[];
  failingRowsLimit: number;
}

/** A task's declared outputs (`outputs:`), parsed again on the worker. */
export function jobOutputs(task: { id: string; outputs?: unknown }): OutputDecl[] {
  if (task.outputs === undefined) return [];
  const parsed = JobOutput.array().safeParse(task.outputs);
  if (!parsed.success)
    throw new NonRetryableError(
      `task ${task.id}: outputs: ${parsed.error.issues.map((i) => i.message).join('; ')}`,
      'TaskError',
    );
  return parsed.data.map((o) => {
    const d = typeof o === 'string' ? { dataset: o, namespace: 'default', checks: [], failingRowsLimit: 20 } : o;
    const n = parseDatasetName(d.dataset);
    if (!n)
      throw new NonRetryableError(
        `task ${task.id}: outputs: ${d.dataset} is not a dataset: write layer.name (e.g. gold.orders)`,
        'TaskError',
      );
    return {
      id: { layer: n.layer, name: n.name, namespace: d.namespace },
      checks: d.checks,
      failingRowsLimit: d.failingRowsLimit,
    };
  });
}

/** What a job is told so that it commits through Strata (Spark's Iceberg REST catalog settings). */
export interface CatalogAccess {
  uri: string;
  warehouse: string;
  token: string;
  branch: string;
}

/**
 * Mints the run's catalog credential for a task with outputs (undefined without outputs).
 * It lives `ttlMs` (the task's timeout and a margin) and is revoked by the audit.
 */
export async function issueCatalogAccess(
  lake: LakeDeps,
  o: { uri?: string; run: RunContext; task: { id: string; outputs?: unknown }; ttlMs: number },
): Promise<CatalogAccess | undefined> {
  const outputs = jobOutputs(o.task);
  if (!outputs.length) return undefined;
  if (!o.uri)
    throw new NonRetryableError(
      `task ${o.task.id} declares outputs, which its job commits through Strata's Iceberg catalog, but this worker does not know the catalog's address: set STRATA_ICEBERG_URI (e.g. https://strata.example.com/iceberg)`,
      'ConfigError',
    );
  const cat = new IcebergStore(lake.catalog.db);
  const idents = outputs.map((x) => icebergIdent(x.id));
  for (const i of idents) await cat.ensureNamespace(o.run.tenant, i.namespace);
  const branch = auditBranch(o.run.workflowId, o.task.id);
  const token = await new AuditStore(lake.catalog.db).issue({
    tenant: o.run.tenant,
    workflowId: o.run.workflowId,
    runId: o.run.runId,
    pipelineId: o.run.pipelineId,
    taskId: o.task.id,
    branch,
    outputs: idents,
    expiresAt: new Date(Date.now() + o.ttlMs),
  });
  return { uri: o.uri.replace(/\/+$/, ''), warehouse: o.run.tenant, token, branch };
}

/** The Spark setting that holds the run credential (`token` of Iceberg's REST catalog `strata`). */
export const SPARK_CATALOG_TOKEN_CONF = 'spark.sql.catalog.strata.token';

/**
 * Spark settings for Iceberg's REST catalog `strata` (the default catalog, so `silver.orders`
 * names the table), without the run credential: no engine gets it among settings that others
 * read (Spark on Kubernetes: from a Secret, activities/spark-k8s/manifest.ts; EMR: from S3,
 * activities/emr/activities.ts).
 */
export function sparkCatalogConf(a: CatalogAccess, outputs: OutputDecl[]): Record<string, string> {
  return {
    'spark.sql.extensions': 'org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions',
    'spark.sql.catalog.strata': 'org.apache.iceberg.spark.SparkCatalog',
    'spark.sql.catalog.strata.type': 'rest',
    'spark.sql.catalog.strata.uri': a.uri,
    'spark.sql.catalog.strata.warehouse': a.warehouse,
    'spark.sql.catalog.strata.header.X-Iceberg-Access-Delegation': 'vended-credentials',
    'spark.sql.defaultCatalog': 'strata',
    'spark.strata.outputs': JSON.stringify(outputs.map((x) => datasetKey(x.id))),
  };
}

export interface AuditOutcome {
  versions: DatasetVersion[];
}

/**
 * Audits and publishes (or rejects) what the job staged on every declared output. A retry
 * finds versions already recorded and returns them. Fails QualityGateFailed when an error
 * check failed (the snapshot stays staged, rejected, with its failing rows in the catalog),
 * PublishConflict when `main` moved during the audit, NoOutput when the job committed nothing.
 */
export async function auditOutputs(
  lake: LakeDeps,
  o: { run: RunContext; task: { id: string; outputs?: unknown }; scratch: string },
): Promise<AuditOutcome> {
  const outputs = jobOutputs(o.task);
  const producer: Producer & { workflowId: string } = {
    tenant: o.run.tenant,
    runId: o.run.workflowId,
    pipelineId: o.run.pipelineId,
    taskId: o.task.id,
    workflowId: o.run.workflowId,
  };
  const audits = new AuditStore(lake.catalog.db);
  // From here on the job commits nothing more: what it staged is what is audited.
  await audits.revoke(o.run.tenant, o.run.workflowId, o.task.id);
  const branch = auditBranch(o.run.workflowId, o.task.id);
  const r = await withLineage(lake, producer, async () => {
    const versions: DatasetVersion[] = [];
    const inputs = new Map<string, DatasetVersion>();
    for (const out of outputs) {
      const v = await auditOne(lake, producer, out, branch, o.scratch, inputs);
      versions.push(v);
    }
    return { outputs: versions, inputs: [...inputs.values()] };
  });
  failRejected(r.outputs, branch);
  return { versions: r.outputs };
}

/** Fails QualityGateFailed, naming every failing error check, when a version was rejected (its snapshot kept on `branch`). */
export function failRejected(versions: DatasetVersion[], branch: string): void {
  const blocked = versions.filter((v) => v.status === 'rejected');
  if (blocked.length)
    throw new NonRetryableError(
      `quality gate failed, snapshot kept staged on ${branch} and not published: ${blocked
        .flatMap((v) =>
          v.checks
            .filter((c) => !c.passed && c.severity === 'error')
            .map((c) => `${datasetKey(v)}@${v.version} ${c.name}: ${c.message}`),
        )
        .join('; ')}`,
      'QualityGateFailed',
    );
}

async function auditOne(
  lake: LakeDeps,
  producer: Producer,
  out: OutputDecl,
  branch: string,
  scratch: string,
  inputs: Map<string, DatasetVersion>,
): Promise<DatasetVersion> {
  const done = await lake.catalog.findCommit(producer, out.id);
  if (done) return done;
  const tenant = producer.tenant;
  const staged = await stagedOn(lake, tenant, icebergIdent(out.id), branch);
  if (!staged)
    throw new NonRetryableError(
      `task ${producer.taskId} declared output ${datasetKey(out.id)}, but its job committed no snapshot to it through Strata's catalog (nothing on ${branch}): write the table through the catalog "strata" the job was given`,
      'NoOutput',
    );
  // The job's inputs: the tables its credential loaded, at the snapshot main was then (a dataset version when Strata wrote it).
  for (const read of await new AuditStore(lake.catalog.db).reads(tenant, branch)) {
    const v = await versionOfSnapshot(lake, tenant, read);
    if (v) inputs.set(`${datasetKey(v)}@${v.version}`, v);
  }
  return auditStaged(lake, producer, {
    out,
    branch,
    staged,
    scratch,
    inputs: [...inputs.values()],
    location: `${datasetPrefix(out.id)}/data`,
  });
}

/** A snapshot staged on an audit branch: the table's metadata, the branch's head, and `main` when it forked. */
export interface StagedSnapshot {
  meta: TableMetadata;
  snapshotId: string;
  base: string | null;
}

/** What is staged on `branch` of a table (its head and audit row), or undefined when nothing is. */
export async function stagedOn(
  lake: LakeDeps,
  tenant: string,
  table: TableIdent,
  branch: string,
): Promise<StagedSnapshot | undefined> {
  const row = await new IcebergStore(lake.catalog.db).table(tenant, table.namespace, table.name);
  const meta = tableMetadataOrUndefined(row?.metadata);
  const snapshotId = meta && refHead(meta, branch);
  const audit = await new AuditStore(lake.catalog.db).audit(tenant, table, branch);
  return meta && snapshotId && audit ? { meta, snapshotId, base: audit.baseSnapshotId } : undefined;
}

/**
 * The audit proper, the same for every engine that stages a snapshot on an audit branch:
 * runs the output's checks (DuckDB, in the sandbox) over exactly the staged snapshot's data
 * files, then records the dataset version and, in the same transaction, publishes the
 * snapshot (a guarded move of `main` from `staged.base`: PublishConflict when it moved) or
 * keeps it on its branch as rejected. `location` is the version's data folder (a key).
 */
export async function auditStaged(
  lake: LakeDeps,
  producer: Producer,
  o: {
    out: OutputDecl;
    branch: string;
    staged: StagedSnapshot;
    scratch: string;
    inputs: DatasetVersion[];
    location: string;
  },
): Promise<DatasetVersion> {
  const { out, branch, scratch } = o;
  const { meta, snapshotId: staged, base } = o.staged;
  const tenant = producer.tenant;
  const ident = icebergIdent(out.id);
  const table: TableIdent = ident;
  const label = datasetKey(out.id);
  let uris: string[];
  try {
    const snap = meta.snapshots.find((s) => String(s['snapshot-id']) === staged);
    if (!snap) throw new Error(`${branch} points at snapshot ${staged}, which the table's metadata does not hold`);
    uris = await snapshotFiles(lake.store, meta, snap['snapshot-id']);
  } catch (e) {
    throw new NonRetryableError(
      `the snapshot staged on ${branch} for ${label} cannot be audited: ${errorMessage(e)}`,
      'AuditError',
    );
  }
  const keys = uris.map((u) => {
    try {
      return keyOf(lake.store, u);
    } catch {
      throw new NonRetryableError(
        `the snapshot staged on ${branch} for ${label} holds ${u}, outside the tenant's warehouse: it is not published`,
        'AuditError',
      );
    }
  });
  const duck = await openDuck();
  try {
    const files = await Promise.all(keys.map((k) => localFile(lake, k)));
    const refs = await attachCheckRefs(duck.conn, lake, tenant, out.id.namespace, out.checks);
    await duck.lock({ files: [...files, ...refs.files], scratch: path.join(scratch, 'audit') });
    if (!files.length)
      throw new NonRetryableError(
        `the snapshot staged on ${branch} for ${label} holds no data file: nothing to audit`,
        'AuditError',
      );
    await duck.conn.run(
      `CREATE OR REPLACE TEMP VIEW __out AS SELECT * FROM read_parquet([${files.map(quoteLiteral).join(', ')}], union_by_name = true)`,
    );
    const desc = await describeSelect(duck.conn, `SELECT * FROM __out`);
    const rowCount = Number((await duck.conn.runAndReadAll('SELECT count(*) FROM __out')).getRows()[0][0]);
    const sizes = await Promise.all(keys.map(async (k) => (await lake.store.head(k))?.size ?? 0));
    const checks = await runChecks(lake, {
      conn: duck.conn,
      id: out.id,
      producer,
      select: '',
      attemptTag: branch,
      inputs: [],
      checks: out.checks,
      refs,
      failingRowsLimit: out.failingRowsLimit,
    });
    const promote = checks.every((c) => c.passed || c.severity === 'warn');
    const inputRefs: DatasetVersionRef[] = o.inputs.map((v) => ({
      layer: v.layer,
      namespace: v.namespace,
      name: v.name,
      version: v.version,
    }));
    const store = lake.store;
    try {
      const [v] = await lake.catalog.commit(
        producer,
        [
          {
            id: out.id,
            location: o.location,
            files: keys,
            schema: desc,
            rowCount,
            bytes: sizes.reduce((a, b) => a + b, 0),
            inputs: inputRefs,
            checks,
            promote,
          },
        ],
        undefined,
        // The publish (or the rejection) moves the table in the same transaction as the version row.
        async (t, version) => {
          const cat = new IcebergStore(t);
          const locked = await cat.table(tenant, ident.namespace, ident.name, true);
          if (!locked) throw new NonRetryableError(`table ${label} was dropped during the audit`, 'AuditError');
          const m = tableMetadata(locked.metadata);
          if (refHead(m, branch) !== staged)
            throw new NonRetryableError(
              `${branch} of ${label} moved during the audit (the job was still committing)`,
              'AuditError',
            );
          const now = Date.now();
          let next = promote
            ? publishBranch(m, {
                branch,
                base,
                snapshotId: staged,
                version: version.version,
                now,
              })
            : rejectBranch(m, staged, version.version);
          next = {
            ...next,
            properties: { ...next.properties, 'strata.dataset': `${out.id.layer}.${out.id.namespace}.${out.id.name}` },
            'last-updated-ms': now,
            'metadata-log': [
              ...m['metadata-log'],
              { 'timestamp-ms': m['last-updated-ms'], 'metadata-file': locked.metadataLocation },
            ],
          };
          const location = await writeMetadata(store, keyOf(store, next.location), next);
          if (!(await cat.swap(tenant, ident.namespace, ident.name, locked.metadataLocation, location, next)))
            throw new Error(`table ${label} moved while locked`);
          await new AuditStore(t).finish(tenant, table, branch, {
            status: promote ? 'published' : 'rejected',
            snapshotId: staged,
            version: version.version,
            message: promote
              ? null
              : checks
                  .filter((c) => !c.passed && c.severity === 'error')
                  .map((c) => c.name)
                  .join(', '),
          });
        },
      );
      return v;
    } catch (e) {
      if (e instanceof MetadataError && e.kind === 'conflict') {
        await new AuditStore(lake.catalog.db).finish(tenant, table, branch, {
          status: 'conflict',
          snapshotId: staged,
          message: e.message,
        });
        throw new NonRetryableError(e.message, 'PublishConflict');
      }
      throw e;
    }
  } finally {
    await duck.close();
    await rm(path.join(scratch, 'audit'), { recursive: true, force: true });
  }
}

/** The dataset version a snapshot is (its `strata.version`), when Strata recorded one. */
async function versionOfSnapshot(
  lake: LakeDeps,
  tenant: string,
  read: TableIdent & { snapshotId: string },
): Promise<DatasetVersion | undefined> {
  const row = await new IcebergStore(lake.catalog.db).table(tenant, read.namespace, read.name);
  const m = tableMetadataOrUndefined(row?.metadata);
  const snap = m?.snapshots.find((s) => String(s['snapshot-id']) === read.snapshotId);
  const version = Number(snap?.summary['strata.version']);
  const ds = m?.properties['strata.dataset']?.split('.');
  if (!Number.isInteger(version) || !ds || ds.length !== 3) return undefined;
  if (!isLayer(ds[0])) return undefined;
  const id: DatasetId = { layer: ds[0], namespace: ds[1], name: ds[2] };
  return lake.catalog.version(tenant, id, version);
}
