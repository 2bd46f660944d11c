/**
 * The pure DAG planner: trigger rules pinned one by one, then random DAGs driven through
 * plan() exactly as workflows/pipeline.ts drives it, checked against an independent oracle.
 */
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TRIGGER_RULES, findCycle, type TriggerRule } from '../../schemas/pipeline.js';
import { TASK_STATUSES, type TaskStatus } from '../../schemas/run.js';
import {
  LEGACY_TRIGGER_TABLE,
  TRIGGER_TABLE,
  decide,
  downstreamIndex,
  isFinal,
  plan,
  selectTasks,
  type Decision,
  type PlanNode,
} from '../../workflows/dag.js';

/** decide() for a task with one upstream per given state. */
function decideWith(rule: TriggerRule, upstream: TaskStatus[]): Decision {
  const ids = upstream.map((_, i) => `u${i}`);
  return decide({ id: 'x', needs: ids, trigger: rule }, (id) => upstream[Number(id.slice(1))]);
}

// ---------------------------------------------------------------------------------------
// The independent oracle: what a task's final state must be, from its upstream's FINAL
// states, written from the Airflow rule descriptions (not from TRIGGER_TABLE).
// ---------------------------------------------------------------------------------------

type Final = 'success' | 'failed' | 'skipped' | 'upstream_failed';
type Verdict = 'run' | 'skipped' | 'upstream_failed';

/** How a final upstream state counts: excluded (not selected) counts as done fine, cancelled as a failure. */
function kindOf(s: TaskStatus): 'ok' | 'bad' | 'skip' {
  if (s === 'success' || s === 'excluded') return 'ok';
  if (s === 'skipped') return 'skip';
  if (s === 'failed' || s === 'upstream_failed' || s === 'cancelled') return 'bad';
  throw new Error(`not final: ${s}`);
}

/** Whether an upstream ran to an end (Airflow's "done" in one_done): an upstream_failed task never ran. */
const ran = (s: TaskStatus) => s === 'success' || s === 'excluded' || s === 'failed' || s === 'cancelled';

function oracle(rule: TriggerRule, upstream: TaskStatus[]): Verdict {
  if (upstream.length === 0) return 'run'; // a task without upstream always runs
  const k = upstream.map(kindOf);
  const all = (x: string) => k.every((y) => y === x);
  const some = (x: string) => k.includes(x as never);
  switch (rule) {
    case 'all_success': // every upstream succeeded; a failure fails it, else a skip skips it
      return all('ok') ? 'run' : some('bad') ? 'upstream_failed' : 'skipped';
    case 'all_failed': // every upstream failed
      return all('bad') ? 'run' : 'skipped';
    case 'all_done': // whatever happened
    case 'always':
      return 'run';
    case 'all_done_min_one_success': // all done and at least one succeeded; none did and one failed: the failure shows
      return some('ok') ? 'run' : some('bad') ? 'upstream_failed' : 'skipped';
    case 'all_skipped': // every upstream was skipped
      return all('skip') ? 'run' : 'skipped';
    case 'one_success': // at least one succeeded
      return some('ok') ? 'run' : some('bad') ? 'upstream_failed' : 'skipped';
    case 'one_failed': // at least one failed
      return some('bad') ? 'run' : 'skipped';
    case 'one_done': // at least one ran and succeeded or failed (a skip or an upstream_failed is not "done")
      return upstream.some(ran) ? 'run' : 'skipped';
    case 'none_failed': // nothing failed (skips are fine)
      return some('bad') ? 'upstream_failed' : 'run';
    case 'none_failed_min_one_success': // nothing failed and one succeeded
      return some('bad') ? 'upstream_failed' : some('ok') ? 'run' : 'skipped';
    case 'none_skipped': // nothing was skipped
      return some('skip') ? 'skipped' : 'run';
  }
}

describe('trigger rules, pinned', () => {
  // [rule, upstream states, decision]. Early decisions are marked.
  const table: [TriggerRule, TaskStatus[], Decision][] = [
    ['all_success', ['success', 'success'], 'run'],
    ['all_success', ['success', 'running'], 'wait'],
    ['all_success', ['success', 'pending'], 'wait'],
    ['all_success', ['failed', 'running'], 'upstream_failed'], // early: one failure decides
    ['all_success', ['upstream_failed', 'pending'], 'upstream_failed'], // early
    ['all_success', ['cancelled', 'success'], 'upstream_failed'],
    ['all_success', ['skipped', 'success'], 'skipped'],
    ['all_success', ['skipped', 'failed'], 'upstream_failed'], // a failure wins over a skip
    ['all_success', ['skipped', 'running'], 'wait'], // the running one may still fail
    ['all_success', ['excluded', 'success'], 'run'], // not selected counts as done fine

    ['all_failed', ['failed', 'upstream_failed'], 'run'],
    ['all_failed', ['failed', 'cancelled'], 'run'],
    ['all_failed', ['failed', 'running'], 'wait'],
    ['all_failed', ['success', 'running'], 'skipped'], // early: one success decides
    ['all_failed', ['skipped', 'pending'], 'skipped'], // early
    ['all_failed', ['failed', 'success'], 'skipped'],

    ['all_done', ['failed', 'skipped', 'success'], 'run'],
    ['all_done', ['upstream_failed', 'upstream_failed'], 'run'],
    ['all_done', ['failed', 'running'], 'wait'],
    ['all_done', ['skipped', 'pending'], 'wait'],

    ['all_done_min_one_success', ['failed', 'success'], 'run'],
    ['all_done_min_one_success', ['skipped', 'success'], 'run'],
    ['all_done_min_one_success', ['failed', 'skipped'], 'upstream_failed'], // no success: the failure shows downstream
    ['all_done_min_one_success', ['failed', 'failed'], 'upstream_failed'], // every upstream failed (Airflow: upstream_failed)
    ['all_done_min_one_success', ['skipped', 'skipped'], 'skipped'],
    ['all_done_min_one_success', ['success', 'running'], 'wait'], // waits for all, even with a success

    ['all_skipped', ['skipped', 'skipped'], 'run'],
    ['all_skipped', ['skipped', 'running'], 'wait'],
    ['all_skipped', ['success', 'pending'], 'skipped'], // early: one non-skip decides
    ['all_skipped', ['upstream_failed', 'skipped'], 'skipped'],
    ['all_skipped', ['excluded', 'skipped'], 'skipped'],

    ['one_success', ['success', 'running'], 'run'], // early: starts at the first success
    ['one_success', ['success', 'pending'], 'run'], // early
    ['one_success', ['failed', 'running'], 'wait'],
    ['one_success', ['failed', 'failed'], 'upstream_failed'],
    ['one_success', ['failed', 'skipped'], 'upstream_failed'],
    ['one_success', ['skipped', 'skipped'], 'skipped'],

    ['one_failed', ['failed', 'running'], 'run'], // early: starts at the first failure
    ['one_failed', ['upstream_failed', 'pending'], 'run'], // early
    ['one_failed', ['success', 'pending'], 'wait'],
    ['one_failed', ['success', 'success'], 'skipped'],
    ['one_failed', ['success', 'skipped'], 'skipped'],

    ['one_done', ['failed', 'pending'], 'run'], // early
    ['one_done', ['success', 'running'], 'run'], // early
    ['one_done', ['skipped', 'running'], 'wait'],
    ['one_done', ['skipped', 'skipped'], 'skipped'],
    ['one_done', ['upstream_failed', 'running'], 'wait'], // an upstream_failed task never ran: not done
    ['one_done', ['upstream_failed', 'upstream_failed'], 'skipped'],
    ['one_done', ['upstream_failed', 'skipped'], 'skipped'],

    ['none_failed', ['success', 'skipped'], 'run'],
    ['none_failed', ['skipped', 'skipped'], 'run'],
    ['none_failed', ['failed', 'running'], 'upstream_failed'], // early
    ['none_failed', ['success', 'running'], 'wait'],

    ['none_failed_min_one_success', ['success', 'skipped'], 'run'],
    ['none_failed_min_one_success', ['skipped', 'skipped'], 'skipped'],
    ['none_failed_min_one_success', ['upstream_failed', 'pending'], 'upstream_failed'], // early
    ['none_failed_min_one_success', ['success', 'running'], 'wait'],

    ['none_skipped', ['success', 'failed'], 'run'],
    ['none_skipped', ['skipped', 'running'], 'skipped'], // early
    ['none_skipped', ['success', 'running'], 'wait'],

    ['always', ['running', 'pending'], 'run'], // does not wait at all
    ['always', ['failed', 'skipped'], 'run'],
  ];

  it.each(table)('%s with upstream %j decides %s', (rule, upstream, expected) => {
    expect(decideWith(rule, upstream)).toBe(expected);
  });

  it('pins every rule the spec accepts', () => {
    expect(Object.keys(TRIGGER_TABLE).sort()).toEqual([...TRIGGER_RULES].sort());
    const pinned = new Set(table.map(([r]) => r));
    expect([...TRIGGER_RULES].filter((r) => !pinned.has(r))).toEqual([]);
  });

  it('runs a task without upstream whatever its rule', () => {
    for (const rule of TRIGGER_RULES) expect(decideWith(rule, [])).toBe('run');
  });

  // Exhaustive over up to 3 upstreams and every status:
  //  - with every upstream final, decide() answers exactly the oracle (it never waits);
  //  - an early decision (some upstream not final) is the oracle's answer for EVERY way the
  //    open upstreams can still end: a running task ends success/failed/cancelled, a pending
  //    one can also end skipped or upstream_failed.
  const STATUSES = TASK_STATUSES;
  const ENDINGS: Record<string, TaskStatus[]> = {
    running: ['success', 'failed', 'cancelled'],
    pending: ['success', 'failed', 'skipped', 'upstream_failed'],
  };
  const tuples = (n: number): TaskStatus[][] =>
    n === 0 ? [[]] : tuples(n - 1).flatMap((t) => STATUSES.map((s) => [...t, s]));
  const endings = (up: TaskStatus[]): TaskStatus[][] =>
    up.reduce<TaskStatus[][]>((acc, s) => acc.flatMap((t) => (ENDINGS[s] ?? [s]).map((e) => [...t, e])), [[]]);

  it.each([...TRIGGER_RULES])(
    '%s: agrees with the oracle once all upstream is final, and decides early only when the end is certain',
    (rule) => {
      for (const n of [1, 2, 3])
        for (const up of tuples(n)) {
          const d = decideWith(rule, up);
          if (up.every(isFinal)) {
            expect(d, `${rule} ${up.join(',')}`).toBe(oracle(rule, up));
          } else if (d !== 'wait') {
            for (const end of endings(up))
              expect(d, `${rule} ${up.join(',')} may end as ${end.join(',')}`).toBe(oracle(rule, end));
          }
        }
    },
  );
});

describe('the README rule table', () => {
  // README.md lists every rule's decision for every combination of upstream end states.
  const readme = readFileSync(
    path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md'),
    'utf8',
  );
  const lines = readme.split('\n');
  const head = lines.findIndex((l) => l.startsWith('| upstream ended |'));
  const cells = (l: string) =>
    l
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim().replace(/`/g, ''));
  const rules = head >= 0 ? cells(lines[head]).slice(1) : [];
  const rows = lines
    .slice(head + 2)
    .filter((_, i, a) => a.slice(0, i + 1).every((l) => l.startsWith('|')))
    .map(cells);
  const word: Record<string, Decision> = { run: 'run', skip: 'skipped', up_failed: 'upstream_failed' };
  const ENDS = ['success', 'failed', 'upstream_failed', 'skipped'] as const;

  it('has a column for every rule and a row for every combination of upstream end states', () => {
    expect(rules.sort()).toEqual([...TRIGGER_RULES].sort());
    expect(rows).toHaveLength(2 ** ENDS.length - 1);
    const combos = rows.map((r) => (r[0].startsWith('all ') ? [r[0].slice(4)] : r[0].split(' + ')).sort().join('+'));
    expect(new Set(combos).size).toBe(15);
    for (const c of combos) for (const s of c.split('+')) expect(ENDS).toContain(s);
  });

  it('says what the planner decides, cell by cell', () => {
    const cols = cells(lines[head]).slice(1);
    for (const r of rows) {
      const ends = (r[0].startsWith('all ') ? [r[0].slice(4)] : r[0].split(' + ')) as TaskStatus[];
      cols.forEach((rule, k) => {
        const expected = word[r[k + 1]];
        expect(expected, `unknown cell "${r[k + 1]}"`).toBeDefined();
        expect(decideWith(rule as TriggerRule, ends), `${rule} over ${ends.join(', ')}`).toBe(expected);
        // Two upstreams per state decide the same (the table speaks of states, not counts).
        expect(decideWith(rule as TriggerRule, [...ends, ...ends]), `${rule} over ${ends.join(', ')} twice`).toBe(
          expected,
        );
      });
    }
  });
});

describe('the rules as runs recorded before the fix decided them', () => {
  it('differ from the current ones only in one_done and all_done_min_one_success', () => {
    const changed = TRIGGER_RULES.filter((rule) =>
      [['upstream_failed'], ['failed', 'failed'], ['upstream_failed', 'skipped'], ['failed', 'skipped']].some(
        (up) =>
          decide(
            { id: 'x', needs: up.map((_, i) => `u${i}`), trigger: rule },
            (id) => up[Number(id.slice(1))] as TaskStatus,
            LEGACY_TRIGGER_TABLE,
          ) !== decideWith(rule, up as TaskStatus[]),
      ),
    );
    expect(changed.sort()).toEqual(['all_done_min_one_success', 'one_done']);
    expect(decide({ id: 'x', needs: ['a'], trigger: 'one_done' }, () => 'upstream_failed', LEGACY_TRIGGER_TABLE)).toBe(
      'run',
    );
    expect(
      decide({ id: 'x', needs: ['a'], trigger: 'all_done_min_one_success' }, () => 'failed', LEGACY_TRIGGER_TABLE),
    ).toBe('skipped');
  });
});

// ---------------------------------------------------------------------------------------
// Random DAGs, driven like workflows/pipeline.ts drives the planner.
// ---------------------------------------------------------------------------------------

interface RandomTask {
  needs: number[]; // indices lower than the task's own: acyclic by construction
  trigger: TriggerRule;
  fails: boolean; // outcome when it runs
}

const randomDag = fc.integer({ min: 1, max: 40 }).chain((n) =>
  fc.record({
    tasks: fc.tuple(
      ...Array.from({ length: n }, (_, i) =>
        fc.record({
          needs:
            i === 0
              ? fc.constant<number[]>([])
              : fc.uniqueArray(fc.integer({ min: 0, max: i - 1 }), { maxLength: Math.min(i, 5) }),
          trigger: fc.constantFrom(...TRIGGER_RULES),
          fails: fc.boolean(),
        }),
      ),
    ),
    /** Drives the finishing order: which running task ends next, and how many end together. */
    choices: fc.array(fc.nat(), { minLength: 1, maxLength: 4 * n }),
  }),
);

interface Trace {
  nodes: PlanNode[];
  status: Record<string, TaskStatus>;
  startedAt: Map<string, Record<string, TaskStatus>>; // upstream states when it started
  settled: Map<string, number>;
}

/**
 * Runs a DAG the way pipelineRun does: plan() over all ids first; queued and started tasks
 * answer 'running'; tasks finish in a random order (several may finish between two plans);
 * the next plan() looks at the downstream of the tasks that finished. Checks the
 * step-by-step invariants as it goes and returns the trace for the final checks.
 */
function simulate(tasks: RandomTask[], choices: number[]): Trace {
  const nodes: PlanNode[] = tasks.map((t, i) => ({
    id: `t${i}`,
    needs: t.needs.map((j) => `t${j}`),
    trigger: t.trigger,
  }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const down = downstreamIndex(nodes);
  const status: Record<string, TaskStatus> = Object.fromEntries(nodes.map((n) => [n.id, 'pending']));
  const startedAt = new Map<string, Record<string, TaskStatus>>();
  const settled = new Map<string, number>();
  const running: string[] = [];
  let candidates: string[] = nodes.map((n) => n.id);
  let c = 0;
  const next = () => choices[c++ % choices.length];

  for (let step = 0; ; step++) {
    expect(step).toBeLessThan(10 * nodes.length + 10); // terminates
    const p = plan(byId, down, (id) => status[id], candidates);

    for (const s of p.settle) {
      expect(status[s.id], `${s.id} settled while ${status[s.id]}`).toBe('pending'); // (d) decided once
      settled.set(s.id, (settled.get(s.id) ?? 0) + 1);
      status[s.id] = s.status;
    }
    for (const id of p.start) {
      expect(startedAt.has(id), `${id} started twice`).toBe(false); // (d)
      expect(status[id], `${id} started while ${status[id]}`).toBe('pending');
      const n = byId.get(id)!;
      startedAt.set(id, Object.fromEntries(n.needs.map((u) => [u, status[u]])));
      status[id] = 'running'; // queued or launched: the workflow answers 'running'
      running.push(id);
    }

    // Incremental planning misses nothing: a full re-plan now has nothing left to do.
    const full = plan(
      byId,
      down,
      (id) => status[id],
      nodes.map((n) => n.id),
    );
    expect(full, 'a task was ready but not looked at').toEqual({ start: [], settle: [] });

    if (running.length === 0) break;
    const finished: string[] = [];
    const howMany = 1 + (next() % Math.min(3, running.length));
    for (let k = 0; k < howMany; k++) {
      const [id] = running.splice(next() % running.length, 1);
      status[id] = tasks[Number(id.slice(1))].fails ? 'failed' : 'success';
      finished.push(id);
    }
    candidates = finished.flatMap((id) => down.get(id) ?? []);
  }
  return { nodes, status, startedAt, settled };
}

const EARLY_START: Partial<Record<TriggerRule, (up: TaskStatus[]) => boolean>> = {
  // Rules that may start before every upstream is final, and what they need to see first.
  always: () => true,
  one_success: (up) => up.some((s) => s === 'success' || s === 'excluded'),
  one_failed: (up) => up.some((s) => s === 'failed' || s === 'upstream_failed' || s === 'cancelled'),
  one_done: (up) => up.some((s) => s === 'success' || s === 'excluded' || s === 'failed' || s === 'cancelled'),
};

describe('planner on random DAGs (as the workflow drives it)', () => {
  const RUNS = { numRuns: 400 };

  it('(a) ends every task in exactly one final state, (d) decided once', () => {
    fc.assert(
      fc.property(randomDag, ({ tasks, choices }) => {
        const t = simulate(tasks, choices);
        for (const n of t.nodes) {
          expect(['success', 'failed', 'skipped', 'upstream_failed'] satisfies Final[]).toContain(t.status[n.id]);
          const times = (t.startedAt.has(n.id) ? 1 : 0) + (t.settled.get(n.id) ?? 0);
          expect(times, `${n.id} decided ${times} times`).toBe(1);
        }
      }),
      RUNS,
    );
  });

  it('(b) starts a task only once its needs are final, except rules that start early, and those only with cause', () => {
    fc.assert(
      fc.property(randomDag, ({ tasks, choices }) => {
        const t = simulate(tasks, choices);
        for (const n of t.nodes) {
          const seen = t.startedAt.get(n.id);
          if (!seen) continue;
          const up = Object.values(seen);
          if (up.length === 0) continue;
          const early = EARLY_START[n.trigger];
          if (early && !up.every(isFinal))
            expect(early(up), `${n.id} (${n.trigger}) started early on ${JSON.stringify(seen)}`).toBe(true);
          else expect(up.every(isFinal), `${n.id} (${n.trigger}) started on ${JSON.stringify(seen)}`).toBe(true);
        }
      }),
      RUNS,
    );
  });

  it('(c) ends each task as its trigger rule says, given the final upstream states', () => {
    fc.assert(
      fc.property(randomDag, ({ tasks, choices }) => {
        const t = simulate(tasks, choices);
        for (const [i, n] of t.nodes.entries()) {
          const verdict = oracle(
            n.trigger,
            n.needs.map((u) => t.status[u]),
          );
          const why = `${n.id} (${n.trigger}) over ${JSON.stringify(n.needs.map((u) => t.status[u]))}`;
          if (verdict === 'run') {
            expect(t.startedAt.has(n.id), why).toBe(true);
            expect(t.status[n.id], why).toBe(tasks[i].fails ? 'failed' : 'success');
          } else {
            expect(t.startedAt.has(n.id), why).toBe(false);
            expect(t.status[n.id], why).toBe(verdict);
          }
        }
      }),
      RUNS,
    );
  });

  it('a chain of all_success tasks stops at the first failure', () => {
    const tasks: RandomTask[] = [
      { needs: [], trigger: 'all_success', fails: false },
      { needs: [0], trigger: 'all_success', fails: true },
      { needs: [1], trigger: 'all_success', fails: false },
      { needs: [2], trigger: 'all_done', fails: false },
      { needs: [3], trigger: 'all_success', fails: false },
    ];
    expect(simulate(tasks, [0]).status).toEqual({
      t0: 'success',
      t1: 'failed',
      t2: 'upstream_failed',
      t3: 'success',
      t4: 'success',
    });
  });

  it('settles a whole downstream in one plan() when a task fails', () => {
    const nodes: PlanNode[] = [
      { id: 'a', needs: [], trigger: 'all_success' },
      { id: 'b', needs: ['a'], trigger: 'all_success' },
      { id: 'c', needs: ['b'], trigger: 'none_failed' },
      { id: 'd', needs: ['c'], trigger: 'all_failed' },
    ];
    const status: Record<string, TaskStatus> = { a: 'failed', b: 'pending', c: 'pending', d: 'pending' };
    const p = plan(new Map(nodes.map((n) => [n.id, n])), downstreamIndex(nodes), (id) => status[id], ['b']);
    expect(p).toEqual({
      start: ['d'],
      settle: [
        { id: 'b', status: 'upstream_failed' },
        { id: 'c', status: 'upstream_failed' },
      ],
    });
  });

  it('ignores candidates that are unknown, running or already final', () => {
    const nodes: PlanNode[] = [
      { id: 'a', needs: [], trigger: 'all_success' },
      { id: 'b', needs: [], trigger: 'all_success' },
    ];
    const status: Record<string, TaskStatus> = { a: 'running', b: 'success' };
    expect(
      plan(new Map(nodes.map((n) => [n.id, n])), downstreamIndex(nodes), (id) => status[id], ['a', 'b', 'ghost']),
    ).toEqual({ start: [], settle: [] });
  });
});

describe('downstreamIndex', () => {
  it('maps each task to the tasks that need it', () => {
    const nodes: PlanNode[] = [
      { id: 'a', needs: [], trigger: 'all_success' },
      { id: 'b', needs: ['a'], trigger: 'all_success' },
      { id: 'c', needs: ['a', 'b'], trigger: 'all_success' },
    ];
    expect(Object.fromEntries(downstreamIndex(nodes))).toEqual({ a: ['b', 'c'], b: ['c'], c: [] });
  });
});

describe('selectTasks', () => {
  const nodes: PlanNode[] = [
    { id: 'a', needs: [], trigger: 'all_success' },
    { id: 'b', needs: ['a'], trigger: 'all_success' },
    { id: 'c', needs: ['a'], trigger: 'all_success' },
    { id: 'd', needs: ['b', 'c'], trigger: 'all_success' },
    { id: 'e', needs: [], trigger: 'all_success' },
  ];

  it('selects only the named tasks without upstream', () => {
    expect([...selectTasks(nodes, ['d', 'e'], false)].sort()).toEqual(['d', 'e']);
  });

  it('adds the transitive upstream on request (each once, through a diamond)', () => {
    expect([...selectTasks(nodes, ['d'], true)].sort()).toEqual(['a', 'b', 'c', 'd']);
    expect([...selectTasks(nodes, ['b', 'e'], true)].sort()).toEqual(['a', 'b', 'e']);
  });

  // Regression guard (found by this suite, fixed).
  it('selects the whole upstream of a 20,000-task chain', () => {
    const n = 20_000;
    const chain: PlanNode[] = Array.from({ length: n }, (_, i) => ({
      id: `t${i}`,
      needs: i ? [`t${i - 1}`] : [],
      trigger: 'all_success',
    }));
    expect(selectTasks(chain, [`t${n - 1}`], true).size).toBe(n);
  });
});

describe('findCycle', () => {
  /** Random acyclic graph on n tasks (edges low -> high), listed in a random order. */
  const acyclic = fc.integer({ min: 2, max: 30 }).chain((n) =>
    fc.record({
      n: fc.constant(n),
      edges: fc.array(fc.tuple(fc.nat(n - 1), fc.nat(n - 1)), { maxLength: 3 * n }),
      order: fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n }),
      back: fc.tuple(fc.nat(n - 1), fc.nat(n - 1)),
    }),
  );
  const build = (n: number, edges: [number, number][], order: number[]) => {
    const needs: string[][] = Array.from({ length: n }, () => []);
    for (const [x, y] of edges) {
      const [lo, hi] = [Math.min(x, y), Math.max(x, y)];
      if (lo !== hi && !needs[hi].includes(`t${lo}`)) needs[hi].push(`t${lo}`);
    }
    return { needs, list: () => order.map((i) => ({ id: `t${i}`, needs: needs[i] })) };
  };

  it('returns null for acyclic graphs', () => {
    fc.assert(
      fc.property(acyclic, ({ n, edges, order }) => {
        expect(findCycle(build(n, edges, order).list())).toBeNull();
      }),
      { numRuns: 300 },
    );
  });

  it('returns a real cycle when a back edge closes a path', () => {
    fc.assert(
      fc.property(acyclic, ({ n, edges, order, back: [x, y] }) => {
        const [lo, hi] = x === y ? [0, n - 1] : [Math.min(x, y), Math.max(x, y)];
        const g = build(n, edges, order);
        for (let i = lo + 1; i <= hi; i++) if (!g.needs[i].includes(`t${i - 1}`)) g.needs[i].push(`t${i - 1}`); // path lo -> ... -> hi
        g.needs[lo].push(`t${hi}`); // back edge: lo needs hi
        const tasks = g.list();
        const cycle = findCycle(tasks);
        expect(cycle).not.toBeNull();
        const ids = cycle!;
        expect(ids.length).toBeGreaterThanOrEqual(3);
        expect(ids[0]).toBe(ids[ids.length - 1]); // closes on its first task
        expect(new Set(ids.slice(0, -1)).size).toBe(ids.length - 1); // no task twice
        const needsOf = new Map(tasks.map((t) => [t.id, t.needs]));
        for (let i = 0; i + 1 < ids.length; i++)
          expect(needsOf.get(ids[i + 1]), `${ids[i]} -> ${ids[i + 1]}`).toContain(ids[i]); // a -> b: b needs a
      }),
      { numRuns: 300 },
    );
  });

  it('ignores needs on unknown tasks', () => {
    expect(findCycle([{ id: 'a', needs: ['ghost'] }])).toBeNull();
  });
});
