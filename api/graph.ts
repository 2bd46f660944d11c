/** A run's DAG, coloured by task state: SVG (laid out here, no external renderer), Mermaid or DOT. */
import type { PipelineSpec } from '../schemas/pipeline.js';
import type { RunState, TaskStatus } from '../schemas/run.js';

export const STATUS_COLOURS: Record<TaskStatus, string> = {
  pending: '#e5e7eb',
  running: '#93c5fd',
  success: '#86efac',
  failed: '#fca5a5',
  upstream_failed: '#fdba74',
  skipped: '#f3f4f6',
  cancelled: '#d1d5db',
  excluded: '#ffffff',
};

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Layers by longest path from a root; order within a layer by spec order. */
function layers(spec: PipelineSpec): string[][] {
  const depth = new Map<string, number>();
  const byId = new Map(spec.tasks.map((t) => [t.id, t]));
  const d = (id: string): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    const v = Math.max(-1, ...byId.get(id)!.needs.map(d)) + 1;
    depth.set(id, v);
    return v;
  };
  const out: string[][] = [];
  for (const t of spec.tasks) (out[d(t.id)] ??= []).push(t.id);
  return out;
}

export function renderGraph(spec: PipelineSpec, st: RunState, format: 'svg' | 'mermaid' | 'dot'): string {
  const status = (id: string) => st.tasks[id]?.status ?? 'pending';
  if (format === 'mermaid') {
    const lines = ['flowchart LR'];
    const safe = (id: string) => id.replace(/[^A-Za-z0-9_]/g, '_');
    for (const t of spec.tasks) lines.push(`  ${safe(t.id)}["${t.id}<br/>${status(t.id)}"]:::${status(t.id)}`);
    for (const t of spec.tasks) for (const n of t.needs) lines.push(`  ${safe(n)} --> ${safe(t.id)}`);
    for (const [s, c] of Object.entries(STATUS_COLOURS)) lines.push(`  classDef ${s} fill:${c},stroke:#374151`);
    return lines.join('\n') + '\n';
  }
  if (format === 'dot') {
    const lines = [
      'digraph run {',
      '  rankdir=LR;',
      '  node [shape=box, style="rounded,filled", fontname="sans-serif"];',
    ];
    for (const t of spec.tasks)
      lines.push(`  "${t.id}" [label="${t.id}\\n${status(t.id)}", fillcolor="${STATUS_COLOURS[status(t.id)]}"];`);
    for (const t of spec.tasks) for (const n of t.needs) lines.push(`  "${n}" -> "${t.id}";`);
    lines.push('}');
    return lines.join('\n') + '\n';
  }
  const L = layers(spec);
  const W = 170;
  const H = 54;
  const GX = 60;
  const GY = 24;
  const pos = new Map<string, { x: number; y: number }>();
  L.forEach((layer, i) => layer.forEach((id, j) => pos.set(id, { x: 20 + i * (W + GX), y: 20 + j * (H + GY) })));
  const width = 40 + L.length * (W + GX) - GX;
  const height = 40 + Math.max(...L.map((l) => l.length)) * (H + GY) - GY;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
  ];
  for (const t of spec.tasks)
    for (const n of t.needs) {
      const a = pos.get(n)!;
      const b = pos.get(t.id)!;
      parts.push(
        `<path d="M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}" fill="none" stroke="#6b7280" stroke-width="1.5"/>`,
      );
    }
  for (const t of spec.tasks) {
    const p = pos.get(t.id)!;
    const s = status(t.id);
    parts.push(
      `<g class="task" data-task="${esc(t.id)}" data-status="${s}">` +
        `<a href="/api/v1/runs/${encodeURIComponent(st.runId)}/tasks/${encodeURIComponent(t.id)}">` +
        `<rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="8" fill="${STATUS_COLOURS[s]}" stroke="#374151"/>` +
        `<text x="${p.x + 10}" y="${p.y + 22}" font-weight="bold">${esc(t.id)}</text>` +
        `<text x="${p.x + 10}" y="${p.y + 41}">${s}${st.tasks[t.id]?.attempts > 1 ? ` ×${st.tasks[t.id].attempts}` : ''}</text>` +
        `</a></g>`,
    );
  }
  parts.push('</svg>');
  return parts.join('');
}

/**
 * The catalogued datasets a task's output names (what it wrote, a comparison's differences), as
 * `layer[.namespace].name@version`: any kind whose output carries them, so a table an external
 * engine writes is listed once it is catalogued.
 */
export function outputDatasets(output: Record<string, unknown> | undefined): { ref: string; rows?: number }[] {
  const out: { ref: string; rows?: number }[] = [];
  const add = (dataset: unknown, namespace: unknown, version: unknown, rows: unknown) => {
    if (typeof dataset !== 'string' || !Number.isInteger(version)) return;
    const m = /^(bronze|silver|gold)\.([a-z_][a-z0-9_]*)$/.exec(dataset);
    if (!m) return;
    const ns = typeof namespace === 'string' && namespace !== 'default' ? `${namespace}.` : '';
    out.push({ ref: `${m[1]}.${ns}${m[2]}@${String(version)}`, ...(typeof rows === 'number' ? { rows } : {}) });
  };
  if (output) {
    add(output.dataset, output.namespace, output.version, output.rowCount);
    const d = output.differencesDataset as Record<string, unknown> | undefined;
    if (d) add(d.dataset, d.namespace, d.version, d.rows);
  }
  return out;
}

/** The run page: the graph, a table of tasks with their datasets' previews, a link to the Temporal UI; refreshes while live. */
export function runPage(spec: PipelineSpec, st: RunState, uiUrl: string): string {
  const previews = (t: RunState['tasks'][string]) =>
    outputDatasets(t.output)
      .map(
        (d) =>
          `<a class="preview" href="/api/v1/datasets/${encodeURIComponent(d.ref)}/preview">${esc(d.ref)}</a>${d.rows !== undefined ? ` (${d.rows} rows)` : ''}`,
      )
      .join('<br>');
  const rows = spec.tasks
    .map((s) => [s.id, st.tasks[s.id] ?? { status: 'pending' as const, attempts: 0 }] as const)
    .map(
      ([id, t]) =>
        `<tr><td><a href="/api/v1/runs/${encodeURIComponent(st.runId)}/tasks/${encodeURIComponent(id)}">${esc(id)}</a></td><td class="s-${t.status}">${t.status}</td><td>${t.attempts}</td><td>${previews(t)}</td><td>${esc(t.error ?? '')}</td></tr>`,
    )
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(st.pipelineId)} — ${st.status}</title>${st.status === 'running' ? '<meta http-equiv="refresh" content="2">' : ''}
<style>body{font-family:sans-serif;margin:24px;color:#111827}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:left}${Object.entries(
    STATUS_COLOURS,
  )
    .map(([s, c]) => `.s-${s}{background:${c}}`)
    .join('')}</style></head><body>
<h1>${esc(st.pipelineId)} <small id="status">${st.status}</small></h1>
<p>Run <code>${esc(st.runId)}</code> · trigger ${esc(String(st.trigger))} · logical date ${esc(st.logicalDate)} · <a id="temporal" href="${esc(uiUrl)}">open in the Temporal UI</a></p>
<div id="graph">${renderGraph(spec, st, 'svg')}</div>
<table><thead><tr><th>task</th><th>state</th><th>attempts</th><th>output</th><th>error</th></tr></thead><tbody>${rows}</tbody></table>
</body></html>`;
}
