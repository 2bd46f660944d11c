/**
 * The pure DAG planner: given the spec's edges, trigger rules and the current task
 * states, it says which tasks to start now and which are decided without running.
 * No Temporal, no I/O: the workflow and the property tests both drive it.
 */
import type { TriggerRule } from '../schemas/pipeline.js';
import type { TaskStatus } from '../schemas/run.js';

export interface PlanNode {
  id: string;
  needs: string[];
  trigger: TriggerRule;
}

/** How an upstream's final state counts for its downstream. */
type Outcome = 'success' | 'failed' | 'skipped';
function outcome(s: TaskStatus): Outcome | null {
  switch (s) {
    case 'success':
    case 'excluded':
      return 'success';
    case 'failed':
    case 'upstream_failed':
    case 'cancelled':
      return 'failed';
    case 'skipped':
      return 'skipped';
    default:
      return null;
  }
}

export interface Counts {
  total: number;
  success: number;
  /** Failed in any way: failed, cancelled, or never ran because its own upstream failed. */
  failed: number;
  /** Of `failed`, those that never ran (`upstream_failed`): Airflow does not count them as done. */
  upstreamFailed: number;
  skipped: number;
  done: number;
}

export type Decision = 'run' | 'skipped' | 'upstream_failed' | 'wait';
export type RuleTable = Record<TriggerRule, (c: Counts) => Decision>;

/**
 * The trigger rules, one line each: given the upstream counts, decide now or wait.
 * Rules that can tell early (a failure under all_success) do so without waiting for
 * the other upstreams, so a task starts (or is ruled out) as soon as it is decided.
 * The README's rule table is checked against this one by the planner's tests.
 */
export const TRIGGER_TABLE: RuleTable = {
  // A failure anywhere wins over a skip, so a skip is only final once every upstream is.
  all_success: (c) => (c.failed ? 'upstream_failed' : c.done < c.total ? 'wait' : c.skipped ? 'skipped' : 'run'),
  all_failed: (c) => (c.success || c.skipped ? 'skipped' : c.done === c.total ? 'run' : 'wait'),
  all_done: (c) => (c.done === c.total ? 'run' : 'wait'),
  // No upstream succeeded but one failed: the failure shows downstream, as in Airflow.
  all_done_min_one_success: (c) =>
    c.done < c.total ? 'wait' : c.success ? 'run' : c.failed ? 'upstream_failed' : 'skipped',
  all_skipped: (c) => (c.success || c.failed ? 'skipped' : c.done === c.total ? 'run' : 'wait'),
  one_success: (c) => (c.success ? 'run' : c.done < c.total ? 'wait' : c.failed ? 'upstream_failed' : 'skipped'),
  one_failed: (c) => (c.failed ? 'run' : c.done === c.total ? 'skipped' : 'wait'),
  // Done means it ran (succeeded or failed); a task that never ran (upstream_failed) is not done.
  one_done: (c) => (c.success || c.failed > c.upstreamFailed ? 'run' : c.done === c.total ? 'skipped' : 'wait'),
  none_failed: (c) => (c.failed ? 'upstream_failed' : c.done === c.total ? 'run' : 'wait'),
  none_failed_min_one_success: (c) =>
    c.failed ? 'upstream_failed' : c.done < c.total ? 'wait' : c.success ? 'run' : 'skipped',
  none_skipped: (c) => (c.skipped ? 'skipped' : c.done === c.total ? 'run' : 'wait'),
  always: () => 'run',
};

/**
 * The rules as runs recorded before the fix decided them (workflows/pipeline-v0.ts replays
 * those histories): `one_done` counted upstream_failed as done, and all_done_min_one_success
 * ended `skipped` when every upstream failed.
 */
export const LEGACY_TRIGGER_TABLE: RuleTable = {
  ...TRIGGER_TABLE,
  all_done_min_one_success: (c) => (c.done < c.total ? 'wait' : c.success ? 'run' : 'skipped'),
  one_done: (c) => (c.success || c.failed ? 'run' : c.done === c.total ? 'skipped' : 'wait'),
};

export function countUpstream(node: PlanNode, status: (id: string) => TaskStatus): Counts {
  const c: Counts = { total: node.needs.length, success: 0, failed: 0, upstreamFailed: 0, skipped: 0, done: 0 };
  for (const n of node.needs) {
    const s = status(n);
    const o = outcome(s);
    if (!o) continue;
    c.done++;
    c[o]++;
    if (s === 'upstream_failed') c.upstreamFailed++;
  }
  return c;
}

/** Decides one pending task. A task with no upstream always runs. */
export function decide(node: PlanNode, status: (id: string) => TaskStatus, rules: RuleTable = TRIGGER_TABLE): Decision {
  if (node.needs.length === 0) return 'run';
  return rules[node.trigger](countUpstream(node, status));
}

export interface Plan {
  /** Ready to start, in the order found. */
  start: string[];
  /** Decided without running. */
  settle: { id: string; status: 'skipped' | 'upstream_failed' }[];
}

export function downstreamIndex(nodes: PlanNode[]): Map<string, string[]> {
  const down = new Map<string, string[]>(nodes.map((n) => [n.id, []]));
  for (const n of nodes) for (const u of n.needs) down.get(u)?.push(n.id);
  return down;
}

/**
 * One planning step. `candidates` are the tasks whose upstream just changed (all tasks
 * at the start); settling a task can decide its downstream, so those are looked at too.
 * Work is proportional to the edges touched, not the DAG size, so 10,000-task DAGs plan
 * cheaply on every completion. `status` must answer 'running' for tasks already queued.
 */
export function plan(
  byId: Map<string, PlanNode>,
  down: Map<string, string[]>,
  status: (id: string) => TaskStatus,
  candidates: Iterable<string>,
  rules: RuleTable = TRIGGER_TABLE,
): Plan {
  const local = new Map<string, TaskStatus>();
  const get = (id: string) => local.get(id) ?? status(id);
  const start: string[] = [];
  const settle: Plan['settle'] = [];
  const work = [...candidates];
  for (let i = 0; i < work.length; i++) {
    const id = work[i];
    const n = byId.get(id);
    if (!n || get(id) !== 'pending') continue;
    const d = decide(n, get, rules);
    if (d === 'wait') continue;
    if (d === 'run') {
      local.set(id, 'running');
      start.push(id);
    } else {
      local.set(id, d);
      settle.push({ id, status: d });
      work.push(...(down.get(id) ?? []));
    }
  }
  return { start, settle };
}

/** The tasks `only` selects, with their transitive upstream when asked. */
export function selectTasks(nodes: PlanNode[], only: string[], withUpstream: boolean): Set<string> {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const chosen = new Set<string>();
  const work = [...only]; // iterative: long chains must not overflow the stack
  for (let id = work.pop(); id !== undefined; id = work.pop()) {
    if (chosen.has(id)) continue;
    chosen.add(id);
    if (withUpstream) work.push(...(byId.get(id)?.needs ?? []));
  }
  return chosen;
}

export function isFinal(s: TaskStatus): boolean {
  return s !== 'pending' && s !== 'running';
}
