/**
 * Compact form of the run state carried across continue-as-new. A 10,000-task run
 * carries every task's state; as tuples with epoch times it is about a third of the
 * object form, which keeps the continue-as-new payload well under Temporal's 2 MB limit.
 */
import {
  TASK_STATUSES,
  type CarriedState,
  type CarriedTask as Tuple,
  type RunState,
  type TaskState,
  type TaskStatus,
} from '../schemas/run.js';

const STATUSES: readonly TaskStatus[] = TASK_STATUSES;

const ms = (iso?: string) => (iso ? Date.parse(iso) : 0);
const iso = (n: number) => (n ? new Date(n).toISOString() : undefined);

export function packState(state: RunState): CarriedState {
  const { tasks, ...header } = state;
  return {
    header,
    tasks: Object.entries(tasks).map(([id, t]) => {
      const rest: Tuple[5] = {};
      if (t.output && Object.keys(t.output).length) rest.output = t.output;
      if (t.error) rest.error = t.error;
      if (t.errorType) rest.errorType = t.errorType;
      if (t.reusedFrom) rest.reusedFrom = t.reusedFrom;
      const tuple: Tuple = [id, STATUSES.indexOf(t.status), t.attempts, ms(t.startedAt), ms(t.endedAt)];
      if (Object.keys(rest).length) tuple.push(rest);
      return tuple;
    }),
  };
}

/** Also reads the plain RunState that runs started before the compact form carried. */
export function unpackState(c: CarriedState | RunState): RunState {
  if (!('header' in c)) return c;
  const tasks: Record<string, TaskState> = {};
  for (const [id, s, attempts, start, end, rest] of c.tasks) {
    const t: TaskState = { status: STATUSES[s], attempts };
    if (start) t.startedAt = iso(start);
    if (end) t.endedAt = iso(end);
    Object.assign(t, rest);
    if (t.status === 'success' && !t.output && !t.reusedFrom) t.output = {};
    tasks[id] = t;
  }
  return { ...c.header, tasks };
}
