import { z } from 'zod';
import { Duration } from './duration.js';
import { TASK_KINDS, KIND_NAMES, sqlDialectAt } from './kinds.js';
import { NOTIFY_LIMITS, NotifyRules, type NotifyRuleSpec } from './notify.js';
import { mappingTasks } from './reconcile.js';
import {
  PARAM_LIMITS,
  PARAM_TYPES,
  ParamDeclObject,
  ParamDef,
  checkParamValue,
  paramDecl,
  paramDecls,
  type ParamDecl,
} from './params.js';
import {
  BUILTIN_VARIABLES,
  renderField,
  scanTemplate,
  stringsIn,
  templateUseProblems,
  type TemplateVars,
} from './template.js';

export { PARAM_LIMITS, ParamDef } from './params.js';

export const TRIGGER_RULES = [
  'all_success',
  'all_failed',
  'all_done',
  'all_done_min_one_success',
  'all_skipped',
  'one_success',
  'one_failed',
  'one_done',
  'none_failed',
  'none_failed_min_one_success',
  'none_skipped',
  'always',
] as const;
export const TriggerRule = z.enum(TRIGGER_RULES);
export type TriggerRule = z.infer<typeof TriggerRule>;

const ID_RE = /^[A-Za-z][A-Za-z0-9_-]{0,127}$/;
const Id = (what: string) =>
  z.string().regex(ID_RE, `${what} must start with a letter and hold only letters, digits, "_" and "-" (at most 128)`);

export const RetryPolicy = z
  .object({
    attempts: z.number().int().min(1).max(100).default(1),
    initialInterval: Duration.default('1s'),
    backoff: z.number().min(1).max(10).default(2),
    maxInterval: Duration.default('5m'),
  })
  .strict();
export type RetryPolicy = z.infer<typeof RetryPolicy>;

export const TaskCommon = {
  id: Id('task id'),
  kind: z.string(),
  description: z.string().optional(),
  needs: z.array(z.string()).default([]),
  retry: RetryPolicy.optional(),
  timeout: Duration.optional(),
  trigger: TriggerRule.optional(),
};

export const PipelineSpecBase = z
  .object({
    id: Id('pipeline id'),
    description: z.string().optional(),
    maxParallel: z.number().int().min(1).max(500).default(16),
    /** A run still running this long after it started fires the `sla_missed` notify rules. */
    sla: Duration.optional(),
    /** Who hears about runs: rules naming events and a channel the platform configured for the tenant. */
    notify: NotifyRules.optional(),
    defaults: z
      .object({ retry: RetryPolicy.optional(), timeout: Duration.optional(), trigger: TriggerRule.optional() })
      .strict()
      .default({}),
    params: z
      .record(
        z
          .string()
          .regex(
            new RegExp(`^[A-Za-z_][A-Za-z0-9_]{0,${PARAM_LIMITS.nameLength - 1}}$`),
            `param names are letters, digits and "_" (at most ${PARAM_LIMITS.nameLength})`,
          ),
        ParamDef,
      )
      .refine((p) => Object.keys(p).length <= PARAM_LIMITS.count, `declare at most ${PARAM_LIMITS.count} params`)
      .default({}),
    tasks: z.array(z.record(z.string(), z.unknown())).min(1, 'a pipeline needs at least one task'),
    /** Named reconciliations (schemas/reconcile.ts), run as reconcile tasks after what they read. */
    reconciliations: z.array(z.unknown()).max(1000).optional(),
  })
  .strict();

/** One task after validation: common fields plus its kind's fields. */
export type TaskSpec = {
  id: string;
  kind: string;
  description?: string;
  needs: string[];
  retry?: RetryPolicy;
  timeout?: Duration;
  trigger?: TriggerRule;
  [field: string]: unknown;
};

export type PipelineSpec = Omit<z.infer<typeof PipelineSpecBase>, 'tasks' | 'reconciliations'> & { tasks: TaskSpec[] };

export interface Problem {
  path: string;
  message: string;
}

/** `mapped`: how many of the spec's last tasks came from its `reconciliations:` (in their order). */
export type ValidationResult = { ok: true; spec: PipelineSpec; mapped?: number } | { ok: false; problems: Problem[] };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function zodProblems(err: z.ZodError, prefix: PropertyKey[] = [], input?: unknown): Problem[] {
  return err.issues.flatMap((i): Problem | Problem[] => {
    const path = [...prefix, ...i.path];
    if (i.code === 'invalid_union' && path.length === 2 && path[0] === 'params') {
      // A param is a short form or a mapping: report what is wrong with the mapping, not "Invalid input".
      const v = valueAt(input, i.path);
      const r = v && typeof v === 'object' && !Array.isArray(v) ? ParamDeclObject.safeParse(v) : undefined;
      if (r && !r.success) return zodProblems(r.error, path, v);
      return {
        path: formatPath(path),
        message: `a param is a default value (text, a number, true or false) or a mapping of type (${PARAM_TYPES.join(', ')}), default, description, min, max, maxLength, pattern, values`,
      };
    }
    if (i.code === 'unrecognized_keys') {
      return {
        path: formatPath(path),
        message: `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}: remove or correct the name`,
      };
    }
    if (i.code === 'invalid_type' && valueAt(input, i.path) === undefined) {
      return { path: formatPath(path), message: `missing: add "${String(path[path.length - 1])}"` };
    }
    return { path: formatPath(path), message: i.message };
  });
}

const taskSchemas = new Map<string, z.ZodTypeAny>();
function taskSchema(kind: string): z.ZodTypeAny {
  let s = taskSchemas.get(kind);
  if (!s) {
    s = z.object({ ...TaskCommon, ...TASK_KINDS[kind].fields, kind: z.literal(kind) }).strict();
    taskSchemas.set(kind, s);
  }
  return s;
}

/** Finds one cycle among tasks (ids in order, first repeated at the end), or null. */
export function findCycle(tasks: { id: string; needs: string[] }[]): string[] | null {
  // Iterative depth-first search: a 20,000-task chain must not overflow the stack.
  const needs = new Map(tasks.map((t) => [t.id, t.needs]));
  const color = new Map<string, 0 | 1 | 2>();
  for (const t of tasks) {
    if ((color.get(t.id) ?? 0) !== 0) continue;
    const stack: { id: string; next: number }[] = [{ id: t.id, next: 0 }];
    color.set(t.id, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const ns = needs.get(top.id) ?? [];
      if (top.next >= ns.length) {
        color.set(top.id, 2);
        stack.pop();
        continue;
      }
      const n = ns[top.next++];
      if (!needs.has(n)) continue;
      const c = color.get(n) ?? 0;
      if (c === 1) {
        const path = stack.map((f) => f.id);
        return [...path.slice(path.indexOf(n)), n].reverse(); // upstream first: a -> b means b needs a
      }
      if (c === 0) {
        color.set(n, 1);
        stack.push({ id: n, next: 0 });
      }
    }
  }
  return null;
}

/** Validates a parsed spec object and reports every problem at once. */
export function validateSpec(input: unknown): ValidationResult {
  const base = PipelineSpecBase.safeParse(input);
  if (!base.success) {
    // Still look at the tasks when the envelope is wrong, so one run shows everything.
    const problems = zodProblems(base.error, [], input);
    const rawTasks = (input as { tasks?: unknown })?.tasks;
    const rawParams = (input as { params?: unknown })?.params;
    if (Array.isArray(rawTasks) && !problems.some((p) => p.path === 'tasks')) {
      const params =
        rawParams && typeof rawParams === 'object' && !Array.isArray(rawParams)
          ? (rawParams as Record<string, unknown>)
          : {};
      problems.push(...validateTasks(rawTasks as Record<string, unknown>[], params).problems);
    }
    return { ok: false, problems: dedupe(problems) };
  }
  const { reconciliations, ...spec } = base.data;
  // Mappings become reconcile tasks here, so the planner, the runs index and the Web UI see
  // them as tasks; the validated spec carries only the tasks (validating it again adds none).
  const mapped = reconciliations ? mappingTasks(reconciliations, spec.tasks) : { tasks: [], problems: [] };
  const { tasks, problems } = validateTasks([...spec.tasks, ...mapped.tasks], spec.params);
  if (problems.length || mapped.problems.length) return { ok: false, problems: [...mapped.problems, ...problems] };
  const out: PipelineSpec = { ...spec, tasks };
  const notify = mappingNotifyProblems(out, mapped.tasks.length);
  if (notify.length) return { ok: false, problems: notify };
  return { ok: true, spec: out, ...(mapped.tasks.length ? { mapped: mapped.tasks.length } : {}) };
}

/**
 * A validated spec's notify rules, each set with the path a problem with it names: the
 * pipeline's (`notify`), and each reconciliation mapping's (`reconciliations[i].notify`, or
 * `tasks[i].notify` on a reconcile task written by hand).
 */
export function notifyRuleSets(
  spec: PipelineSpec,
  mapped = 0,
): { at: string; rules: NotifyRuleSpec[]; mapping?: { name: string; task: string } }[] {
  const out: { at: string; rules: NotifyRuleSpec[]; mapping?: { name: string; task: string } }[] = [];
  if (spec.notify?.length) out.push({ at: 'notify', rules: spec.notify });
  const first = spec.tasks.length - mapped;
  spec.tasks.forEach((t, i) => {
    const rules = t.notify as NotifyRuleSpec[] | undefined;
    if (t.kind !== 'reconcile' || !rules?.length || typeof t.mapping !== 'string') return;
    out.push({
      at: i >= first ? `reconciliations[${i - first}].notify` : `tasks[${i}].notify`,
      rules,
      mapping: { name: t.mapping, task: t.id },
    });
  });
  return out;
}

/** Mappings' rules: at most NOTIFY_LIMITS.mappingRules in all, and one set per mapping name. */
function mappingNotifyProblems(spec: PipelineSpec, mapped: number): Problem[] {
  const sets = notifyRuleSets(spec, mapped).filter((s) => s.mapping);
  const problems: Problem[] = [];
  const total = sets.reduce((n, s) => n + s.rules.length, 0);
  if (total > NOTIFY_LIMITS.mappingRules)
    problems.push({
      path: sets[0].at.replace(/\.notify$/, ''),
      message: `the mappings declare ${total} notify rules together; at most ${NOTIFY_LIMITS.mappingRules}: share rules through the pipeline's "notify" (quality_warning, failure)`,
    });
  const seen = new Map<string, string>();
  for (const s of sets) {
    const first = seen.get(s.mapping!.name);
    if (first)
      problems.push({
        path: s.at,
        message: `mapping "${s.mapping!.name}" already has notify rules (${first}): its deliveries go by the mapping's name, so declare them once`,
      });
    else seen.set(s.mapping!.name, s.at);
  }
  return problems;
}

function dedupe(ps: Problem[]): Problem[] {
  const seen = new Set<string>();
  return ps.filter((p) => {
    const k = `${p.path}\u0000${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function validateTasks(
  raw: Record<string, unknown>[],
  params: Record<string, unknown>,
): { tasks: TaskSpec[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const tasks: TaskSpec[] = [];
  const known = new Set(KIND_NAMES());
  raw.forEach((t, i) => {
    if (!t || typeof t !== 'object' || Array.isArray(t)) {
      problems.push({ path: `tasks[${i}]`, message: 'a task is a mapping with at least "id" and "kind"' });
      return;
    }
    const kind = t.kind;
    if (typeof kind !== 'string') {
      problems.push({ path: `tasks[${i}].kind`, message: `missing: add "kind" (one of ${[...known].join(', ')})` });
      return;
    }
    if (!known.has(kind)) {
      problems.push({
        path: `tasks[${i}].kind`,
        message: `unknown kind "${kind}": use one of ${[...known].join(', ')}`,
      });
      return;
    }
    const r = taskSchema(kind).safeParse(t);
    if (!r.success) {
      problems.push(...zodProblems(r.error, ['tasks', i], t));
      return;
    }
    for (const [path, message] of TASK_KINDS[kind].check?.(r.data as Record<string, unknown>) ?? [])
      problems.push({ path: formatPath(['tasks', i, ...path]), message });
    tasks.push(r.data as TaskSpec);
  });

  const ids = new Map<string, number>();
  raw.forEach((t, i) => {
    const id = (t as { id?: unknown })?.id;
    if (typeof id !== 'string') return;
    if (ids.has(id))
      problems.push({
        path: `tasks[${i}].id`,
        message: `duplicate task id "${id}" (also tasks[${ids.get(id)}]): give each task its own id`,
      });
    else ids.set(id, i);
  });

  raw.forEach((t, i) => {
    const needs = (t as { needs?: unknown })?.needs;
    if (!Array.isArray(needs)) return;
    needs.forEach((n, j) => {
      if (typeof n !== 'string') return;
      if (!ids.has(n))
        problems.push({
          path: `tasks[${i}].needs[${j}]`,
          message: `needs unknown task "${n}": use one of the task ids (${[...ids.keys()].slice(0, 20).join(', ')})`,
        });
      else if (n === (t as { id?: unknown }).id)
        problems.push({
          path: `tasks[${i}].needs[${j}]`,
          message: `task "${n}" needs itself: remove it from its own needs`,
        });
    });
  });

  const graph = raw
    .filter((t) => t && typeof (t as { id?: unknown }).id === 'string')
    .map((t) => ({
      id: t.id as string,
      needs: Array.isArray(t.needs)
        ? (t.needs as unknown[]).filter((n): n is string => typeof n === 'string' && n !== t.id)
        : [],
    }));
  const cycle = findCycle(graph);
  if (cycle) problems.push({ path: 'tasks', message: `cycle: ${cycle.join(' -> ')}; remove one of these needs` });

  const allowed = new Set<string>([...BUILTIN_VARIABLES, ...Object.keys(params).map((p) => `params.${p}`)]);
  const decls = safeDecls(params);
  raw.forEach((t, i) => {
    if (!t || typeof t !== 'object') return;
    for (const [field, value] of Object.entries(t)) {
      if (field === 'id' || field === 'kind' || field === 'needs') continue;
      for (const [text, sub] of stringsIn(value, [field])) {
        const { uses, malformed } = scanTemplate(text);
        const path = formatPath(['tasks', i, ...sub]);
        if (malformed)
          problems.push({
            path,
            message:
              'malformed template: write variables as {{ name }} or {{ params.name }} (in SQL: {{ params.name | literal }} or {{ params.name | ident }})',
          });
        for (const u of uses)
          if (!allowed.has(u.name))
            problems.push({
              path,
              message: `unknown template variable "${u.name}": use ${u.name.startsWith('params.') ? 'a param declared under "params"' : 'one of ' + [...BUILTIN_VARIABLES].join(', ') + ' or params.NAME'}`,
            });
        for (const message of templateUseProblems(text, uses, { sql: sqlDialectAt(t, sub), params: decls }))
          problems.push({ path, message });
      }
    }
  });
  return { tasks, problems: dedupe(problems) };
}

/** Merges pipeline defaults into a task's retry/timeout/trigger. */
export function effectiveTask(spec: PipelineSpec, task: TaskSpec) {
  return {
    retry: task.retry ?? spec.defaults.retry ?? { attempts: 1, initialInterval: '1s', backoff: 2, maxInterval: '5m' },
    timeout: task.timeout ?? spec.defaults.timeout ?? '1h',
    trigger: task.trigger ?? spec.defaults.trigger ?? 'all_success',
  } as const;
}

/** Declarations of params that parse (a broken one is reported on its own). */
function safeDecls(params: Record<string, unknown>): Record<string, ParamDecl> {
  const out: Record<string, ParamDecl> = {};
  for (const [name, def] of Object.entries(params)) {
    const r = ParamDef.safeParse(def);
    if (r.success) out[name] = paramDecl(r.data);
  }
  return out;
}

/** Built-in values that stand in for a run's own at trigger time, when SQL fields are rendered as a check. */
const CHECK_VARS: TemplateVars = {
  ds: '2000-01-01',
  ds_nodash: '20000101',
  logical_date: '2000-01-01T00:00:00.000Z',
  run_id: 'run',
  pipeline_id: 'p',
  task_id: 't',
  tenant: 't',
  trigger: 'manual',
};

/**
 * Param values for a run: declared defaults overlaid with the given values, each checked
 * against its declaration and put in canonical form. Unknown names, values that do not
 * fit and oversized values are problems (a 400 at the API, an error in the CLI). The SQL
 * fields are rendered with the values as a check, so a value a SQL field cannot take, or
 * a spec stored before params were typed, is refused here rather than in the run.
 */
export function resolveParams(
  spec: PipelineSpec,
  given: Record<string, string | number | boolean>,
): { params: Record<string, string>; problems: Problem[] } {
  const params: Record<string, string> = {};
  const problems: Problem[] = [];
  const declared = spec.params ?? {};
  const decls = paramDecls(declared);
  const names = Object.keys(given);
  if (names.length > PARAM_LIMITS.count)
    return {
      params,
      problems: [
        { path: 'params', message: `${names.length} params given: a run takes at most ${PARAM_LIMITS.count}` },
      ],
    };
  for (const [name, d] of Object.entries(decls)) {
    if (d.default === undefined) continue;
    const c = checkParamValue(name, d, d.default);
    if (c.ok) params[name] = c.value;
    else problems.push({ path: `params.${name}`, message: `the declared default does not fit: ${c.message}` });
  }
  for (const [k, v] of Object.entries(given)) {
    if (!Object.hasOwn(declared, k)) {
      problems.push({
        path: `params.${k.slice(0, PARAM_LIMITS.nameLength)}`,
        message: `unknown param "${k.slice(0, PARAM_LIMITS.nameLength)}": declare it under "params" or use one of ${Object.keys(declared).join(', ') || '(none declared)'}`,
      });
      continue;
    }
    const c = checkParamValue(k, decls[k], v);
    if (c.ok) params[k] = c.value;
    else {
      delete params[k];
      problems.push({ path: `params.${k}`, message: c.message });
    }
  }
  for (const name of Object.keys(declared))
    if (!Object.hasOwn(params, name) && !problems.some((p) => p.path === `params.${name}`))
      problems.push({ path: `params.${name}`, message: `param "${name}" has no default: pass a value for it` });
  const total = Object.values(params).reduce((n, v) => n + v.length, 0);
  if (total > PARAM_LIMITS.totalLength)
    problems.push({
      path: 'params',
      message: `the values hold ${total} characters together: a run takes at most ${PARAM_LIMITS.totalLength}`,
    });
  if (problems.length) return { params, problems };

  const vars: TemplateVars = { ...CHECK_VARS };
  for (const [k, v] of Object.entries(params)) vars[`params.${k}`] = v;
  spec.tasks.forEach((t, i) => {
    for (const [field, value] of Object.entries(t)) {
      if (field === 'id' || field === 'kind' || field === 'needs') continue;
      for (const [text, sub] of stringsIn(value, [field])) {
        const sql = sqlDialectAt(t, sub);
        if (!sql || !text.includes('{{')) continue;
        const raw = scanTemplate(text).uses.find((u) => u.name.startsWith('params.') && !u.filter);
        if (raw) {
          problems.push({
            path: formatPath(['tasks', i, ...sub]),
            message: `this version of the spec pastes ${raw.name} into SQL (it was registered before params were typed): register a new version that writes {{ ${raw.name} | literal }} or {{ ${raw.name} | ident }}`,
          });
          continue;
        }
        try {
          renderField(text, vars, { sql, params: decls });
        } catch (e) {
          problems.push({ path: formatPath(['tasks', i, ...sub]), message: (e as Error).message });
        }
      }
    }
  });
  return { params, problems };
}
