/**
 * Records the workflow histories the replay test guards. Run after an intentional,
 * patched() workflow change to add new histories (keep the old ones: they are the point):
 *   HISTORY_SUFFIX=-v3 npm run histories:record
 * (RECORD_CASES=notify records only the cases named.)
 * With a Postgres server (RECORD_PG_URL, default the local one) each case is recorded twice:
 * the spec by reference through a metastore (the API's way), and inline (`-inline`, the way
 * of a CLI without one).
 */
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import proto from '@temporalio/proto';
const { temporal } = proto;
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RunsService } from '../../client/runs.js';
import type { PipelineSpec } from '../../schemas/pipeline.js';
import { spec } from '../harness/specs.js';
import pg from 'pg';
import { openDb, type Db } from '../../store/db.js';
import { migrate } from '../../store/migrate.js';
import { startDevServer } from '../../workers/dev-server.js';
import { createStrataWorker } from '../../workers/worker.js';

// Recorded histories stay in clear (no payload codec), so the replay tests need no keys.
const CLEAR = {};

const here = path.dirname(fileURLToPath(import.meta.url));
/** Name a new generation of histories (e.g. HISTORY_SUFFIX=-v2) so older ones stay. */
const SUFFIX = process.env.HISTORY_SUFFIX ?? '';

const CASES: {
  name: string;
  spec: PipelineSpec;
  cancelAfterMs?: number;
  only?: string[];
  continueAsNewAfterEvents?: number;
  /** Record the run's end notifier too (`{case}-notifier.json`). */
  notifier?: boolean;
}[] = [
  {
    name: 'success-parallel',
    spec: spec({
      id: 'replay_ok',
      params: { n: '3' },
      tasks: [
        { id: 'a', kind: 'sql', sql: 'SELECT {{ params.n | literal }} AS n', output: 'x/{{ ds }}.parquet' },
        { id: 'b', kind: 'noop', needs: ['a'] },
        { id: 'c', kind: 'wait', needs: ['a'], duration: '200ms' },
        { id: 'd', kind: 'noop', needs: ['b', 'c'] },
      ],
    }),
  },
  {
    name: 'failure-trigger-rules-retries',
    spec: spec({
      id: 'replay_fail',
      tasks: [
        { id: 'flaky', kind: 'fail', succeedOnAttempt: 2, retry: { attempts: 3, initialInterval: '100ms' } },
        { id: 'boom', kind: 'fail', message: 'boom' },
        { id: 'after', kind: 'noop', needs: ['boom'] },
        { id: 'cleanup', kind: 'noop', needs: ['boom', 'flaky'], trigger: 'all_done' },
        { id: 'alert', kind: 'noop', needs: ['boom'], trigger: 'one_failed' },
      ],
    }),
  },
  {
    name: 'cancelled',
    spec: spec({
      id: 'replay_cancel',
      tasks: [
        { id: 'long', kind: 'noop', sleep: '30s' },
        { id: 't', kind: 'wait', duration: '30s' },
      ],
    }),
    cancelAfterMs: 1500,
  },
  {
    name: 'only-subset',
    spec: spec({
      id: 'replay_only',
      tasks: [
        { id: 'a', kind: 'noop' },
        { id: 'b', kind: 'noop', needs: ['a'] },
        { id: 'c', kind: 'noop', needs: ['b'] },
      ],
    }),
    only: ['b'],
  },
  {
    name: 'continue-as-new',
    spec: spec({
      id: 'replay_can',
      maxParallel: 3,
      tasks: Array.from({ length: 12 }, (_, i) => ({ id: `t${i}`, kind: 'noop', needs: i >= 3 ? [`t${i - 3}`] : [] })),
    }),
    continueAsNewAfterEvents: 40,
  },
  {
    // notify-v1: the SLA notifier started with the run, the end notifier started when it fails.
    name: 'notify',
    spec: spec({
      id: 'replay_notify',
      sla: '200ms',
      notify: [{ id: 'oncall', on: ['failure', 'retry_exhausted', 'sla_missed'], channel: 'oncall' }],
      tasks: [
        { id: 'slow', kind: 'noop', sleep: '600ms' },
        { id: 'boom', kind: 'fail', message: 'boom', needs: ['slow'], retry: { attempts: 2, initialInterval: '50ms' } },
      ],
    }),
  },
  {
    // notify-cancelled-v1: a cancelled run starts its end notifier in its cancellation cleanup;
    // notify-reconcile-v1: that notifier looks up the run's reconciliations (a quality_warning rule).
    name: 'notify-cancelled',
    spec: spec({
      id: 'replay_notify_cancel',
      notify: [{ id: 'stopped', on: ['cancelled', 'quality_warning'], channel: 'oncall' }],
      tasks: [{ id: 'long', kind: 'noop', sleep: '30s' }],
    }),
    cancelAfterMs: 1500,
    notifier: true,
  },
];
/** Record only these cases (RECORD_CASES=notify,cancelled); default all. */
const ONLY = process.env.RECORD_CASES?.split(',').filter(Boolean);

/** Failures' stack traces name folders of the machine that recorded them: replay needs none. */
function scrub(json: string): string {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, k === 'stackTrace' ? '' : strip(x)]));
    return v;
  };
  return JSON.stringify(strip(JSON.parse(json)), null, 2);
}

/** A fresh metastore database on the Postgres server, or undefined when there is none. */
async function metastore(): Promise<{ db: Db; drop: () => Promise<void> } | undefined> {
  const admin = process.env.RECORD_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const name = `strata_record_${process.pid}`;
  try {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    await c.query(`CREATE DATABASE ${name}`);
    await c.end();
  } catch {
    return undefined;
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  const db = await openDb({ url: url.toString() });
  await migrate(db);
  return {
    db,
    drop: async () => {
      await db.close();
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const server = await startDevServer({ headless: true });
  const lake = await mkdtemp(path.join(os.tmpdir(), 'strata-record-'));
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, dataConverter: CLEAR });
  const meta = await metastore();
  const modes: [string, RunsService][] = [
    ['', new RunsService(client, { taskQueue: 'record', namespace: 'default', uiUrl: '', store: meta?.db })],
  ];
  if (meta) modes.push(['-inline', new RunsService(client, { taskQueue: 'record', namespace: 'default', uiUrl: '' })]);
  const worker = await createStrataWorker({
    connection: native,
    taskQueue: 'record',
    deps: { lakeRoot: lake, connections: {}, db: meta?.db },
    dataConverter: CLEAR,
  });
  // The workflow id of each file: replay runs it under the same id (children's ids derive from it).
  const indexFile = path.join(here, 'index.json');
  const index = JSON.parse(await readFile(indexFile, 'utf8').catch(() => '{}')) as Record<string, string>;
  await worker.runUntil(async () => {
    for (const [mode, runs] of modes)
      for (const c of CASES.filter((x) => !ONLY || ONLY.includes(x.name))) {
        const h = await runs.start({
          spec: c.spec,
          tenant: 'replay',
          trigger: 'manual',
          only: c.only,
          runKey: `${c.name}${mode}`,
          options: { heartbeatTimeoutMs: 1000, continueAsNewAfterEvents: c.continueAsNewAfterEvents },
        });
        if (c.cancelAfterMs) {
          await new Promise((r) => setTimeout(r, c.cancelAfterMs));
          await runs.cancel(h.runId);
        }
        await client.workflow
          .getHandle(h.runId)
          .result()
          .catch(() => {});
        // Every execution of the chain (continue-as-new makes several) is one history file.
        let i = 0;
        for await (const ex of client.workflow.list({ query: `WorkflowId = '${h.workflowId}'` })) {
          const hist = await client.workflow.getHandle(ex.workflowId, ex.runId).fetchHistory();
          const file = path.join(here, `${c.name}${SUFFIX}${mode}${i ? `-${i}` : ''}.json`);
          await writeFile(file, scrub(historyToJSON(temporal.api.history.v1.History.create(hist))));
          index[path.basename(file)] = ex.workflowId;
          console.log(`recorded ${path.basename(file)} (${hist.events?.length} events)`);
          i++;
        }
        if (c.notifier) {
          const id = `${h.workflowId}/notify/end`;
          await client.workflow.getHandle(id).result();
          const hist = await client.workflow.getHandle(id).fetchHistory();
          const file = path.join(here, `${c.name}${SUFFIX}${mode}-notifier.json`);
          await writeFile(file, scrub(historyToJSON(temporal.api.history.v1.History.create(hist))));
          index[path.basename(file)] = id;
          console.log(`recorded ${path.basename(file)} (${hist.events?.length} events)`);
        }
      }
  });
  await writeFile(indexFile, `${JSON.stringify(index, null, 2)}\n`);
  await connection.close();
  await native.close();
  await server.stop();
  await meta?.drop();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
