/**
 * npm run bench:medallion — the demo pipeline (examples/medallion.yaml) at 1 M orders on
 * DuckDB over a folder lake, run by a worker in this process against a dev server. Prints
 * rows/s per stage, then runs each silver and gold task's SQL directly in DuckDB in this
 * same process (same input files, same Parquet output) and prints the ratio
 * orchestrated / direct: the cost of orchestration (dispatch, dataset resolution,
 * checks, catalog commit, lineage). The pipeline runs one task at a time (maxParallel 1)
 * so per-task times are not inflated by neighbours on 2 cores.
 *   BENCH_ORDERS (default 1000000), BENCH_CHECKS=0 to drop the quality checks,
 *   BENCH_REPEAT (default 4) rounds of the silver/gold comparison per commit mode, BENCH_KEEP=1
 *   to keep the temp folder.
 * The rounds alternate the two ways a version's Iceberg snapshot is committed: written ahead
 * of the metastore transaction that only moves the pointer (the default), and written inside
 * it (`prepareSnapshots: false`), so both are measured under the same conditions.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachInputs, openDuck, runChecks } from '../activities/lake/engine.js';
import type { Check } from '../schemas/lake.js';
import { forTenant, openLake } from '../activities/lake/open.js';
import { quoteLiteral } from '../activities/sql/quote.js';
import { RunsService } from '../client/runs.js';
import { generate } from '../examples/generate.js';
import type { PipelineSpec } from '../schemas/pipeline.js';
import type { RunState } from '../schemas/run.js';
import { parseSpecText } from '../schemas/spec-file.js';
import { openDb, type Db } from '../store/db.js';
import { startDevServer } from '../workers/dev-server.js';
import { createStrataWorker } from '../workers/worker.js';
import { dataConverterFrom, generatePayloadKeys } from '../client/data-converter.js';
import { taskGaps, type Gaps } from './history-stats.js';

const ORDERS = Number(process.env.BENCH_ORDERS ?? 1_000_000);
const CHECKS = process.env.BENCH_CHECKS !== '0';
const REPEAT = Number(process.env.BENCH_REPEAT ?? 4);
const here = path.dirname(fileURLToPath(import.meta.url));
const ms = (a?: string, b?: string) => Date.parse(b!) - Date.parse(a!);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function main() {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'strata-bench-medallion-'));
  const lakeDir = path.join(dir, 'lake');
  const tenant = 'bench';
  console.log(`generating ${fmt(ORDERS)} orders (seeded) into ${lakeDir}…`);
  let t0 = performance.now();
  const { defects } = await generate(
    { seed: 1, orders: ORDERS, customers: Math.round(ORDERS / 10), products: 2000, days: 90 },
    async (key, content) => {
      // Landing files go where the tenant's tasks look: the lake is laid out per tenant.
      const f = path.join(lakeDir, tenant, key);
      await mkdir(path.dirname(f), { recursive: true });
      await writeFile(f, content);
    },
  );
  console.log(`  ${((performance.now() - t0) / 1000).toFixed(1)} s; defects ${JSON.stringify(defects)}`);

  const parsed = parseSpecText(await readFile(path.join(here, '..', 'examples', 'medallion.yaml'), 'utf8'));
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const spec: PipelineSpec = { ...parsed.spec, maxParallel: 1 };
  if (!CHECKS) for (const t of spec.tasks) delete t.checks;

  console.log('starting a Temporal dev server and a worker…');
  const server = await startDevServer({ headless: true });
  const db = await openDb({
    url: process.env.DATABASE_URL,
    dataDir: process.env.DATABASE_URL ? undefined : path.join(dir, 'metastore'),
  });
  // The worker's metastore statements are counted: each is a round trip (on PGlite, WASM work on the main thread).
  const statements = { n: 0 };
  const lake = await openLake({
    root: `file://${lakeDir}`,
    db: countingDb(db, statements),
    cacheDir: path.join(dir, 'cache'),
    lineage: undefined,
  });
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  const taskQueue = 'bench-medallion';
  const dataConverter = dataConverterFrom({
    STRATA_PAYLOAD_KEYS: process.env.STRATA_PAYLOAD_KEYS || generatePayloadKeys('bench'),
  });
  const runs = new RunsService(new Client({ connection, dataConverter }), {
    taskQueue,
    namespace: 'default',
    uiUrl: server.uiUrl ?? '',
  });
  const historyClient = new Client({ connection, dataConverter });
  const worker = await createStrataWorker({
    connection: native,
    taskQueue,
    deps: { lakeRoot: lakeDir, connections: {}, lake },
    dataConverter,
  });
  let st!: RunState;
  // One worker run for the whole benchmark (a Worker runs once); direct runs happen while it idles.
  const workerDone = worker.run();
  {
    t0 = performance.now();
    const h = await runs.start({ spec, tenant, trigger: 'manual' });
    st = await runs.wait(h.runId);
    console.log(
      `pipeline ${st.status} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${spec.tasks.length} tasks, one at a time${CHECKS ? ', with checks' : ', checks off'})`,
    );
  }
  if (st.status !== 'success') throw new Error(`pipeline failed: ${JSON.stringify(st.tasks, null, 1)}`);

  // per-stage rows/s (rows written, incl. quarantined, over the stage's task time)
  const stageOf = (id: string) =>
    id.startsWith('bronze_')
      ? 'bronze'
      : id.startsWith('silver_')
        ? 'silver'
        : id.startsWith('gold_')
          ? 'gold'
          : 'other';
  const stages: Record<string, { rows: number; ms: number }> = {};
  for (const [id, t] of Object.entries(st.tasks)) {
    const s = (stages[stageOf(id)] ??= { rows: 0, ms: 0 });
    s.rows += Number(t.output?.rowCount ?? 0) + Number(t.output?.quarantined ?? 0);
    s.ms += ms(t.startedAt, t.endedAt);
  }
  for (const [id, t] of Object.entries(st.tasks))
    if (stageOf(id) === 'bronze')
      console.log(
        `  ${id.padEnd(22)} ${fmt(Number(t.output?.rowCount ?? 0) + Number(t.output?.quarantined ?? 0)).padStart(10)} rows  ${(ms(t.startedAt, t.endedAt) / 1000).toFixed(2)} s`,
      );
  console.log('\nstage    rows written   task time   rows/s');
  for (const s of ['bronze', 'silver', 'gold'])
    console.log(
      `${s.padEnd(8)} ${fmt(stages[s].rows).padStart(12)}   ${(stages[s].ms / 1000).toFixed(2).padStart(7)} s   ${fmt(stages[s].rows / (stages[s].ms / 1000)).padStart(9)}`,
    );

  // Silver and gold again, alternating with the same SQL run directly in DuckDB in this
  // process over the same input versions; the machine is shared, so each side keeps its
  // best of BENCH_REPEAT rounds.
  const sg = spec.tasks.filter((t) => ['silver', 'gold'].includes(stageOf(t.id)));
  type Best = Record<string, { orch: number; direct: number; checks: number; timings?: Record<string, number> }>;
  const MODES = ['prepared', 'in-transaction'] as const;
  const bestOf: Record<(typeof MODES)[number], Best> = { prepared: {}, 'in-transaction': {} };
  /** Each round's per-task fixed costs, read from its workflow history (see taskGaps()). */
  const gapRounds: Gaps[] = [];
  /** Each round's metastore statements per task (the round's run, not the direct side between rounds). */
  const perTaskStatements: number[] = [];
  const commitMs: Record<(typeof MODES)[number], Record<string, number[]>> = { prepared: {}, 'in-transaction': {} };
  /** Each task's COPY alone, orchestrated (inside the activity) and direct, every round. */
  const copies: Record<string, { orch: number; direct: number }[]> = {};
  /** Each round's stage totals (orchestrated, and the direct SQL + checks run right after it): per-round ratios. */
  const roundTotals: {
    mode: (typeof MODES)[number];
    stage: Record<'silver' | 'gold', { orch: number; base: number }>;
  }[] = [];
  for (let round = 1; round <= REPEAT * MODES.length; round++) {
    const mode = MODES[(round - 1) % MODES.length];
    lake.prepareSnapshots = mode === 'prepared';
    const best = bestOf[mode];
    const thisRound = { mode, stage: { silver: { orch: 0, base: 0 }, gold: { orch: 0, base: 0 } } };
    roundTotals.push(thisRound);
    const n0 = statements.n;
    const rs = await runs.wait(
      (await runs.start({ spec, tenant, trigger: 'manual', only: sg.map((t) => t.id) })).runId,
    );
    perTaskStatements.push((statements.n - n0) / sg.length);
    if (rs.status !== 'success') throw new Error(`round ${round} failed: ${JSON.stringify(rs.tasks)}`);
    // The tasks in the order they ran (one at a time), which is the order of their completions.
    const ran = sg
      .map((t) => t.id)
      .sort((a, b) => Date.parse(rs.tasks[a].startedAt!) - Date.parse(rs.tasks[b].startedAt!));
    gapRounds.push(
      taskGaps(
        await historyClient.workflow.getHandle(rs.workflowId).fetchHistory(),
        ran.map((id) => ({
          id: `round ${round} ${id}`,
          body: Number((rs.tasks[id].output!.timings as Record<string, number>).total),
        })),
      ),
    );
    for (const task of sg) {
      const timings = rs.tasks[task.id].output!.timings as Record<string, number>;
      const [layer, name] = String(task.output).split('.');
      const v = (await lake.catalog.version(
        tenant,
        { layer: layer as 'silver', namespace: 'default', name },
        Number(rs.tasks[task.id].output!.version),
      ))!;
      const duck = await openDuck();
      // Pin every input to the version the orchestrated task read.
      let sql = String(task.sql);
      for (const i of v.inputs)
        sql = sql.replace(new RegExp(`\\b${i.layer}\\.${i.name}\\b(?!@)`, 'g'), `${i.layer}.${i.name}@${i.version}`);
      const out = path.join(dir, 'direct', `${task.id}.parquet`);
      await mkdir(path.dirname(out), { recursive: true });
      const d0 = performance.now();
      const { sql: resolved } = await attachInputs(duck.conn, forTenant(lake, tenant), tenant, 'default', sql);
      const dc = performance.now();
      await duck.conn.run(
        `COPY (${resolved.trim().replace(/;\s*$/, '')}) TO ${quoteLiteral(out)} (FORMAT parquet, COMPRESSION zstd)`,
      );
      const direct = performance.now() - d0;
      (copies[task.id] ??= []).push({ orch: timings.copy, direct: performance.now() - dc });
      // The same quality checks the task declares, as the same SQL over the direct output:
      // declared checks are the user's work, not orchestration overhead.
      const c0 = performance.now();
      if (Array.isArray(task.checks) && task.checks.length) {
        await duck.conn.run(`CREATE OR REPLACE TEMP VIEW __out AS SELECT * FROM read_parquet(${quoteLiteral(out)})`);
        await runChecks(forTenant(lake, tenant), {
          conn: duck.conn,
          id: { layer: layer as 'silver', namespace: 'default', name },
          producer: { tenant, runId: 'direct', pipelineId: spec.id, taskId: task.id },
          select: '',
          attemptTag: 'direct',
          inputs: [],
          checks: task.checks as Check[],
        });
      }
      const checks = performance.now() - c0;
      await duck.close();
      const orch = ms(rs.tasks[task.id].startedAt, rs.tasks[task.id].endedAt);
      (commitMs[mode][task.id] ??= []).push(Number(timings.commit));
      const st = thisRound.stage[stageOf(task.id) as 'silver' | 'gold'];
      st.orch += orch;
      st.base += direct + checks;
      const b = (best[task.id] ??= { orch: Infinity, direct: Infinity, checks: Infinity });
      if (orch < b.orch) b.timings = timings;
      b.orch = Math.min(b.orch, orch);
      if (direct + checks < b.direct + b.checks) {
        b.direct = direct;
        b.checks = checks;
      }
    }
    console.log(`  round ${round}/${REPEAT * MODES.length} (${mode}) done`);
  }
  const best = bestOf.prepared;
  console.log(`\ntask (best of ${REPEAT})           orchestrated   direct SQL   + checks   ratio   ratio vs SQL alone`);
  const totals: Record<string, { orch: number; direct: number; checks: number }> = {
    silver: { orch: 0, direct: 0, checks: 0 },
    gold: { orch: 0, direct: 0, checks: 0 },
  };
  const row = (label: string, b: { orch: number; direct: number; checks: number }, tail = '') =>
    console.log(
      `${label.padEnd(30)} ${(b.orch / 1000).toFixed(3).padStart(8)} s ${(b.direct / 1000).toFixed(3).padStart(8)} s ` +
        `${(b.checks / 1000).toFixed(3).padStart(8)} s   ${(b.orch / (b.direct + b.checks)).toFixed(2).padStart(5)}   ` +
        `${(b.orch / b.direct).toFixed(2).padStart(5)}${tail}`,
    );
  for (const task of sg) {
    const b = best[task.id];
    const tt = totals[stageOf(task.id)];
    tt.orch += b.orch;
    tt.direct += b.direct;
    tt.checks += b.checks;
    const t = b.timings ?? {};
    row(
      task.id,
      b,
      `   inside the activity: before the body ${t.pre} ms, inputs ${t.inputs} ms (attach ${t.attach}, refs ${t.refs}, lock ${t.lock}, bind ${t.bind}), write ${t.write} ms (COPY ${t.copy} ms), checks ${t.checks} ms, commit ${t.commit} ms, total ${t.total} ms`,
    );
  }
  for (const s of ['silver', 'gold'] as const) row(`${s} stage`, totals[s], '   (target ratio ≤ 1.15)');
  row('silver + gold', {
    orch: totals.silver.orch + totals.gold.orch,
    direct: totals.silver.direct + totals.gold.direct,
    checks: totals.silver.checks + totals.gold.checks,
  });
  // Best-of pairs each side's luckiest round; the per-round ratio pairs a run with the direct SQL
  // run right after it, so the median over rounds (the upper middle one for an even count) shows
  // what a typical run costs on this machine.
  const perRound = (mode: (typeof MODES)[number], pick: (r: (typeof roundTotals)[number]) => number) => {
    const xs = roundTotals
      .filter((r) => r.mode === mode)
      .map(pick)
      .sort((a, b) => a - b);
    return `median ${median(xs).toFixed(2)} (${xs[0].toFixed(2)}–${xs[xs.length - 1].toFixed(2)})`;
  };
  const ratioOf = (r: (typeof roundTotals)[number], stages: ('silver' | 'gold')[]) =>
    stages.reduce((a, s) => a + r.stage[s].orch, 0) / stages.reduce((a, s) => a + r.stage[s].base, 0);
  console.log(`\nper-round ratio (each round's run over the direct SQL + checks right after it; ${REPEAT} rounds):`);
  for (const [label, stages] of [
    ['silver stage', ['silver']],
    ['gold stage', ['gold']],
    ['silver + gold', ['silver', 'gold']],
  ] as const)
    console.log(`  ${label.padEnd(28)} ${perRound('prepared', (r) => ratioOf(r, [...stages]))}`);
  // The COPY alone: the sandboxed instance, field ids and casts against the plain statement.
  console.log(`\nthe COPY alone, orchestrated / direct (medians over all ${REPEAT * MODES.length} rounds, ms):`);
  for (const task of sg) {
    const c = copies[task.id];
    const [o, d] = [median(c.map((x) => x.orch)), median(c.map((x) => x.direct))];
    console.log(
      `  ${task.id.padEnd(28)} ${String(Math.round(o)).padStart(6)} / ${String(Math.round(d)).padEnd(6)} ${(o / d).toFixed(2)}`,
    );
  }
  // The same, with each snapshot written inside the commit transaction (the rounds in between).
  console.log(
    `\nIceberg snapshot written ahead of the transaction vs inside it (alternate rounds, best of ${REPEAT} each):`,
  );
  console.log('task                           commit median ms (ahead / inside)   orchestrated s (ahead / inside)');
  const stage = (mode: (typeof MODES)[number], s: 'silver' | 'gold') => {
    const t = { orch: 0, direct: 0, checks: 0 };
    for (const task of sg.filter((x) => stageOf(x.id) === s)) {
      t.orch += bestOf[mode][task.id].orch;
      // The direct side is the same SQL whatever the mode: its best over every round.
      t.direct += Math.min(bestOf.prepared[task.id].direct, bestOf['in-transaction'][task.id].direct);
      t.checks += Math.min(bestOf.prepared[task.id].checks, bestOf['in-transaction'][task.id].checks);
    }
    return t.orch / (t.direct + t.checks);
  };
  for (const task of sg)
    console.log(
      `${task.id.padEnd(30)} ${String(median(commitMs.prepared[task.id])).padStart(8)} / ${String(median(commitMs['in-transaction'][task.id])).padEnd(8)}` +
        `                ${(bestOf.prepared[task.id].orch / 1000).toFixed(3)} / ${(bestOf['in-transaction'][task.id].orch / 1000).toFixed(3)}`,
    );
  for (const s of ['silver', 'gold'] as const)
    console.log(
      `${`${s} stage ratio`.padEnd(30)} ahead ${stage('prepared', s).toFixed(2)}, inside ${stage('in-transaction', s).toFixed(2)} (over the best direct SQL + checks of all rounds; target ≤ 1.15)`,
    );
  console.log(
    `(orchestrated = the task's time in the run state: dispatch, view resolution, SQL, checks, catalog commit; direct = view resolution + the same COPY,`,
  );
  console.log(
    ` then the task's declared checks as the same SQL; ratio = orchestrated / (direct SQL + checks), the orchestration overhead)`,
  );

  // Where a task's time goes outside its activity body, from the rounds' workflow histories.
  console.log(
    '\nper task outside the SQL activity body (median / max over every silver and gold task of all rounds, ms):',
  );
  for (const [k, label] of [
    ['decide', 'workflow task that starts it (from its start to the activity scheduled)'],
    ['dispatch', 'activity scheduled → started on the worker'],
    ['wrap', 'activity started → completed, less the body (input, render, result)'],
    ['report', 'activity completed → the workflow task that records it'],
  ] as const) {
    const xs = gapRounds.flatMap((g) => g[k]);
    const top = xs.reduce((a, b) => (b.ms > a.ms ? b : a));
    console.log(`  ${label.padEnd(72)} ${String(median(xs.map((x) => x.ms))).padStart(5)} / ${top.ms} (${top.task})`);
  }
  console.log(
    `  catalog statements per task (${db.kind} metastore; median / max over rounds) ${median(perTaskStatements).toFixed(1)} / ${Math.max(...perTaskStatements).toFixed(1)}`,
  );

  worker.shutdown();
  await workerDone;
  await connection.close();
  await native.close();
  await db.close();
  await server.stop();
  if (!process.env.BENCH_KEEP) await rm(dir, { recursive: true, force: true });
  else console.log(`kept ${dir}`);
}

/** The same metastore, counting the statements made through it (inside transactions too). */
function countingDb(db: Db, c: { n: number }): Db {
  return {
    kind: db.kind,
    query: (sql, params) => {
      c.n++;
      return db.query(sql, params);
    },
    exec: (sql) => {
      c.n++;
      return db.exec(sql);
    },
    tx: (fn) => db.tx((t) => fn(countingDb(t, c))),
    close: () => db.close(),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
