/**
 * Quality checks over a dataset version about to be committed, run in DuckDB against
 * the view `__out` (the new files). Each check yields a verdict with the number of
 * failing rows and a bounded sample of them, so a blocked version can be inspected.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { toMs } from '../../schemas/duration.js';
import type { Check } from '../../schemas/lake.js';
import type { CheckVerdict } from '../../store/catalog.js';
import { quoteLiteral } from '../sql/quote.js';
import { assertOneSelect } from '../sql/sandbox.js';
import { quoteIdent } from '../sql/quote.js';

export const ident = quoteIdent;
const list = (c: string | string[]) => (Array.isArray(c) ? c : [c]);
const lit = (v: string | number | boolean) => (typeof v === 'string' ? quoteLiteral(v) : String(v));

/** The row-level predicate a check fails on, for the checks that have one. */
export function failingPredicate(c: Check): string | undefined {
  if ('not_null' in c)
    return list(c.not_null)
      .map((x) => `${ident(x)} IS NULL`)
      .join(' OR ');
  if ('accepted_values' in c) {
    const col = ident(c.accepted_values.column);
    return `${col} IS NOT NULL AND ${col} NOT IN (${c.accepted_values.values.map(lit).join(', ')})`;
  }
  if ('range' in c) {
    const col = ident(c.range.column);
    const conds = [
      c.range.min !== undefined ? `${col} < ${c.range.min}` : '',
      c.range.max !== undefined ? `${col} > ${c.range.max}` : '',
    ].filter(Boolean);
    return conds.length ? conds.join(' OR ') : 'false';
  }
  if ('expect' in c) return `NOT coalesce((${c.expect}), false)`;
  return undefined;
}

/**
 * Counts the failing rows of every row-level check, and the rows, in one scan of __out
 * (checks on a large output then cost one pass, not one per check).
 */
export async function countFailing(
  conn: DuckDBConnection,
  checks: Check[],
): Promise<{ rows: number; failing: (number | undefined)[] }> {
  const preds = checks.map(failingPredicate);
  const cols = preds.flatMap((p, i) => (p ? [`count(*) FILTER (WHERE ${p}) AS c${i}`] : []));
  const [row] = (
    await one(conn, `SELECT count(*) AS n${cols.length ? ', ' + cols.join(', ') : ''} FROM __out`)
  ).getRowObjectsJson();
  if (!row) throw new Error('counting the failing rows of the checks answered no row');
  return { rows: Number(row.n), failing: preds.map((p, i) => (p ? Number(row[`c${i}`]) : undefined)) };
}

export interface CheckContext {
  conn: DuckDBConnection;
  /** Row count of the version that was current before this one. */
  previousRowCount?: number;
  /** The view name a `references` check reads, registered by the caller. */
  viewFor(dataset: string): string;
  sampleLimit: number;
  now: Date;
  /** Precomputed by countFailing: this check's failing rows and the row count. */
  failing?: number;
  rows?: number;
}

function kindOf(c: Check): string {
  const kind = Object.keys(c).find((k) => k !== 'severity' && k !== 'name');
  if (kind === undefined) throw new Error(`check ${describeCheck(c)} names no kind (not_null, unique, expect…)`);
  return kind;
}

/** The predicate of a row-level check (not_null, accepted_values, range, expect). */
function predicateOf(c: Check): string {
  const p = failingPredicate(c);
  if (p === undefined) throw new Error(`check ${describeCheck(c)} has no row-level predicate`);
  return p;
}

export function describeCheck(c: Check): string {
  if (c.name) return c.name;
  if ('not_null' in c) return `not_null(${list(c.not_null).join(', ')})`;
  if ('unique' in c) return `unique(${list(c.unique).join(', ')})`;
  if ('accepted_values' in c) return `accepted_values(${c.accepted_values.column})`;
  if ('range' in c) return `range(${c.range.column})`;
  if ('row_count' in c) return 'row_count';
  if ('freshness' in c) return `freshness(${c.freshness.column})`;
  if ('references' in c) return `references(${list(c.references.column).join(', ')} -> ${c.references.dataset})`;
  return `expect(${c.expect})`;
}

/**
 * Runs a check's query, which embeds tenant-written predicates: it must be exactly the one
 * SELECT it was built as — a predicate that closes it and adds statements is refused
 * before anything runs.
 */
async function one(conn: DuckDBConnection, sql: string) {
  await assertOneSelect(conn, sql, 'a check (its "expect" predicate is an expression, not statements)');
  return conn.runAndReadAll(sql);
}
async function rows(conn: DuckDBConnection, sql: string): Promise<Record<string, unknown>[]> {
  return (await one(conn, sql)).getRowObjectsJson();
}
async function scalar(conn: DuckDBConnection, sql: string): Promise<unknown> {
  return (await one(conn, sql)).getRowsJson()[0]?.[0];
}

/** Rows of __out failing a row-level predicate: their count and a sample. */
async function failingWhere(
  ctx: CheckContext,
  where: string,
): Promise<{ failing: number; sample: Record<string, unknown>[] }> {
  const failing = ctx.failing ?? Number(await scalar(ctx.conn, `SELECT count(*) FROM __out WHERE ${where}`));
  const sample =
    failing && ctx.sampleLimit
      ? await rows(ctx.conn, `SELECT * FROM __out WHERE ${where} LIMIT ${ctx.sampleLimit}`)
      : [];
  return { failing, sample };
}

export async function runCheck(ctx: CheckContext, c: Check): Promise<CheckVerdict> {
  const base = { name: describeCheck(c), kind: kindOf(c), severity: c.severity ?? 'error' } as const;
  const verdict = (failing: number, sample: Record<string, unknown>[], message: string): CheckVerdict => ({
    ...base,
    passed: failing === 0,
    failing,
    sample,
    message,
  });
  if ('not_null' in c) {
    const r = await failingWhere(ctx, predicateOf(c));
    return verdict(
      r.failing,
      r.sample,
      r.failing ? `${r.failing} rows have NULL in ${list(c.not_null).join(' or ')}` : 'no NULLs',
    );
  }
  if ('unique' in c) {
    const keys = list(c.unique).map(ident).join(', ');
    const dup = `SELECT ${keys}, count(*) AS occurrences FROM __out GROUP BY ALL HAVING count(*) > 1`;
    const failing = Number(await scalar(ctx.conn, `SELECT coalesce(sum(occurrences), 0) FROM (${dup})`));
    const sample =
      failing && ctx.sampleLimit
        ? await rows(ctx.conn, `${dup} ORDER BY occurrences DESC LIMIT ${ctx.sampleLimit}`)
        : [];
    return verdict(
      failing,
      sample,
      failing ? `${failing} rows share a key (${list(c.unique).join(', ')}) with another row` : 'keys are unique',
    );
  }
  if ('accepted_values' in c) {
    const r = await failingWhere(ctx, predicateOf(c));
    return verdict(
      r.failing,
      r.sample,
      r.failing
        ? `${r.failing} rows have ${c.accepted_values.column} outside the accepted values`
        : 'all values accepted',
    );
  }
  if ('range' in c) {
    const r = await failingWhere(ctx, predicateOf(c));
    return verdict(
      r.failing,
      r.sample,
      r.failing
        ? `${r.failing} rows have ${c.range.column} outside [${c.range.min ?? '-∞'}, ${c.range.max ?? '∞'}]`
        : 'in range',
    );
  }
  if ('row_count' in c) {
    const n = ctx.rows ?? Number(await scalar(ctx.conn, 'SELECT count(*) FROM __out'));
    const rc = c.row_count;
    const problems: string[] = [];
    if (rc.min !== undefined && n < rc.min) problems.push(`${n} rows < min ${rc.min}`);
    if (rc.max !== undefined && n > rc.max) problems.push(`${n} rows > max ${rc.max}`);
    const prev = ctx.previousRowCount;
    if (prev !== undefined && prev > 0) {
      const ratio = n / prev;
      if (rc.min_ratio !== undefined && ratio < rc.min_ratio)
        problems.push(`${n} rows is ${ratio.toFixed(3)}× the previous ${prev} (< ${rc.min_ratio})`);
      if (rc.max_ratio !== undefined && ratio > rc.max_ratio)
        problems.push(`${n} rows is ${ratio.toFixed(3)}× the previous ${prev} (> ${rc.max_ratio})`);
    }
    return {
      ...base,
      passed: problems.length === 0,
      failing: problems.length ? n : 0,
      sample: [],
      message: problems.join('; ') || `${n} rows`,
    };
  }
  if ('freshness' in c) {
    const max = await scalar(
      ctx.conn,
      `SELECT CAST(max(CAST(${ident(c.freshness.column)} AS TIMESTAMP)) AS VARCHAR) FROM __out`,
    );
    const at = typeof max === 'string' && max ? new Date(`${max.replace(' ', 'T')}Z`) : undefined;
    const limit = toMs(c.freshness.max_age);
    const ok = at !== undefined && ctx.now.getTime() - at.getTime() <= limit;
    return {
      ...base,
      passed: ok,
      failing: ok ? 0 : 1,
      sample: [],
      message: at
        ? `newest ${c.freshness.column} is ${at.toISOString()}${ok ? '' : `, older than ${c.freshness.max_age}`}`
        : `${c.freshness.column} has no values`,
    };
  }
  if ('references' in c) {
    const cols = list(c.references.column);
    const keys = list(c.references.key);
    if (cols.length !== keys.length)
      throw new Error(
        `references check: ${cols.length} column(s) but ${keys.length} key(s): give as many keys as columns`,
      );
    const on = cols.map((x, i) => `o.${ident(x)} = r.${ident(keys[i])}`).join(' AND ');
    const orphans = `SELECT o.* FROM __out o ANTI JOIN ${ctx.viewFor(c.references.dataset)} r ON ${on} WHERE ${cols.map((x) => `o.${ident(x)} IS NOT NULL`).join(' AND ')}`;
    const failing = Number(await scalar(ctx.conn, `SELECT count(*) FROM (${orphans})`));
    const sample = failing && ctx.sampleLimit ? await rows(ctx.conn, `${orphans} LIMIT ${ctx.sampleLimit}`) : [];
    return verdict(
      failing,
      sample,
      failing
        ? `${failing} rows reference a missing ${c.references.dataset} ${keys.join(',')}`
        : 'all references resolve',
    );
  }
  const r = await failingWhere(ctx, predicateOf(c));
  return verdict(r.failing, r.sample, r.failing ? `${r.failing} rows fail: ${c.expect}` : 'all rows pass');
}
