/**
 * How a template value becomes SQL text. Run params reach SQL only through two filters:
 * `{{ params.x | literal }}` (a literal quoted for the task's engine) and
 * `{{ params.x | ident }}` (a quoted identifier). Escaping, not bound parameters: a task's
 * SQL is often several statements (bound parameters need one), identifiers cannot be
 * bound, Spark/Hive/Presto steps take SQL text only, and one mechanism on every engine is
 * one thing to get right. The rendered statement is what runs, and what history shows.
 */

/**
 * `portable`: the engine is known only on the worker (an ingest.table query runs on its
 * connection's Postgres or MySQL), so a value must read the same on both.
 */
export const SQL_TEXT_DIALECTS = ['duckdb', 'postgres', 'mysql', 'spark', 'hive', 'presto', 'portable'] as const;
export type SqlTextDialect = (typeof SQL_TEXT_DIALECTS)[number];

export const SQL_FILTERS = ['literal', 'ident'] as const;
export type SqlFilter = (typeof SQL_FILTERS)[number];

/** A value's SQL type, as far as quoting is concerned. */
export type SqlValueType = 'string' | 'integer' | 'number' | 'boolean' | 'date';

export class SqlTextError extends Error {}

const PLAIN_IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const IDENT_MAX = 128;

/** A string literal that reads back as `s` on the engine. */
export function sqlString(s: string, dialect: SqlTextDialect): string {
  const doubled = s.replaceAll("'", "''");
  switch (dialect) {
    case 'presto':
      return `'${doubled}'`;
    case 'duckdb':
    case 'postgres':
      // E'…' reads backslashes as escapes whatever standard_conforming_strings says.
      return s.includes('\\') ? `E'${s.replaceAll('\\', '\\\\').replaceAll("'", "''")}'` : `'${doubled}'`;
    case 'mysql':
      // MySQL reads `\` as an escape by default. Doubled quotes keep the literal closed
      // with or without NO_BACKSLASH_ESCAPES (where `\\` then reads as two backslashes).
      return `'${s.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
    case 'spark':
    case 'hive':
      // Their lexers take `\x` as a pair and do not know `''`.
      return `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
    case 'portable':
      if (s.includes('\\'))
        throw new SqlTextError(
          'holds a backslash, which Postgres and MySQL read differently: an ingest.table query cannot take it as a literal',
        );
      return `'${doubled}'`;
  }
}

/** A quoted identifier for the engine. */
export function sqlIdent(s: string, dialect: SqlTextDialect): string {
  if (s.length === 0 || s.length > IDENT_MAX) throw new SqlTextError(`is not a name (1 to ${IDENT_MAX} characters)`);
  switch (dialect) {
    case 'duckdb':
    case 'postgres':
    case 'presto':
      return `"${s.replaceAll('"', '""')}"`;
    case 'mysql':
    case 'spark':
    case 'hive':
      return `\`${s.replaceAll('`', '``')}\``;
    case 'portable':
      if (!PLAIN_IDENT.test(s))
        throw new SqlTextError(
          'is not a plain name (letters, digits, "_"), which is all an ingest.table query can quote the same on Postgres and MySQL',
        );
      return s;
  }
}

/** A value of a checked type as a SQL literal. Numbers are re-checked: only digits reach SQL. */
export function sqlLiteral(value: string, type: SqlValueType, dialect: SqlTextDialect): string {
  switch (type) {
    case 'integer':
    case 'number': {
      if (!/^-?(\d+(\.\d+)?)(e[+-]?\d+)?$/.test(value) || !Number.isFinite(Number(value)))
        throw new SqlTextError('is not a number');
      // Parenthesised: `x -{{ n | literal }}` with n = -5 must not read `x --5` (a comment).
      return value.startsWith('-') ? `(${value})` : value;
    }
    case 'boolean':
      if (value === 'true') return 'TRUE';
      if (value === 'false') return 'FALSE';
      throw new SqlTextError('is not true or false');
    case 'date':
      if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) throw new SqlTextError('is not a date');
      return `DATE '${value}'`;
    default:
      return sqlString(value, dialect);
  }
}

interface LexMode {
  /** Backslash escapes in '…' and "…" strings (MySQL by default, Spark, Hive; Postgres with standard_conforming_strings off). */
  backslash: boolean;
  /** Backslash escapes in "…" (a string on MySQL, Spark, Hive; a name, never escaped, on Postgres and DuckDB). */
  dqBackslash: boolean;
  /** `#` starts a comment (MySQL). */
  hash: boolean;
  /** $tag$…$tag$ strings (Postgres, DuckDB). */
  dollar: boolean;
  /** Block comments nest (Postgres, DuckDB, Spark 3). */
  nested: boolean;
}

/**
 * Every way the engine may read the text. Where a server setting or version changes how
 * quotes or comments are read (standard_conforming_strings, NO_BACKSLASH_ESCAPES, nested
 * comments), every reading must agree that a filter stands in code.
 */
function modes(dialect: SqlTextDialect): LexMode[] {
  if (dialect === 'portable') return [...modes('postgres'), ...modes('mysql')];
  const base: Omit<LexMode, 'nested'>[] = (() => {
    switch (dialect) {
      case 'duckdb':
      case 'postgres':
        return [
          { backslash: false, dqBackslash: false, hash: false, dollar: true },
          { backslash: true, dqBackslash: false, hash: false, dollar: true },
        ];
      case 'mysql':
        return [
          { backslash: true, dqBackslash: true, hash: true, dollar: false },
          { backslash: false, dqBackslash: false, hash: true, dollar: false },
        ];
      case 'spark':
      case 'hive':
        return [{ backslash: true, dqBackslash: true, hash: false, dollar: false }];
      default:
        return [{ backslash: false, dqBackslash: false, hash: false, dollar: false }];
    }
  })();
  return base.flatMap((m) => [
    { ...m, nested: false },
    { ...m, nested: true },
  ]);
}

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;

/** The non-code stretches of a text under each way the dialect's engine may read it (for tests). */
export function nonCodeReadings(text: string, dialect: SqlTextDialect): [number, number][][] {
  return modes(dialect).map((m) => nonCode(text, m));
}

/** The stretches of a SQL text that are not code (strings, quoted names, comments) under one reading; an unterminated one runs to Infinity. */
function nonCode(text: string, m: LexMode): [start: number, end: number][] {
  const spans: [number, number][] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const start = i;
    if (c === "'" || c === '"' || c === '`') {
      const eString = c === "'" && (text[i - 1] === 'E' || text[i - 1] === 'e') && !IDENT_CHAR.test(text[i - 2] ?? ' ');
      const bs = c === "'" ? m.backslash || eString : c === '"' && m.dqBackslash;
      let closed = false;
      i++;
      while (i < text.length) {
        if (bs && text[i] === '\\') i += 2;
        else if (text[i] === c && text[i + 1] === c) i += 2;
        else if (text[i] === c) {
          i++;
          closed = true;
          break;
        } else i++;
      }
      if (!closed) i = Infinity;
    } else if ((c === '-' && text[i + 1] === '-') || (c === '#' && m.hash)) {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '/' && text[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < text.length && depth > 0) {
        if (text[i] === '*' && text[i + 1] === '/') {
          depth--;
          i += 2;
        } else if (m.nested && text[i] === '/' && text[i + 1] === '*') {
          depth++;
          i += 2;
        } else i++;
      }
      if (depth > 0) i = Infinity;
    } else if (
      c === '$' &&
      m.dollar &&
      !IDENT_CHAR.test(text[i - 1] ?? ' ') &&
      /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(text.slice(i, i + 130))
    ) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 130))![0];
      const end = text.indexOf(tag, i + tag.length);
      i = end < 0 ? Infinity : end + tag.length;
    } else {
      i++;
      continue;
    }
    spans.push([start, i]);
  }
  return spans;
}

const BAD_BEFORE = /[A-Za-z0-9_$@#&'"`\\\u0080-\uffff]/;
const BAD_AFTER = /[A-Za-z0-9_$'"`\\\u0080-\uffff]/;

/**
 * Why a filtered use at [start, end) of a SQL text is unsafe, or undefined. A filter
 * makes its own quotes, so it must stand in code, apart from the tokens around it: in a
 * string (`'{{ x | literal }}'`) its quotes would close the author's, and glued to a
 * prefix (`E{{ x | literal }}`, `N…`, `$tag…`) it would change how its quotes are read.
 */
export function filterSiteProblem(
  text: string,
  start: number,
  end: number,
  dialect: SqlTextDialect,
): string | undefined {
  return filterSiteProblems(text, [[start, end]], dialect)[0];
}

export function filterSiteProblems(
  text: string,
  sites: [start: number, end: number][],
  dialect: SqlTextDialect,
): (string | undefined)[] {
  // Blank out every template use, so one use's braces do not read as SQL.
  let blank = text;
  for (const m of text.matchAll(/\{\{[^}]*\}\}/g))
    blank = blank.slice(0, m.index) + ' '.repeat(m[0].length) + blank.slice(m.index + m[0].length);
  const readings = modes(dialect).map((m) => nonCode(blank, m));
  return sites.map(([s, e]) => {
    if (readings.some((spans) => spans.some(([a, b]) => s >= a && s < b)))
      return 'stands inside a quoted string, quoted name or comment; a filter makes its own quotes: remove the quotes around it';
    if ((s > 0 && BAD_BEFORE.test(text[s - 1])) || (e < text.length && BAD_AFTER.test(text[e])))
      return 'touches the text around it; a filter is a token of its own: put a space or an operator between it and its neighbours';
    return undefined;
  });
}

/** Built-in values (platform-made) may stand raw in SQL only if they cannot carry any. */
export function unsafeBuiltin(value: string): boolean {
  return !/^[A-Za-z0-9_.:/-]*$/.test(value) || value.includes('--') || /^[-/]|[-/]$/.test(value);
}
