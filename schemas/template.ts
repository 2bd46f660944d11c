import type { ParamDecl } from './params.js';
import { checkParamValue } from './params.js';
import {
  SQL_FILTERS,
  SqlTextError,
  filterSiteProblems,
  sqlIdent,
  sqlLiteral,
  unsafeBuiltin,
  type SqlTextDialect,
} from './sql-text.js';

/**
 * The spec template syntax: `{{ name }}`, `{{ params.name }}`, and in SQL fields
 * `{{ params.name | literal }}` / `{{ params.name | ident }}`, nothing else. No
 * expressions, no code evaluation: a variable is looked up, or it is an error.
 */
const TEMPLATE_RE =
  /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*(?:\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*)?\}\}/g;
/** The syntax before filters; runs recorded before typed params replay with it. */
const LEGACY_TEMPLATE_RE = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*\}\}/g;
const OPEN_RE = /\{\{/g;

/** Variables every run defines besides `params.*`. */
export const BUILTIN_VARIABLES = [
  'ds',
  'ds_nodash',
  'logical_date',
  'run_id',
  'pipeline_id',
  'task_id',
  'tenant',
  'trigger',
] as const;

export type TemplateVars = Record<string, string>;

export interface TemplateUse {
  name: string;
  filter?: string;
  start: number;
  end: number;
}

/** Names used in a string (with their filters and places), and malformed `{{` openings. */
export function scanTemplate(text: string): { names: string[]; uses: TemplateUse[]; malformed: boolean } {
  const uses: TemplateUse[] = [];
  for (const m of text.matchAll(TEMPLATE_RE))
    uses.push({ name: m[1], ...(m[2] ? { filter: m[2] } : {}), start: m.index, end: m.index + m[0].length });
  const opens = (text.match(OPEN_RE) ?? []).length;
  return { names: uses.map((u) => u.name), uses, malformed: opens !== uses.length };
}

/** Renders as runs before typed params did (kept for their replay). */
export function renderString(text: string, vars: TemplateVars): string {
  return text.replace(LEGACY_TEMPLATE_RE, (_all, name: string) => {
    // Own properties only: "constructor" or "__proto__" must not reach Object.prototype.
    const value = Object.hasOwn(vars, name) ? vars[name] : undefined;
    if (typeof value !== 'string') throw new Error(`unknown template variable "${name}"`);
    return value;
  });
}

/** How to render one field: its SQL dialect (undefined for a field that is not SQL) and the run's param declarations. */
export interface FieldContext {
  sql?: SqlTextDialect;
  params: Record<string, ParamDecl>;
}

export function rawParamInSqlMessage(name: string): string {
  return `${name} is a run value and is never pasted into SQL: write {{ ${name} | literal }} for a value, or {{ ${name} | ident }} for a table or column name`;
}

/** What is wrong with the uses in one field (validation and trigger time); empty when fine. */
export function templateUseProblems(text: string, uses: TemplateUse[], ctx: FieldContext): string[] {
  const out: string[] = [];
  const sites = ctx.sql
    ? filterSiteProblems(
        text,
        uses.map((u) => [u.start, u.end]),
        ctx.sql,
      )
    : [];
  uses.forEach((u, k) => {
    const shown = text.slice(u.start, u.end);
    if (u.filter !== undefined && !(SQL_FILTERS as readonly string[]).includes(u.filter)) {
      out.push(`unknown filter "${u.filter}" in ${shown}: use ${SQL_FILTERS.join(' or ')}`);
      return;
    }
    const isParam = u.name.startsWith('params.');
    if (!ctx.sql) {
      if (u.filter)
        out.push(`${shown}: filters quote values for SQL, and this field is not SQL: write {{ ${u.name} }}`);
      return;
    }
    if (isParam && !u.filter) {
      out.push(rawParamInSqlMessage(u.name));
      return;
    }
    if (u.filter === 'ident' && isParam) {
      const d = ctx.params[u.name.slice('params.'.length)];
      if (d && d.type !== 'string' && d.type !== 'enum')
        out.push(`${shown}: ident quotes a name, and ${u.name} is a ${d.type}: write {{ ${u.name} | literal }}`);
    }
    if (u.filter && sites[k]) out.push(`${shown} ${sites[k]}`);
  });
  return out;
}

/** One field's text with its variables rendered; throws with a message saying what to change. */
export function renderField(text: string, vars: TemplateVars, ctx: FieldContext): string {
  const { uses, malformed } = scanTemplate(text);
  if (uses.length === 0 && !malformed) return text;
  if (malformed) throw new Error('malformed template: write variables as {{ name }} or {{ params.name }}');
  const problems = templateUseProblems(text, uses, ctx);
  if (problems.length) throw new Error(problems[0]);
  let out = '';
  let last = 0;
  for (const u of uses) {
    out += text.slice(last, u.start) + renderUse(u, vars, ctx);
    last = u.end;
  }
  return out + text.slice(last);
}

function renderUse(u: TemplateUse, vars: TemplateVars, ctx: FieldContext): string {
  // Own properties only: "constructor" or "__proto__" must not reach Object.prototype.
  const value = Object.hasOwn(vars, u.name) ? vars[u.name] : undefined;
  if (typeof value !== 'string') throw new Error(`unknown template variable "${u.name}"`);
  let type: 'string' | 'integer' | 'number' | 'boolean' | 'date' = 'string';
  if (u.name.startsWith('params.')) {
    const pname = u.name.slice('params.'.length);
    const d = Object.hasOwn(ctx.params, pname) ? ctx.params[pname] : undefined;
    if (!d) throw new Error(`unknown template variable "${u.name}"`);
    // Checked at trigger time; checked again here, so a run started around the API is held to the same types.
    const c = checkParamValue(pname, d, value);
    if (!c.ok) throw new Error(c.message);
    if (c.value !== value)
      throw new Error(
        `param "${pname}" is not in canonical form (${JSON.stringify(value)}): start runs through the API or CLI`,
      );
    type =
      d.type === 'enum'
        ? typeof d.values!.find((v) => String(v) === value) === 'number'
          ? 'number'
          : 'string'
        : d.type;
  } else if (ctx.sql && !u.filter && unsafeBuiltin(value)) {
    throw new Error(
      `${u.name} is ${JSON.stringify(value)}, which may not stand raw in SQL: write {{ ${u.name} | literal }}`,
    );
  }
  if (!ctx.sql || !u.filter) return value;
  try {
    return u.filter === 'ident' ? sqlIdent(value, ctx.sql) : sqlLiteral(value, type, ctx.sql);
  } catch (e) {
    if (e instanceof SqlTextError) throw new Error(`${u.name} ${e.message}`);
    throw e;
  }
}

/** Renders a task: every string with its path's SQL dialect (object keys are left as written). */
export function renderTask<T>(
  value: T,
  vars: TemplateVars,
  params: Record<string, ParamDecl>,
  sqlAt: (path: (string | number)[]) => SqlTextDialect | undefined,
  path: (string | number)[] = [],
): T {
  if (typeof value === 'string') return renderField(value, vars, { sql: sqlAt(path), params }) as T;
  if (Array.isArray(value))
    return (value as unknown[]).map((v, i) => renderTask(v, vars, params, sqlAt, [...path, i])) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = renderTask(v, vars, params, sqlAt, [...path, k]);
    return out as T;
  }
  return value;
}

/** Renders every string inside a JSON-like value as runs before typed params did; object keys are left as written. */
export function renderDeep<T>(value: T, vars: TemplateVars): T {
  if (typeof value === 'string') return renderString(value, vars) as T;
  if (Array.isArray(value)) return (value as unknown[]).map((v) => renderDeep(v, vars)) as T;
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
  else if (value && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) yield* stringsIn(v, [...path, k]);
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
