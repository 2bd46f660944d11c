/**
 * The `strata` command. It speaks to Temporal directly with the same RunsService the
 * HTTP API uses, so a run started here is the same as one started over HTTP.
 */
import { Client, Connection } from '@temporalio/client';
import { Command, InvalidArgumentError } from 'commander';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { KeyBody } from '../schemas/api.js';
import { openDb } from '../store/db.js';
import { createKey, listKeys, revokeKey } from '../store/keys.js';
import { migrate } from '../store/migrate.js';
import { ReconciliationsService } from '../client/reconciliations.js';
import { RequestError } from '../schemas/errors.js';
import { RunsService } from '../client/runs.js';
import { DatasetsService, parseDatasetRef } from '../client/datasets.js';
import { icebergIdent } from '../activities/iceberg/writer.js';
import { IcebergStore } from '../store/iceberg.js';
import type { MaintenanceOperation } from '../schemas/maintenance.js';
import { loadConfig } from '../schemas/config.js';
import { parseReconcileInput } from '../schemas/reconcile.js';
import { parseSpecText } from '../schemas/spec-file.js';
import { resolveParams, type PipelineSpec } from '../schemas/pipeline.js';
import { followRun, formatState } from './progress.js';
import { dataConverterFrom } from '../client/data-converter.js';
import { withTenant } from '../client/tenant-scope.js';

const program = new Command('strata').description('Data pipelines as durable Temporal workflows').showHelpAfterError();

function keyValue(v: string, acc: Record<string, string>) {
  const i = v.indexOf('=');
  const name = v.slice(0, i);
  if (i <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new InvalidArgumentError(
      `write --param NAME=VALUE, NAME being letters, digits and "_" (got "${v.slice(0, 80)}")`,
    );
  if (Object.hasOwn(acc, name)) throw new InvalidArgumentError(`--param ${name} is given twice: give it once`);
  // Defined, not assigned: a name like "__proto__" stays a plain key (and resolveParams refuses it).
  Object.defineProperty(acc, name, { value: v.slice(i + 1), enumerable: true, writable: true, configurable: true });
  return acc;
}

async function loadSpec(file: string): Promise<PipelineSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new RequestError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const r = parseSpecText(text);
  if (!r.ok) {
    throw new RequestError(
      `${file} is not a valid pipeline spec (${r.problems.length} problem${r.problems.length > 1 ? 's' : ''}):\n${r.problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`,
    );
  }
  return r.spec;
}

async function service(): Promise<{
  client: Client;
  runs: RunsService;
  reconciliations: ReconciliationsService;
  close: () => Promise<void>;
}> {
  const config = loadConfig();
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS, connectTimeout: 5000 }).catch(
    (e: Error) => {
      throw new RequestError(
        `cannot reach Temporal at ${config.TEMPORAL_ADDRESS} (${e.message}): start the stack with "npm start" or set TEMPORAL_ADDRESS`,
      );
    },
  );
  const client = new Client({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    dataConverter: dataConverterFrom(config),
  });
  const runs = new RunsService(client, {
    taskQueue: config.STRATA_TASK_QUEUE,
    namespace: config.TEMPORAL_NAMESPACE,
    uiUrl: config.TEMPORAL_UI_URL,
  });
  return {
    client,
    runs,
    reconciliations: new ReconciliationsService(client, config.STRATA_TASK_QUEUE),
    close: () => connection.close(),
  };
}

async function withService<T>(fn: (runs: RunsService) => Promise<T>): Promise<T> {
  const s = await service();
  try {
    return await fn(s.runs);
  } finally {
    await s.close();
  }
}

program
  .command('validate')
  .argument('<spec>', 'pipeline spec (YAML)')
  .description('check a spec and list every problem with its path')
  .action(async (file: string) => {
    const spec = await loadSpec(file);
    console.log(`${file}: valid pipeline "${spec.id}" with ${spec.tasks.length} task(s)`);
  });

program
  .command('run')
  .argument('<spec>', 'pipeline spec (YAML)')
  .option('-p, --param <name=value>', 'a param value (repeatable)', keyValue, {})
  .option('--only <tasks>', 'run only these tasks (comma-separated)')
  .option('--with-upstream', 'with --only: also run their upstream tasks', false)
  .option('--logical-date <date>', 'the run’s logical date (ISO)')
  .option('--tenant <tenant>', 'tenant that owns the run')
  .option('-f, --follow', 'show live per-task progress until the run ends', false)
  .description('start a pipeline run')
  .action(
    async (
      file: string,
      o: {
        param: Record<string, string>;
        only?: string;
        withUpstream: boolean;
        logicalDate?: string;
        tenant?: string;
        follow: boolean;
      },
    ) => {
      const spec = await loadSpec(file);
      const config = loadConfig();
      // Param values are checked against their declared types before anything starts.
      const checked = resolveParams(spec, o.param);
      if (checked.problems.length)
        throw new RequestError(`${file}: ${checked.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
      await withService(async (runs) => {
        const h = await runs.start({
          spec,
          tenant: o.tenant ?? config.STRATA_TENANT,
          trigger: 'manual',
          params: o.param,
          only: o.only
            ?.split(',')
            .map((s) => s.trim())
            .filter(Boolean),
          withUpstream: o.withUpstream,
          logicalDate: o.logicalDate,
        });
        console.log(`started ${h.runId}\n  ${h.uiUrl}`);
        if (o.follow) process.exitCode = exitCodeFor(await followRun(runs, h.runId));
      });
    },
  );

program
  .command('status')
  .argument('<run>', 'run id (the workflow id)')
  .description('show a run’s per-task state')
  .action(async (runId: string) => {
    await withService(async (runs) => console.log(formatState(await runs.state(runId))));
  });

program
  .command('logs')
  .argument('<run>', 'run id')
  .argument('<task>', 'task id')
  .option('--no-follow', 'print what is there now instead of following a running driver')
  .option('--tail <lines>', 'only the last N lines', (v) => Number(v))
  .description('print a task’s log: a Spark driver’s log (followed while it runs) or the tail its engine left')
  .action(async (runId: string, taskId: string, o: { follow: boolean; tail?: number }) => {
    await withService(async (runs) => {
      const { taskLog } = await import('../client/task-logs.js');
      const { sparkClientFromEnv } = await import('../activities/spark-k8s/client.js');
      const log = await taskLog({ runs }, sparkClientFromEnv(), await runs.state(runId), taskId, {
        follow: o.follow,
        tailLines: o.tail,
      });
      if (typeof log.body === 'string') process.stdout.write(log.body);
      // The driver log is a byte stream (a PassThrough without an encoding yields Buffers).
      else for await (const chunk of log.body as AsyncIterable<Buffer>) process.stdout.write(chunk);
    });
  });

program
  .command('cancel')
  .argument('<run>', 'run id')
  .description('cancel a running run; its running tasks are stopped')
  .action(async (runId: string) => {
    await withService(async (runs) => {
      await runs.cancel(runId);
      console.log(`cancel requested for ${runId}`);
    });
  });

program
  .command('repair')
  .argument('<run>', 'run id of an ended run')
  .option('-f, --follow', 'follow the new run', false)
  .description('start a new run that re-runs only the failed and not-run tasks')
  .action(async (runId: string, o: { follow: boolean }) => {
    await withService(async (runs) => {
      const h = await runs.repair(runId);
      console.log(`started repair ${h.runId}\n  ${h.uiUrl}`);
      if (o.follow) process.exitCode = exitCodeFor(await followRun(runs, h.runId));
    });
  });

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

program
  .command('reconcile')
  .argument(
    '<left>',
    'left input: a lake path, an s3:// or file:// URI (CSV or Parquet), a dataset (silver.orders@3), or CONNECTION:TABLE with --connection',
  )
  .argument('<right>', 'right dataset')
  .option('--key <columns>', 'key columns (comma-separated); none = compare whole rows')
  .option('--columns <columns>', 'compare only these columns')
  .option('--ignore <columns>', 'do not compare these columns')
  .option('--tolerance <n>', 'numbers within this absolute difference are equal', Number)
  .option('--trim', 'ignore leading and trailing white space')
  .option('--case-insensitive', 'compare text case-insensitively')
  .option('--null-values <values>', 'values that count as null (comma-separated; default: empty)')
  .option('--delimiter <c>', 'CSV delimiter for both sides')
  .option('--connection', 'inputs written CONNECTION:TABLE are tables on your Postgres/MySQL connections')
  .option('--json', 'print the whole result as JSON')
  .description('compare two datasets exactly and say what differs')
  .action(async (left: string, right: string, o: Record<string, string | boolean | number | undefined>) => {
    const s = await service();
    try {
      const config = loadConfig();
      const csv = o.delimiter ? { csv: { delimiter: String(o.delimiter) } } : {};
      const options = {
        ...(o.key ? { key: list(String(o.key)) } : {}),
        ...(o.columns ? { columns: list(String(o.columns)) } : {}),
        ...(o.ignore ? { ignore: list(String(o.ignore)) } : {}),
        ...(o.tolerance !== undefined ? { tolerance: Number(o.tolerance) } : {}),
        ...(o.trim ? { trim: true } : {}),
        ...(o.caseInsensitive ? { caseInsensitive: true } : {}),
        ...(o.nullValues !== undefined ? { nullValues: String(o.nullValues).split(',') } : {}),
      };
      const input = (v: string) => {
        const m = /^([A-Za-z0-9_]+):([A-Za-z_][\w.]*)$/.exec(v);
        if (o.connection && m) return { connection: m[1], table: m[2] };
        const p = parseReconcileInput(v);
        return p.success && 'dataset' in p.data ? v : { uri: v, ...csv };
      };
      const { id } = await s.reconciliations.start(config.STRATA_TENANT, {
        left: input(left),
        right: input(right),
        options,
      });
      console.error(`started ${id}`);
      let last = '';
      for (;;) {
        const st = await s.reconciliations.get(id);
        if (st.status === 'running') {
          const p = st.progress;
          const line = p
            ? `${p.phase}: ${p.rows.toLocaleString('en')} rows${p.partitions ? `, partitions ${p.partitionsDone ?? 0}/${p.partitions}` : ''}`
            : 'starting';
          if (line !== last) console.error(`  ${line}`);
          last = line;
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        if (st.status !== 'completed') throw new RequestError(`reconciliation ${st.status}: ${st.error ?? ''}`, 500);
        const r = st.result as {
          method: string;
          reason: string;
          counts: Record<string, number>;
          columnMismatches: Record<string, number>;
          differences: number;
          duplicates: { left: { keys: number }; right: { keys: number } };
        };
        if (o.json) console.log(JSON.stringify(r, null, 2));
        else {
          console.log(`method: ${r.method} (${r.reason})`);
          console.log(
            Object.entries(r.counts)
              .map(([k, v]) => `${k}: ${v}`)
              .join('  '),
          );
          if (Object.keys(r.columnMismatches).length)
            console.log(
              `column mismatches: ${Object.entries(r.columnMismatches)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')}`,
            );
          if (r.duplicates.left.keys || r.duplicates.right.keys)
            console.log(`duplicate keys: left ${r.duplicates.left.keys}, right ${r.duplicates.right.keys}`);
          console.log(r.differences ? `${r.differences} differences` : 'identical');
        }
        process.exitCode = r.differences ? 1 : 0;
        return;
      }
    } finally {
      await s.close();
    }
  });

program
  .command('migrate')
  .description('apply metastore migrations (DATABASE_URL, or the embedded one under STRATA_DATA_DIR)')
  .action(async () => {
    const db = await openMetastoreRaw();
    try {
      const applied = await migrate(db);
      console.log(applied.length ? `applied migrations ${applied.join(', ')}` : 'metastore is up to date');
    } finally {
      await db.close();
    }
  });

const keys = program.command('keys').description('API keys (the secret is shown once, at creation)');
keys
  .command('create')
  .requiredOption('--tenant <tenant>', 'tenant the key belongs to')
  .option('--role <role>', 'admin, operator or viewer', 'viewer')
  .option('--name <name>', 'a label')
  .action(async (o: { tenant: string; role: string; name?: string }) => {
    const parsed = KeyBody.safeParse({ tenant: o.tenant, role: o.role, name: o.name });
    if (!parsed.success)
      throw new RequestError(parsed.error.issues.map((i) => `--${String(i.path[0])}: ${i.message}`).join('; '));
    const db = await openMetastoreRaw(true);
    try {
      const k = await createKey(db, o.tenant, parsed.data.role, o.name);
      console.log(`${k.id}\t${o.tenant}\t${parsed.data.role}\n${k.secret}`);
      console.error('Store the secret now: only its hash is kept.');
    } finally {
      await db.close();
    }
  });
keys
  .command('list')
  .requiredOption('--tenant <tenant>')
  .action(async (o: { tenant: string }) => {
    const db = await openMetastoreRaw(true);
    try {
      for (const k of await listKeys(db, o.tenant))
        console.log(`${k.id}\t${k.role}\t${k.name ?? ''}\t${k.revoked_at ? 'revoked' : 'active'}`);
    } finally {
      await db.close();
    }
  });
keys
  .command('revoke')
  .argument('<id>')
  .requiredOption('--tenant <tenant>')
  .action(async (id: string, o: { tenant: string }) => {
    const db = await openMetastoreRaw(true);
    try {
      if (!(await revokeKey(db, o.tenant, id)))
        throw new RequestError(`no active key ${id} in tenant ${o.tenant}`, 404);
      console.log(`revoked ${id}`);
    } finally {
      await db.close();
    }
  });

async function openMetastoreRaw(migrated = false) {
  const config = loadConfig();
  const db = await openDb({
    url: config.DATABASE_URL,
    dataDir: config.DATABASE_URL ? undefined : path.resolve(config.STRATA_DATA_DIR, 'metastore'),
  });
  if (migrated) await migrate(db);
  return db;
}

// ---- datasets: the lake catalog (metastore: DATABASE_URL, else the embedded one in STRATA_DATA_DIR)
async function withDatasets<T>(fn: (svc: DatasetsService, tenant: string) => Promise<T>, tenant?: string): Promise<T> {
  const config = loadConfig();
  const { lakeFromConfig } = await import('../activities/lake/from-config.js');
  const lake = await lakeFromConfig(config);
  try {
    return await fn(new DatasetsService(lake.lake), tenant ?? config.STRATA_TENANT);
  } finally {
    await lake.close();
  }
}

const fmtBytes = (n: number) =>
  n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
const table = (rows: string[][]) => {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(w[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
};
const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`write a whole number (got "${v}")`);
  return n;
};

const datasets = program.command('datasets').description('the lake catalog: datasets, versions, lineage, retention');

datasets
  .command('list')
  .option('--layer <layer>', 'bronze, silver or gold')
  .option('--namespace <ns>', 'only this namespace')
  .option('--tenant <tenant>', 'tenant (default STRATA_TENANT)')
  .option('--json', 'print JSON', false)
  .description('list datasets with their current version')
  .action(async (o: { layer?: string; namespace?: string; tenant?: string; json: boolean }) => {
    await withDatasets(async (svc, tenant) => {
      const list = await svc.list(tenant, o);
      if (o.json) return console.log(JSON.stringify(list, null, 2));
      if (!list.length) return console.log('no datasets yet');
      console.log(
        table([
          ['DATASET', 'VERSION', 'ROWS', 'SIZE', 'UPDATED', 'PRODUCED BY'],
          ...list.map((d) => [
            d.dataset,
            String(d.version),
            String(d.rowCount),
            fmtBytes(d.bytes),
            d.updatedAt,
            `${d.producedBy.pipelineId}.${d.producedBy.taskId}`,
          ]),
        ]),
      );
    }, o.tenant);
  });

datasets
  .command('show')
  .argument('<dataset>', 'layer.name, e.g. silver.orders')
  .option('--tenant <tenant>', 'tenant (default STRATA_TENANT)')
  .option('--preview <rows>', 'also print the first rows', positiveInt)
  .option('--lineage <depth>', 'also print lineage up to this depth', positiveInt)
  .option('--json', 'print JSON', false)
  .description('a dataset: schema, checks of the current version, lineage, preview')
  .action(async (ref: string, o: { tenant?: string; preview?: number; lineage?: number; json: boolean }) => {
    await withDatasets(async (svc, tenant) => {
      const d = await svc.get(tenant, ref);
      const lineage = o.lineage ? await svc.lineage(tenant, ref, o.lineage) : undefined;
      const preview = o.preview ? await svc.preview(tenant, ref, o.preview) : undefined;
      if (o.json) return console.log(JSON.stringify({ ...d, lineage, preview }, null, 2));
      const cur = d.versions.find((v) => v.current);
      console.log(
        `${d.dataset}  ${cur ? `v${cur.version}, ${cur.rowCount} rows` : 'no current version'}${d.location ? `\n  ${d.location}` : ''}`,
      );
      console.log('\nschema:');
      for (const c of d.schema) console.log(`  ${c.name}  ${c.type}${c.nullable === false ? ' NOT NULL' : ''}`);
      if (d.checks.length) {
        console.log('\nchecks:');
        for (const c of d.checks)
          console.log(`  ${c.passed ? 'pass' : c.severity === 'warn' ? 'WARN' : 'FAIL'}  ${c.name}: ${c.message}`);
      }
      if (lineage) {
        console.log(`\nlineage (depth ${lineage.depth}):`);
        for (const e of lineage.edges) console.log(`  ${e.from} -> ${e.to}`);
      }
      if (preview) {
        console.log(`\npreview (v${preview.version}):`);
        console.log(table([preview.columns, ...preview.rows.map((r) => preview.columns.map((c) => cellText(r[c])))]));
      }
    }, o.tenant);
  });

datasets
  .command('history')
  .argument('<dataset>', 'layer.name, e.g. silver.orders')
  .option('--tenant <tenant>', 'tenant (default STRATA_TENANT)')
  .option('--json', 'print JSON', false)
  .description('every version: status, rows, checks, schema changes, producing run')
  .action(async (ref: string, o: { tenant?: string; json: boolean }) => {
    await withDatasets(async (svc, tenant) => {
      const vs = await svc.versions(tenant, ref);
      if (o.json) return console.log(JSON.stringify(vs, null, 2));
      console.log(
        table([
          ['VERSION', 'STATUS', 'ROWS', 'CREATED', 'CHECKS', 'SCHEMA CHANGES', 'RUN'],
          ...vs.map((v) => [
            `${v.version}${v.current ? '*' : ''}`,
            v.status,
            String(v.rowCount),
            v.createdAt,
            v.checks.length ? `${v.checks.filter((c) => c.passed).length}/${v.checks.length} passed` : '-',
            v.schemaChanges
              .map((c) => `${c.change === 'added' ? '+' : c.change === 'removed' ? '-' : '~'}${c.column}`)
              .join(' ') || '-',
            `${v.runId} ${v.taskId}`,
          ]),
        ]),
      );
    }, o.tenant);
  });

datasets
  .command('vacuum')
  .requiredOption(
    '--older-than <days>',
    'expire snapshots replaced more than this many days ago, and orphan files as old (the current version is always kept)',
    positiveInt,
  )
  .option('--dataset <dataset>', 'only this dataset')
  .option('--dry-run', 'only say what would be deleted', false)
  .option('--tenant <tenant>', 'tenant (default STRATA_TENANT)')
  .description('deprecated: table maintenance now runs on every table by itself (see "strata tables")')
  .action(async (o: { olderThan: number; dataset?: string; dryRun: boolean; tenant?: string }) => {
    console.error(
      'strata: "datasets vacuum" is deprecated: every table is maintained by itself now (policy: "strata tables policy", ' +
        'at once: "strata tables maintain"); this runs snapshot expiry and orphan removal with --older-than as their age',
    );
    await withDatasets(async (svc, tenant) => {
      const r = await svc.vacuum(tenant, { olderThanDays: o.olderThan, dataset: o.dataset, dryRun: o.dryRun });
      for (const v of r.versions) console.log(`${r.dryRun ? 'would remove' : 'removed'} ${v.dataset}@${v.version}`);
      for (const s of r.skipped) console.log(`skipped ${s}`);
      console.log(
        `${r.dryRun ? 'would delete' : 'deleted'} ${r.versions.length} version(s), ${r.filesDeleted} file(s)`,
      );
    }, o.tenant);
  });

// ---- tables: Iceberg table maintenance and migration
const tables = program
  .command('tables')
  .description('Iceberg tables: maintenance policy, maintenance now, migration of pre-Iceberg datasets');

/** `silver.orders`, `silver.ns.orders` (a dataset) or `ns.name` / `a.b.name` (any table of the catalog). */
function tableArg(ref: string): { namespace: string[]; name: string } {
  const ds = /^(bronze|silver|gold)\./.test(ref) ? parseDatasetRef(ref) : undefined;
  if (ds?.at) throw new InvalidArgumentError(`a table, not a version: drop "@${ds.at}"`);
  if (ds) return icebergIdent(ds.id);
  const parts = ref.split('.');
  if (parts.length < 2 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p)))
    throw new InvalidArgumentError(`"${ref}" is not a table: write layer.name (e.g. silver.orders) or namespace.name`);
  return { namespace: parts.slice(0, -1), name: parts[parts.length - 1] };
}

tables
  .command('policy')
  .argument('<table>', 'layer.name (e.g. silver.orders) or namespace.name')
  .option('--max-snapshot-age <duration>', 'keep snapshots this long after they stopped being current (e.g. 120h, 7d)')
  .option('--min-snapshots <n>', 'always keep this many snapshots of each branch')
  .option('--target-file-size <size>', 'compaction writes files of about this size (e.g. 512MiB)')
  .option('--min-input-files <n>', 'compact a partition once it has this many small files')
  .option('--orphan-older-than <duration>', 'remove unreferenced files once this old (e.g. 3d)')
  .option(
    '--audit-branch-age <duration>',
    "remove write-audit-publish's audit branches once their snapshot is this old (e.g. 120h); never one in progress",
  )
  .option('--enabled <bool>', 'false: leave the table out of the scheduled maintenance')
  .option('--tenant <tenant>', 'tenant (default STRATA_TENANT)')
  .description("print a table's maintenance policy; with options, change it (as Iceberg table properties)")
  .action(
    async (
      ref: string,
      o: {
        maxSnapshotAge?: string;
        minSnapshots?: string;
        targetFileSize?: string;
        minInputFiles?: string;
        orphanOlderThan?: string;
        auditBranchAge?: string;
        enabled?: string;
        tenant?: string;
      },
    ) => {
      const { policyUpdates, policyOf } = await import('../activities/iceberg/policy.js');
      const { setTableProperties } = await import('../activities/iceberg/maintenance.js');
      const t = tableArg(ref);
      const { updates, problems } = policyUpdates(o);
      if (problems.length) throw new RequestError(problems.join('; '));
      await withLake(async (lake, tenant) => {
        const { forTenant } = await import('../activities/lake/open.js');
        const scoped = forTenant(lake, tenant);
        const deps = { db: lake.catalog.db, store: scoped.store, cacheDir: scoped.cacheDir };
        const row = await new IcebergStore(lake.catalog.db).table(tenant, t.namespace, t.name);
        if (!row) throw new RequestError(`no table ${ref} in tenant ${tenant}'s warehouse`);
        const props = Object.keys(updates).length
          ? await setTableProperties(deps, { tenant, ...t }, updates, Date.now())
          : (row.metadata as { properties?: Record<string, string> }).properties;
        const { policy, problems: bad } = policyOf(props);
        for (const [k, v] of Object.entries(policy)) console.log(`${k.padEnd(20)} ${String(v)}`);
        for (const b of bad) console.log(`warning: ${b}`);
      }, o.tenant);
    },
  );

tables
  .command('maintain')
  .argument('<table>', 'layer.name (e.g. silver.orders) or namespace.name')
  .option('--only <operations>', 'some of compact,expire_snapshots,remove_orphans (default: all three)')
  .option('--dry-run', 'only say what would change', false)
  .option('--tenant <tenant>', 'tenant (default STRATA_TENANT)')
  .option('--json', 'print JSON', false)
  .description("run a table's maintenance now, as its tableMaintenance workflow (waits for one already running)")
  .action(async (ref: string, o: { only?: string; dryRun: boolean; tenant?: string; json: boolean }) => {
    const { MAINTENANCE_OPERATIONS } = await import('../schemas/maintenance.js');
    const { maintainTableNow } = await import('../client/table-maintenance.js');
    const ops = o.only?.split(',').map((x) => x.trim());
    for (const op of ops ?? [])
      if (!(MAINTENANCE_OPERATIONS as readonly string[]).includes(op))
        throw new InvalidArgumentError(`--only takes ${MAINTENANCE_OPERATIONS.join(', ')} (got "${op}")`);
    const config = loadConfig();
    const tenant = o.tenant ?? config.STRATA_TENANT;
    const s = await service();
    try {
      const r = await maintainTableNow(s.client, {
        taskQueue: config.STRATA_TASK_QUEUE,
        input: {
          tenant,
          ...tableArg(ref),
          operations: ops as MaintenanceOperation[] | undefined,
          dryRun: o.dryRun,
        },
      });
      if (o.json) return console.log(JSON.stringify(r, null, 2));
      console.log(`${r.workflowId}${r.joined ? ' (already running: waited for it)' : ''}`);
      if (r.skipped) console.log(`skipped: ${r.skipped}`);
      for (const [op, res] of Object.entries(r.results)) {
        const x = res as Record<string, string | number | string[] | undefined>;
        const facts =
          op === 'compact'
            ? `${String(x.rewritten)} small file(s) into ${String(x.written)}${x.version ? `, version ${String(x.version)}` : ''}`
            : op === 'expire_snapshots'
              ? `${(x.refsRemoved as unknown[] | undefined)?.length ?? 0} ref(s) removed, ${(x.expired as unknown[]).length} snapshot(s) expired, ${String(x.filesDeleted)} file(s) deleted`
              : `${String(x.filesDeleted)} orphan file(s) deleted, ${String(x.tooYoung)} too young`;
        console.log(`${op}: ${x.skipped ? `skipped (${String(x.skipped)})` : facts}${o.dryRun ? ' [dry run]' : ''}`);
      }
    } finally {
      await s.close();
    }
  });

tables
  .command('migrate')
  .option('--tenant <tenant>', 'only this tenant (default: every tenant)')
  .option('--dry-run', 'only say what would become snapshots', false)
  .description(
    'make every dataset an Iceberg table and each of its versions a snapshot (files stay where they are; safe to run again)',
  )
  .action(async (o: { tenant?: string; dryRun: boolean }) => {
    const { migrateDatasets } = await import('../activities/iceberg/migrate.js');
    const { forTenant } = await import('../activities/lake/open.js');
    await withLake(async (lake) => {
      const r = await migrateDatasets(
        { db: lake.catalog.db, storeFor: (t) => forTenant(lake, t).store, cacheDir: lake.cacheDir },
        { tenant: o.tenant, dryRun: o.dryRun },
      );
      let added = 0;
      for (const d of r.datasets) {
        added += d.added.length;
        const what = d.added.length
          ? `${r.dryRun ? 'would add' : 'added'} snapshot(s) for version(s) ${d.added.join(', ')}${d.created ? ' (new table)' : ''}`
          : 'up to date';
        const gone = d.vacuumed.length ? `; version(s) ${d.vacuumed.join(', ')} removed by retention earlier` : '';
        console.log(`${d.tenant} ${d.dataset}: ${what}${gone}`);
      }
      console.log(
        `${r.datasets.length} dataset(s), ${added} version(s) ${r.dryRun ? 'would become' : 'became'} Iceberg snapshots`,
      );
    }, o.tenant);
  });

/** The lake and its catalog (metastore: DATABASE_URL, else the embedded one), for admin commands. */
async function withLake<T>(
  fn: (lake: import('../activities/lake/engine.js').LakeDeps, tenant: string) => Promise<T>,
  tenant?: string,
): Promise<T> {
  const config = loadConfig();
  const { lakeFromConfig } = await import('../activities/lake/from-config.js');
  const lake = await lakeFromConfig(config);
  try {
    return await fn(lake.lake, tenant ?? config.STRATA_TENANT);
  } finally {
    await lake.close();
  }
}

program
  .command('ledger-setup')
  .argument('<connection>', 'a connection name (STRATA_CONN_<NAME> holds its URL)')
  .requiredOption(
    '--admin-url <url>',
    "an administrator of the same database, whose rights the connection's user lacks (used once, never stored)",
  )
  .description(
    "put the connection's exactly-once ledger out of tenant SQL's reach: a schema the connection's user cannot write, " +
      "changed only through two functions that demand the worker's ledger key (STRATA_LEDGER_KEY)",
  )
  .action(async (name: string, o: { adminUrl: string }) => {
    const { connectionsFromEnv } = await import('../activities/sql/connections.js');
    const { ledgerKeyFromEnv, ledgerSecret, setupMysqlLedger, setupPgLedger } =
      await import('../activities/sql/ledger.js');
    const conns = connectionsFromEnv();
    const c = Object.hasOwn(conns, name.toLowerCase()) ? conns[name.toLowerCase()] : undefined;
    if (!c) throw new InvalidArgumentError(`no connection "${name}": set STRATA_CONN_${name.toUpperCase()} first`);
    const key = ledgerKeyFromEnv();
    if (!key)
      throw new InvalidArgumentError(
        'set STRATA_LEDGER_KEY (a random secret of at least 32 characters; the worker needs the same)',
      );
    const secret = ledgerSecret(key, c.name);
    const user =
      c.engine === 'postgres'
        ? await setupPgLedger({ adminUrl: o.adminUrl, connectionUrl: c.url, secret })
        : await setupMysqlLedger({ adminUrl: o.adminUrl, connectionUrl: c.url, secret });
    console.log(
      `ledger of connection ${c.name} protected: ${user} may only call strata_ledger.claim/finish with the worker's key`,
    );
  });

program
  .command('lake-layout')
  .description(
    'move a lake written before tenant prefixes to {lake}/{tenant}/…: catalogued files to their tenant, everything else to --tenant (copy, verify, then delete; safe to run again)',
  )
  .option('--tenant <tenant>', 'owner of objects no catalog version references (default STRATA_TENANT)')
  .option('--dry-run', 'only say what would move', false)
  .action(async (o: { tenant?: string; dryRun: boolean }) => {
    const config = loadConfig();
    const { lakeFromConfig } = await import('../activities/lake/from-config.js');
    const { migrateToTenantLayout } = await import('../activities/lake/migrate-layout.js');
    const { openStore } = await import('../activities/s3/client.js');
    const lake = await lakeFromConfig(config);
    try {
      const tenant = o.tenant ?? config.STRATA_TENANT;
      const stores = [lake.lake.store];
      // Plain duckdb outputs live in a local folder of their own when the lake is on S3.
      if (!lake.lake.store.localPath('')) stores.push(openStore(lake.localRoot));
      for (const store of stores) {
        const r = await migrateToTenantLayout({
          store,
          db: lake.db,
          defaultTenant: tenant,
          dryRun: o.dryRun,
          log: (m) => console.log(m),
        });
        const per = Object.entries(r.tenants)
          .map(([t, n]) => `${t}: ${n}`)
          .join(', ');
        console.log(
          `${store.root}: ${r.dryRun ? 'would move' : 'moved'} ${r.moved} object(s), ${fmtBytes(r.bytes)}${per ? ` (${per})` : ''}; ${r.kept} already under a tenant prefix`,
        );
      }
    } finally {
      await lake.close();
    }
  });

/** Calls the HTTP API (STRATA_API_URL, default http://127.0.0.1:8080) with STRATA_API_KEY, else .strata/admin-key. */
async function apiClient() {
  const config = loadConfig();
  const base = (process.env.STRATA_API_URL || `http://127.0.0.1:${config.STRATA_API_PORT || 8080}`).replace(/\/+$/, '');
  let key = process.env.STRATA_API_KEY;
  if (!key)
    key =
      (await readFile(path.resolve(config.STRATA_DATA_DIR, 'admin-key'), 'utf8').catch(() => '')).trim() || undefined;
  if (!key)
    throw new RequestError('set STRATA_API_KEY to an API key (strata keys create, or .strata/admin-key of npm start)');
  const call = async (method: string, url: string, body?: unknown, accept = 'application/json') => {
    const r = await fetch(base + url, {
      method,
      headers: { authorization: `Bearer ${key}`, accept, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    }).catch((e: Error) => {
      throw new RequestError(`cannot reach the API at ${base} (${e.message}): start it, or set STRATA_API_URL`);
    });
    const text = await r.text();
    if (r.status >= 400) {
      let msg = text;
      try {
        msg = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        /* not JSON */
      }
      throw new RequestError(msg);
    }
    return { status: r.status, text };
  };
  return call;
}

// ---- query: read-only SQL through the HTTP API (STRATA_API_URL, STRATA_API_KEY)
program
  .command('query')
  .argument('<sql>', 'one read-only statement, e.g. "SELECT * FROM silver.orders@3 LIMIT 10"')
  .option('--engine <engine>', 'duckdb (default: over your datasets), postgres or mysql')
  .option('--connection <name>', "one of your tenant's Postgres/MySQL connections")
  .option(
    '--param <name=value>',
    'a value for {{ params.NAME | literal }} (numbers and true/false typed as such; repeatable)',
    keyValue,
    {},
  )
  .option('--row-limit <n>', 'answer at most n rows (marked truncated)', positiveInt)
  .option('--timeout <seconds>', 'how long the statement may run', positiveInt)
  .option('--format <format>', 'table, json or csv', 'table')
  .description(
    'run a read-only query against the API (STRATA_API_URL, default http://127.0.0.1:8080; key in STRATA_API_KEY)',
  )
  .action(
    async (
      sql: string,
      o: {
        engine?: string;
        connection?: string;
        param: Record<string, string>;
        rowLimit?: number;
        timeout?: number;
        format: string;
      },
    ) => {
      if (!['table', 'json', 'csv'].includes(o.format))
        throw new RequestError(`--format must be table, json or csv (got "${o.format}")`);
      const call = await apiClient();
      const params = Object.fromEntries(
        Object.entries(o.param).map(([k, v]) => [
          k,
          /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v,
        ]),
      );
      const body = {
        sql,
        ...(o.engine ? { engine: o.engine } : {}),
        ...(o.connection ? { connection: o.connection } : {}),
        ...(Object.keys(params).length ? { params } : {}),
        ...(o.rowLimit ? { rowLimit: o.rowLimit } : {}),
        ...(o.timeout ? { timeout: o.timeout } : {}),
        wait: 50,
      };
      const statement = (text: string) => JSON.parse(text) as StatementAnswer;
      let st = statement((await call('POST', '/api/v1/queries', body)).text);
      while (st.status === 'running') st = statement((await call('GET', `/api/v1/queries/${st.statementId}`)).text);
      if (st.status !== 'succeeded') throw new Error(`query ${st.status}: ${st.error?.message ?? ''}`);
      const m = st.manifest!;
      if (o.format === 'csv') {
        for (let n = 0; n < m.totalChunkCount; n++)
          process.stdout.write(
            (await call('GET', `/api/v1/queries/${st.statementId}/result/chunks/${n}`, undefined, 'text/csv')).text,
          );
        return;
      }
      const rows: unknown[][] = [...st.result!.data];
      for (let n = 1; n < m.totalChunkCount; n++)
        rows.push(
          ...(
            JSON.parse((await call('GET', `/api/v1/queries/${st.statementId}/result/chunks/${n}`)).text) as ResultChunk
          ).data,
        );
      if (o.format === 'json')
        return console.log(
          JSON.stringify({ statementId: st.statementId, columns: m.columns, rows, truncated: m.truncated }, null, 2),
        );
      console.log(table([m.columns.map((c) => c.name), ...rows.map((r) => r.map(cellText))]));
      console.log(`(${m.totalRowCount} row${m.totalRowCount === 1 ? '' : 's'}${m.truncated ? ', truncated' : ''})`);
    },
  );

/** A result cell as table text: NULL for null, JSON for nested values (lists, structs), else the value itself. */
function cellText(v: unknown): string {
  if (v === null) return 'NULL';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === undefined) return String(v);
  return JSON.stringify(v);
}

/** A chunk of a statement's result, as the query API answers it. */
interface ResultChunk {
  data: unknown[][];
}

/** The query API's answer for a statement, as far as the CLI reads it (manifest and result when succeeded). */
interface StatementAnswer {
  statementId: string;
  status: string;
  error?: { message?: string };
  manifest?: { columns: { name: string }[]; totalRowCount: number; totalChunkCount: number; truncated: boolean };
  result?: ResultChunk;
}
program
  .command('reconciliations')
  .argument('<mapping>', "a pipeline's reconciliation mapping name")
  .option('--limit <n>', 'how many results of the trend (1–200)', '20')
  .option('--json', 'print the results as JSON')
  .description(
    'the latest result of a reconciliation mapping and the trend of its differences over the runs (through the API)',
  )
  .action(async (mapping: string, o: { limit: string; json?: boolean }) => {
    const call = await apiClient();
    const { reconciliations: rs } = JSON.parse(
      (
        await call(
          'GET',
          `/api/v1/reconciliations?mapping=${encodeURIComponent(mapping)}&limit=${encodeURIComponent(o.limit)}`,
        )
      ).text,
    ) as { reconciliations: import('../store/reconciliations.js').ReconciliationRow[] };
    if (o.json) return console.log(JSON.stringify(rs, null, 2));
    if (!rs.length) {
      console.log(`no results for mapping ${mapping} yet: it records one each run of its pipeline`);
      return;
    }
    const [latest] = rs;
    console.log(`${mapping}: ${latest.left} ⇄ ${latest.right}`);
    console.log(
      `latest ${latest.finishedAt} (run ${latest.runId ?? latest.id}): ${latest.differences ? `${latest.differences} differences` : 'identical'}` +
        `${latest.exact ? '' : ' (approximate)'}${latest.policy ? `, policy ${latest.policy}` : ''}`,
    );
    if (latest.counts)
      console.log(
        '  ' +
          Object.entries(latest.counts)
            .map(([k, v]) => `${k}: ${v}`)
            .join('  '),
      );
    if (latest.differencesDataset)
      console.log(`  lists: ${latest.differencesDataset.dataset}@${latest.differencesDataset.version}`);
    const trend = rs.map((r) => r.differences).reverse();
    const max = Math.max(...trend, 1);
    const bars = '▁▂▃▄▅▆▇█';
    const line = trend.map((d) => bars[Math.min(7, Math.round((d / max) * 7))]).join('');
    const prev = rs[1]?.differences;
    const dir = prev === undefined ? '' : latest.differences > prev ? ' ↑' : latest.differences < prev ? ' ↓' : ' =';
    console.log(`trend (oldest → newest, ${trend.length} runs): ${line}  ${trend.join(' ')}${dir}`);
  });

function exitCodeFor(status: string): number {
  return status === 'success' ? 0 : status === 'cancelled' ? 130 : 1;
}

export async function main(argv = process.argv) {
  try {
    // Client calls that name no workflow (and so no tenant) encrypt for the CLI's tenant.
    await withTenant(process.env.STRATA_TENANT || 'default', () => program.parseAsync(argv));
  } catch (e) {
    if (e instanceof RequestError) {
      console.error(`strata: ${e.message}`);
      process.exitCode = 2;
      return;
    }
    console.error(`strata: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  }
}

await main();
