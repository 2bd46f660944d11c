/**
 * The spec template syntax: `{{ name }}` or `{{ params.name }}`, nothing else.
 * No expressions, no code evaluation: a variable is looked up, or it is an error.
 */
const TEMPLATE_RE = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*\}\}/g;
const OPEN_RE = /\{\{/g;

/** Variables every run defines besides `params.*`. */
export const BUILTIN_VARIABLES = ['ds', 'ds_nodash', 'logical_date', 'run_id', 'pipeline_id', 'task_id', 'tenant', 'trigger'] as const;

export type TemplateVars = Record<string, string>;

/** Names used in a string, and malformed `{{` openings. */
export function scanTemplate(text: string): { names: string[]; malformed: boolean } {
  const names: string[] = [];
  for (const m of text.matchAll(TEMPLATE_RE)) names.push(m[1]);
  const opens = (text.match(OPEN_RE) ?? []).length;
  return { names, malformed: opens !== names.length };
}

export function renderString(text: string, vars: TemplateVars): string {
  return text.replace(TEMPLATE_RE, (_all, name: string) => {
    // Own properties only: "constructor" or "__proto__" must not reach Object.prototype.
    const value = Object.hasOwn(vars, name) ? vars[name] : undefined;
    if (typeof value !== 'string') throw new Error(`unknown template variable "${name}"`);
    return value;
  });
}

/** Renders every string inside a JSON-like value; object keys are left as written. */
export function renderDeep<T>(value: T, vars: TemplateVars): T {
  if (typeof value === 'string') return renderString(value, vars) as T;
  if (Array.isArray(value)) return value.map((v) => renderDeep(v, vars)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = renderDeep(v, vars);
    return out as T;
  }
  return value;
}

/** Every string inside a JSON-like value with its path, for validation. */
export function* stringsIn(value: unknown, path: (string | number)[] = []): Generator<[string, (string | number)[]]> {
  if (typeof value === 'string') yield [value, path];
  else if (Array.isArray(value)) for (let i = 0; i < value.length; i++) yield* stringsIn(value[i], [...path, i]);
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) yield* stringsIn(v, [...path, k]);
}

/** Builds the variables of one run; `logicalDate` is an ISO timestamp. */
export function runVariables(opts: {
  logicalDate: string;
  runId: string;
  pipelineId: string;
  tenant: string;
  trigger: string;
  params: Record<string, string>;
}): TemplateVars {
  const ds = opts.logicalDate.slice(0, 10);
  const vars: TemplateVars = {
    ds,
    ds_nodash: ds.replaceAll('-', ''),
    logical_date: opts.logicalDate,
    run_id: opts.runId,
    pipeline_id: opts.pipelineId,
    tenant: opts.tenant,
    trigger: opts.trigger,
  };
  for (const [k, v] of Object.entries(opts.params)) vars[`params.${k}`] = v;
  return vars;
}
