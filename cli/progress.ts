/** Live per-task progress for `--follow`, and the status table. */
import type { RunsService } from '../client/runs.js';
import type { RunState, TaskState } from '../schemas/run.js';

function describe(t: TaskState): string {
  const bits: string[] = [t.status];
  if (t.attempts > 1) bits.push(`${t.attempts} attempts`);
  if (t.reusedFrom) bits.push('reused');
  if (t.output?.rowCount !== undefined) bits.push(`${t.output.rowCount} rows`);
  if (t.startedAt && t.endedAt && !t.reusedFrom)
    bits.push(`${((Date.parse(t.endedAt) - Date.parse(t.startedAt)) / 1000).toFixed(1)} s`);
  if (t.error) bits.push(`— ${t.error}`);
  return bits.join(', ');
}

export function formatState(st: RunState): string {
  const width = Math.max(4, ...Object.keys(st.tasks).map((k) => k.length));
  const lines = [
    `${st.runId}  ${st.status}  (pipeline ${st.pipelineId}, trigger ${st.trigger}, logical date ${st.logicalDate})`,
  ];
  for (const [id, t] of Object.entries(st.tasks)) lines.push(`  ${id.padEnd(width)}  ${describe(t)}`);
  return lines.join('\n');
}

export async function followRun(
  runs: RunsService,
  runId: string,
  out: (s: string) => void = (s) => console.log(s),
  intervalMs = 500,
): Promise<string> {
  const seen = new Map<string, string>();
  for (;;) {
    let st: RunState;
    try {
      st = await runs.state(runId);
    } catch (e) {
      // A continue-as-new or a busy worker can make a query fail for a moment.
      await new Promise((r) => setTimeout(r, intervalMs));
      if ((e as { status?: number }).status === 404) throw e;
      continue;
    }
    const width = Math.max(4, ...Object.keys(st.tasks).map((k) => k.length));
    for (const [id, t] of Object.entries(st.tasks)) {
      const d = `${t.status}${t.attempts > 1 ? ` (attempt ${t.attempts})` : ''}`;
      if (seen.get(id) === d) continue;
      seen.set(id, d);
      if (t.status === 'pending') continue;
      out(`${new Date().toISOString().slice(11, 19)}  ${id.padEnd(width)}  ${describe(t)}`);
    }
    if (st.status !== 'running') {
      out(`run ${st.status}`);
      return st.status;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
