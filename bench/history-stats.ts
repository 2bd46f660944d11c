/**
 * What a run wrote to Temporal, execution by execution: events, history bytes and the
 * largest payload (workflow and activity inputs and results, child inputs, continue-as-new
 * input, failure details, markers). The scale benchmark prints it and the scale tests
 * assert on it. And where its SQL tasks' fixed costs went (`taskGaps`, for bench:medallion).
 */
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';

const { temporal } = proto;

export interface ExecutionStats {
  runId: string;
  events: number;
  historyBytes: number;
  largestPayload: number;
  /** Where the largest payload was (event type). */
  largestAt: string;
  /** The execution's start input (a first start, or a continue-as-new). */
  startInputBytes: number;
}

export interface RunHistoryStats {
  executions: ExecutionStats[];
  largestPayload: number;
  largestAt: string;
  maxEvents: number;
  maxHistoryBytes: number;
  totalEvents: number;
}

function payloadBytes(p: { data?: Uint8Array | null; metadata?: Record<string, Uint8Array> | null }): number {
  let n = p.data?.length ?? 0;
  for (const [k, v] of Object.entries(p.metadata ?? {})) n += k.length + (v?.length ?? 0);
  return n;
}

/** Every payload in an event, wherever it nests. */
function* payloadsIn(v: unknown, depth = 0): Generator<number> {
  if (!v || typeof v !== 'object' || depth > 12 || v instanceof Uint8Array) return;
  const o = v as Record<string, unknown>;
  if (o.data instanceof Uint8Array && ('metadata' in o || depth > 0)) {
    yield payloadBytes(o);
    return;
  }
  for (const x of Array.isArray(v) ? v : Object.values(o)) yield* payloadsIn(x, depth + 1);
}

export async function runHistoryStats(client: Client, workflowId: string): Promise<RunHistoryStats> {
  const runIds: string[] = [];
  for await (const ex of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runIds.push(ex.runId);
  const executions: ExecutionStats[] = [];
  for (const runId of runIds) {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    let largest = 0;
    let at = '';
    for (const e of history.events ?? []) {
      for (const n of payloadsIn(e)) {
        if (n > largest) {
          largest = n;
          at = String(temporal.api.enums.v1.EventType[e.eventType as number] ?? e.eventType);
        }
      }
    }
    const first = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input;
    const startInputBytes = [...payloadsIn(first ?? {})].reduce((a, b) => a + b, 0);
    const bytes = temporal.api.history.v1.History.encode(history).finish().length;
    executions.push({
      runId,
      events: history.events?.length ?? 0,
      historyBytes: bytes,
      largestPayload: largest,
      largestAt: at,
      startInputBytes,
    });
  }
  const top = executions.reduce((a, b) => (b.largestPayload > a.largestPayload ? b : a), executions[0]);
  return {
    executions,
    largestPayload: top?.largestPayload ?? 0,
    largestAt: top?.largestAt ?? '',
    maxEvents: Math.max(0, ...executions.map((e) => e.events)),
    maxHistoryBytes: Math.max(0, ...executions.map((e) => e.historyBytes)),
    totalEvents: executions.reduce((s, e) => s + e.events, 0),
  };
}

export const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

/** One task's share of a fixed cost, named (e.g. by round and task) so that an outlier can be found. */
export interface Gap {
  task: string;
  ms: number;
}
export interface Gaps {
  decide: Gap[];
  dispatch: Gap[];
  wrap: Gap[];
  report: Gap[];
}

/**
 * The fixed cost of each SQL task (`runSql`) from an execution's history, for a run that ran its
 * tasks one at a time: the workflow task that schedules its activity, the dispatch to the worker,
 * the activity's time outside its body, and the report back. `ran` names the tasks in the order
 * they ran, each with its activity's own `timings.total` (the body): with one task at a time the
 * n-th activity scheduled is the n-th task that ran, whatever the spec's order.
 */
export function taskGaps(history: proto.temporal.api.history.v1.IHistory, ran: { id: string; body: number }[]): Gaps {
  const T = temporal.api.enums.v1.EventType;
  const events = history.events ?? [];
  const at = (e: (typeof events)[number]) =>
    Number(e.eventTime?.seconds ?? 0) * 1000 + Math.round((e.eventTime?.nanos ?? 0) / 1e6);
  const g: Gaps = { decide: [], dispatch: [], wrap: [], report: [] };
  let wftStarted = 0;
  const scheduled = new Map<string, { at: number; task: string; body: number; started?: number }>();
  for (const e of events) {
    if (e.eventType === T.EVENT_TYPE_WORKFLOW_TASK_STARTED) {
      wftStarted = at(e);
      continue;
    }
    if (e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
      if (e.activityTaskScheduledEventAttributes?.activityType?.name !== 'runSql') continue;
      const { id: task, body } = ran[scheduled.size] ?? { id: '?', body: 0 };
      scheduled.set(String(e.eventId), { at: at(e), task, body });
      g.decide.push({ task, ms: at(e) - wftStarted });
    } else if (e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_STARTED) {
      const s = scheduled.get(String(e.activityTaskStartedEventAttributes?.scheduledEventId));
      if (!s) continue;
      s.started = at(e);
      g.dispatch.push({ task: s.task, ms: s.started - s.at });
    } else if (e.eventType === T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) {
      const s = scheduled.get(String(e.activityTaskCompletedEventAttributes?.scheduledEventId));
      if (s?.started === undefined) continue;
      g.wrap.push({ task: s.task, ms: at(e) - s.started - s.body });
      const next = events.find(
        (x) => Number(x.eventId) > Number(e.eventId) && x.eventType === T.EVENT_TYPE_WORKFLOW_TASK_STARTED,
      );
      if (next) g.report.push({ task: s.task, ms: at(next) - at(e) });
    }
  }
  return g;
}
