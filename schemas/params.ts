import { z } from 'zod';

/**
 * Typed run parameters. A spec declares each param with a type and bounds; a value given
 * at trigger time (API, CLI, schedule) is checked against its declaration and kept in a
 * canonical string form (`42`, `2.5`, `true`, `2026-01-02`). How a value reaches SQL is
 * decided in schemas/sql-text.ts: only through the `literal` and `ident` filters.
 */

/** Every size cap on params, in one place. */
export const PARAM_LIMITS = {
  /** Params a spec may declare (and a trigger may give). */
  count: 64,
  nameLength: 64,
  /** Characters in one value (a string param's `maxLength` may lower it, never raise it). */
  valueLength: 1024,
  /** Characters in all of a run's values together. */
  totalLength: 16 * 1024,
  patternLength: 200,
  descriptionLength: 500,
  enumValues: 100,
} as const;

export const PARAM_TYPES = ['string', 'integer', 'number', 'boolean', 'date', 'enum'] as const;
export type ParamType = (typeof PARAM_TYPES)[number];

const Scalar = z.union([z.string(), z.number(), z.boolean()]);

/** The long form; the short forms are a bare default (`region: eu`, `n: 3`, `dry: false`). */
export const ParamDeclObject = z
  .object({
    /** Inferred when absent: from `values` (enum) or the default's type, else string. */
    type: z.enum(PARAM_TYPES).optional(),
    default: Scalar.optional(),
    description: z.string().max(PARAM_LIMITS.descriptionLength).optional(),
    /** integer/number: numbers; date: YYYY-MM-DD. */
    min: z.union([z.number(), z.string()]).optional(),
    max: z.union([z.number(), z.string()]).optional(),
    /** string: at most this many characters. */
    maxLength: z.number().int().min(1).max(PARAM_LIMITS.valueLength).optional(),
    /** string: a regular expression the whole value must match. */
    pattern: z.string().min(1).max(PARAM_LIMITS.patternLength).optional(),
    /** enum: the accepted values. */
    values: z
      .array(z.union([z.string().min(1), z.number()]))
      .min(1)
      .max(PARAM_LIMITS.enumValues)
      .optional(),
  })
  .strict();

export const ParamDef = z.union([z.string(), z.number(), z.boolean(), ParamDeclObject]).superRefine((def, ctx) => {
  for (const message of declProblems(def)) ctx.addIssue({ code: 'custom', message });
});
export type ParamDef = z.infer<typeof ParamDef>;

/** A declaration in its one normalised form. */
export interface ParamDecl {
  type: ParamType;
  default?: string | number | boolean;
  description?: string;
  min?: number | string;
  max?: number | string;
  maxLength?: number;
  pattern?: string;
  values?: (string | number)[];
}

export function paramDecl(def: ParamDef): ParamDecl {
  if (typeof def === 'string') return { type: 'string', default: def };
  if (typeof def === 'number') return { type: 'number', default: def };
  if (typeof def === 'boolean') return { type: 'boolean', default: def };
  const inferred: ParamType = def.values
    ? 'enum'
    : typeof def.default === 'number'
      ? 'number'
      : typeof def.default === 'boolean'
        ? 'boolean'
        : 'string';
  return { ...def, type: def.type ?? inferred };
}

export function paramDecls(params: Record<string, ParamDef>): Record<string, ParamDecl> {
  const out: Record<string, ParamDecl> = {};
  for (const [name, def] of Object.entries(params)) out[name] = paramDecl(def);
  return out;
}

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const INT_RE = /^[+-]?\d{1,16}$/;
const NUM_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$/;
/** C0/C1 controls, line/paragraph separators, bidi overrides and isolates, BOM: never in a value. */
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/;

function isDate(s: string): boolean {
  const m = DATE_RE.exec(s);
  if (!m) return false;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.getUTCFullYear() === Number(m[1]) && d.getUTCMonth() === Number(m[2]) - 1 && d.getUTCDate() === Number(m[3]);
}

/**
 * A `pattern` runs on caller-given text, so it must not backtrack exponentially: a
 * repeated group that itself holds a repetition or an alternation (`(a+)+`, `(\w*)*`,
 * `(a|aa)*`) is refused, and so are back-references.
 */
function riskyPattern(pattern: string): boolean {
  const stack: boolean[] = [];
  let risky = false; // the current group holds a repetition or an alternation
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      if (/[1-9k]/.test(pattern[i + 1] ?? '')) return true;
      i++;
      continue;
    }
    if (c === '[') {
      while (i < pattern.length && pattern[i] !== ']') i += pattern[i] === '\\' ? 2 : 1;
      continue;
    }
    if (c === '(') {
      stack.push(risky);
      risky = false;
    } else if (c === ')') {
      const inner: boolean = risky;
      risky = stack.pop() ?? false;
      const next = pattern[i + 1];
      if (inner && (next === '*' || next === '+' || next === '{')) return true;
      risky ||= inner;
    } else if (c === '*' || c === '+' || c === '{' || (c === '|' && stack.length > 0)) risky = true;
  }
  return false;
}

export function compilePattern(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`, 'u');
}

/** What is wrong with a declaration (empty when it is fine). */
export function declProblems(def: ParamDef): string[] {
  if (typeof def !== 'object') return [];
  const d = paramDecl(def);
  const out: string[] = [];
  const only = (field: keyof ParamDecl, types: ParamType[]) => {
    if (d[field] !== undefined && !types.includes(d.type))
      out.push(`"${field}" applies to ${types.join('/')} params, not ${d.type}: remove it or change "type"`);
  };
  only('maxLength', ['string']);
  only('pattern', ['string']);
  only('values', ['enum']);
  only('min', ['integer', 'number', 'date']);
  only('max', ['integer', 'number', 'date']);
  if (d.type === 'enum' && !d.values) out.push('an enum param needs "values": list the accepted values');
  if (d.type === 'enum' && d.values) {
    const bad = d.values.filter(
      (v) => typeof v === 'string' && (FORBIDDEN_CHARS.test(v) || v.length > PARAM_LIMITS.valueLength),
    );
    if (bad.length) out.push('enum values may not hold control characters or exceed the value length cap');
  }
  for (const k of ['min', 'max'] as const) {
    const v = d[k];
    if (v === undefined) continue;
    if ((d.type === 'integer' || d.type === 'number') && typeof v !== 'number')
      out.push(`"${k}" of a ${d.type} param is a number`);
    if (d.type === 'integer' && typeof v === 'number' && !Number.isSafeInteger(v))
      out.push(`"${k}" of an integer param is a whole number`);
    if (d.type === 'date' && (typeof v !== 'string' || !isDate(v)))
      out.push(`"${k}" of a date param is a date written YYYY-MM-DD`);
  }
  if (d.min !== undefined && d.max !== undefined && typeof d.min === typeof d.max && d.min > d.max)
    out.push(`"min" (${d.min}) is above "max" (${d.max}): swap them`);
  if (d.pattern !== undefined) {
    try {
      compilePattern(d.pattern);
      if (riskyPattern(d.pattern))
        out.push(
          `"pattern" repeats a group that holds a repetition or alternation (or uses a back-reference), which can take exponential time: write it without, e.g. ([a-z]+)+ as [a-z]+`,
        );
    } catch (e) {
      out.push(`"pattern" is not a valid regular expression: ${(e as Error).message}`);
    }
  }
  if (out.length === 0 && d.default !== undefined) {
    const r = checkParamValue('default', d, d.default);
    if (!r.ok) out.push(`the default does not fit: ${r.message}`);
  }
  return out;
}

/** In words, what values a param takes (for error messages). */
export function describeParam(d: ParamDecl): string {
  const range = (unit: string) =>
    d.min !== undefined && d.max !== undefined
      ? ` from ${d.min} to ${d.max}`
      : d.min !== undefined
        ? ` of at least ${d.min}`
        : d.max !== undefined
          ? ` of at most ${d.max}`
          : unit;
  switch (d.type) {
    case 'integer':
      return `a whole number${range('')}`;
    case 'number':
      return `a number${range('')}`;
    case 'boolean':
      return 'true or false';
    case 'date':
      return `a date written YYYY-MM-DD${range('')}`;
    case 'enum':
      return `one of ${d.values!.join(', ')}`;
    default: {
      const max = Math.min(d.maxLength ?? PARAM_LIMITS.valueLength, PARAM_LIMITS.valueLength);
      return `text of at most ${max} characters without control characters${d.pattern ? `, matching ${d.pattern}` : ''}`;
    }
  }
}

export type ParamCheck = { ok: true; value: string } | { ok: false; message: string };

function shown(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

/** Checks one value against its declaration and returns it in canonical form. */
export function checkParamValue(name: string, d: ParamDecl, raw: unknown): ParamCheck {
  const bad = (why?: string): ParamCheck => ({
    ok: false,
    message: `param "${name}" takes ${describeParam(d)}${why ? ` (${why})` : ''}: ${shown(raw)} does not fit`,
  });
  if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean')
    return bad('a string, number or boolean');
  switch (d.type) {
    case 'integer':
    case 'number': {
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string' && (d.type === 'integer' ? INT_RE : NUM_RE).test(raw.trim()))
        n = Number(raw.trim());
      else return bad();
      if (!Number.isFinite(n) || (d.type === 'integer' && !Number.isSafeInteger(n))) return bad();
      if (typeof d.min === 'number' && n < d.min) return bad();
      if (typeof d.max === 'number' && n > d.max) return bad();
      return { ok: true, value: String(n) };
    }
    case 'boolean':
      if (raw === true || raw === 'true') return { ok: true, value: 'true' };
      if (raw === false || raw === 'false') return { ok: true, value: 'false' };
      return bad();
    case 'date': {
      if (typeof raw !== 'string' || !isDate(raw)) return bad();
      if (typeof d.min === 'string' && raw < d.min) return bad();
      if (typeof d.max === 'string' && raw > d.max) return bad();
      return { ok: true, value: raw };
    }
    case 'enum': {
      const hit = d.values!.find((v) => String(v) === String(raw));
      return hit === undefined ? bad() : { ok: true, value: String(hit) };
    }
    default: {
      const s = String(raw);
      if (s.length > Math.min(d.maxLength ?? PARAM_LIMITS.valueLength, PARAM_LIMITS.valueLength))
        return bad('too long');
      if (FORBIDDEN_CHARS.test(s)) return bad('control characters are not allowed');
      if (d.pattern && !compilePattern(d.pattern).test(s)) return bad();
      return { ok: true, value: s };
    }
  }
}
