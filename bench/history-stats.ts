/**
 * What a run wrote to Temporal, execution by execution: events, history bytes and the
 * largest payload (workflow and activity inputs and results, child inputs, continue-as-new
 * input, failure details, markers). The scale benchmark prints it and the scale tests
 * assert on it.
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
