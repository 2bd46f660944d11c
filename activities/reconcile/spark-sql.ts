/**
 * The comparison as SQL, for engines that scale out (`engine: spark`: a SparkApplication or
 * an EMR step). Plain SQL that Spark 3 and DuckDB both run: the tests run it on DuckDB over
 * the same files and check it gives the local exact path's answer, samples and lists.
 *
 * It reads two views, `strata_left` and `strata_right`, whose columns are the inputs' columns
 * by position (`c0`, `c1`, …) as text (the job creates them over the input files: a CSV's
 * empty field is the empty string, as the local reader reads it). No name from the data
 * reaches the SQL as an identifier, and literals are built without backslashes, quotes or
 * `$` inside (Spark reads backslash escapes and `${…}` in its literals; DuckDB does not).
 *
 * The semantics are the exact path's (activities/reconcile/compare.ts): values normalised
 * (trim, case, null values) before comparing; within a key, rows equal on every compared
 * column pair first (as multisets), the rest pair in the canonical order (their raw values
 * joined, compared as UTF-8 bytes) as changed — equal within `tolerance` counts as matched —
 * and what is left over is one-sided. With duplicated keys and a tolerance, the local path
 * may pair rows equal within the tolerance first; this pairs exactly equal rows first.
 *
 * The plan is relations to materialise (`stages`, in order) and outputs, each written as a
 * directory of JSON lines: the answer row, bounded samples of each kind of difference and,
 * when asked, the full lists. activities/reconcile/spark.ts turns them into the result.
 */
import type { ReconcileOptions } from '../../schemas/reconcile.js';

/** The kinds of difference, as the differences dataset names them. */
export const DIFF_KINDS = ['changed', 'only_left', 'only_right', 'duplicate_left', 'duplicate_right'] as const;
export type DiffKind = (typeof DIFF_KINDS)[number];

export interface SqlLayout {
  key: string[];
  compared: string[];
  /** Every column of each side, in order (`c0`, `c1`, … in the views). */
  leftColumns: string[];
  rightColumns: string[];
}

export interface SqlPlan {
  /** Relations the outputs read, each materialised once (Spark: CACHE TABLE; DuckDB: a temp table). */
  stages: { name: string; select: string }[];
  /** What the job writes: `answer` (one row), `samples_{kind}` and, when asked, `differences_{kind}`. */
  outputs: { name: string; select: string }[];
}

export type SqlOptions = Pick<ReconcileOptions, 'tolerance' | 'trim' | 'caseInsensitive' | 'nullValues'>;

const UNSAFE = /['\\$]/;
/** A string literal both engines read alike: quote, backslash and `$` come from chr(). */
export function lit(s: string): string {
  if (!UNSAFE.test(s)) return `'${s}'`;
  const parts: string[] = [];
  let run = '';
  for (const ch of s) {
    if (UNSAFE.test(ch)) {
      if (run) parts.push(`'${run}'`);
      run = '';
      parts.push(`chr(${ch.charCodeAt(0)})`);
    } else run += ch;
  }
  if (run) parts.push(`'${run}'`);
  return parts.length === 1 ? parts[0] : `CONCAT(${parts.join(', ')})`;
}

/** A NULL as a joinable value (a text no data is expected to hold). */
const NULL_MARK = lit('<<strata:null:5f0c>>');
/** What JavaScript's String.prototype.trim removes, as a regular-expression class (Java and RE2 alike). */
const WS = '[\t\n\u000b\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]';
const jsTrim = (e: string) => `REGEXP_REPLACE(REGEXP_REPLACE(${e}, ${lit(`^${WS}+`)}, ''), ${lit(`${WS}+$`)}, '')`;

const cols = (n: number, f: (i: number) => string, sep = ', ') => Array.from({ length: n }, (_, i) => f(i)).join(sep);
const positions = (all: string[], names: string[]) => names.map((n) => all.indexOf(n));

export function comparisonPlan(l: SqlLayout, o: SqlOptions, p: { sampleLimit: number; differences: boolean }): SqlPlan {
  const keyed = l.key.length > 0;
  for (const [side, all] of [
    ['left', l.leftColumns],
    ['right', l.rightColumns],
  ] as const)
    for (const n of [...l.key, ...l.compared])
      if (!all.includes(n)) throw new Error(`column "${n}" is not in the ${side} dataset`);
  const lc = positions(l.leftColumns, l.compared);
  const rc = positions(l.rightColumns, l.compared);
  const lk = keyed ? positions(l.leftColumns, l.key) : lc;
  const rk = keyed ? positions(l.rightColumns, l.key) : rc;
  const nK = lk.length;
  const nV = l.compared.length;
  const nL = l.leftColumns.length;
  const nR = l.rightColumns.length;

  const norm = (e: string) => {
    if (o.trim) e = jsTrim(e);
    if (o.nullValues.length) e = `CASE WHEN ${e} IN (${o.nullValues.map(lit).join(', ')}) THEN NULL ELSE ${e} END`;
    if (o.caseInsensitive) e = `LOWER(${e})`;
    return e;
  };
  const range = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));
  const K = range(nK, (i) => `k${i}`);
  const E = range(nV, (i) => `e${i}`);
  // One side's rows: normalised key (k) and compared values (v, and e with nulls marked), the
  // canonical order (raw) and the raw columns (c).
  const side0 = (view: 'left' | 'right', kIdx: number[], cIdx: number[], n: number) => `
  ${view}_0 AS (
    SELECT ${[
      ...range(nK, (i) => `COALESCE(${norm(`c${kIdx[i]}`)}, ${NULL_MARK}) AS k${i}`),
      ...range(nV, (i) => `${norm(`c${cIdx[i]}`)} AS v${i}`),
      `CONCAT_WS(chr(31), ${cols(n, (j) => `COALESCE(c${j}, chr(1))`)}) AS raw`,
      ...range(n, (j) => `c${j}`),
    ].join(',\n           ')}
    FROM strata_${view}
  )`;
  // … and each row's place among the rows equal to it (occ).
  const side1 = (view: 'left' | 'right') => `
  ${view}_1 AS (
    SELECT *, ${[...range(nV, (i) => `COALESCE(v${i}, ${NULL_MARK}) AS e${i}`), `ROW_NUMBER() OVER (PARTITION BY ${[...K, ...range(nV, (i) => `COALESCE(v${i}, ${NULL_MARK})`)].join(', ')} ORDER BY raw) AS occ`].join(', ')}
    FROM ${view}_0
  )`;
  const prefixed = (x: string, s: 'l' | 'r', n: number) =>
    [
      `${x}.occ AS ${s}_occ`,
      `${x}.raw AS ${s}_raw`,
      ...range(nK, (i) => `${x}.k${i} AS ${s}_k${i}`),
      ...range(nV, (i) => `${x}.v${i} AS ${s}_v${i}`),
      ...range(n, (j) => `${x}.c${j} AS ${s}_c${j}`),
    ].join(', ');

  // Rows not matched by an exactly equal row of the same key: one join of both sides.
  const rest = `WITH${side0('left', lk, lc, nL)},${side1('left')},${side0('right', rk, rc, nR)},${side1('right')}
SELECT ${prefixed('x', 'l', nL)},
       ${prefixed('y', 'r', nR)}
FROM left_1 x FULL OUTER JOIN right_1 y
  ON ${[...K, ...E, 'occ'].map((c) => `x.${c} = y.${c}`).join(' AND ')}
WHERE x.occ IS NULL OR y.occ IS NULL`;

  // Equal within the options: both null, or the same text, or numbers within the tolerance.
  const same = (i: number) => {
    const a = `l_v${i}`;
    const b = `r_v${i}`;
    const exact = `((${a} IS NULL AND ${b} IS NULL) OR ${a} = ${b})`;
    if (!(o.tolerance > 0)) return `COALESCE(${exact}, FALSE)`;
    return `COALESCE(${exact} OR (${jsTrim(a)} <> '' AND ${jsTrim(b)} <> '' AND ABS(TRY_CAST(${a} AS DOUBLE) - TRY_CAST(${b} AS DOUBLE)) <= ${o.tolerance} + 1e-12), FALSE)`;
  };
  const sideCols = (s: 'l' | 'r', n: number) => [
    `${s}_occ`,
    `${s}_raw`,
    ...range(nK, (i) => `${s}_k${i}`),
    ...range(nV, (i) => `${s}_v${i}`),
    ...range(n, (j) => `${s}_c${j}`),
  ];
  const lCols = sideCols('l', nL);
  const rCols = sideCols('r', nR);
  const flags = nV ? `, ${cols(nV, (i) => `CASE WHEN ${same(i)} THEN 0 ELSE 1 END AS d${i}`)}` : '';
  const allSame = nV ? cols(nV, same, ' AND ') : 'TRUE';
  // The rest pair up within a key in canonical order (rows of a whole-row comparison never pair).
  const pairs = keyed
    ? `WITH pl AS (
    SELECT ${lCols.join(', ')}, ROW_NUMBER() OVER (PARTITION BY ${cols(nK, (i) => `l_k${i}`)} ORDER BY l_raw) AS l_n
    FROM strata_rest WHERE l_occ IS NOT NULL
  ),
  pr AS (
    SELECT ${rCols.join(', ')}, ROW_NUMBER() OVER (PARTITION BY ${cols(nK, (i) => `r_k${i}`)} ORDER BY r_raw) AS r_n
    FROM strata_rest WHERE r_occ IS NOT NULL
  )
SELECT pl.*, pr.*, ${allSame} AS eq${flags}
FROM pl FULL OUTER JOIN pr ON ${cols(nK, (i) => `pl.l_k${i} = pr.r_k${i}`, ' AND ')} AND pl.l_n = pr.r_n`
    : `SELECT *, FALSE AS eq${nV ? `, ${cols(nV, (i) => `0 AS d${i}`)}` : ''} FROM strata_rest`;

  // Keys with more than one row on a side: the key as its canonically first row has it, and the rows.
  const dupSide = (
    view: 'left' | 'right',
    tag: string,
    kIdx: number[],
  ) => `SELECT ${lit(tag)} AS side, ${cols(nK, (i) => `kr${i}`)}, n FROM (
    SELECT ${cols(nK, (i) => `c${kIdx[i]} AS kr${i}`)},
           COUNT(*) OVER (PARTITION BY ${cols(nK, (i) => `k${i}`)}) AS n,
           ROW_NUMBER() OVER (PARTITION BY ${cols(nK, (i) => `k${i}`)} ORDER BY raw) AS rn
    FROM ${view}_0
  ) d WHERE n > 1 AND rn = 1`;
  const dups = `WITH${side0('left', lk, lc, nL)},${side0('right', rk, rc, nR)}
${dupSide('left', 'L', lk)}
UNION ALL
${dupSide('right', 'R', rk)}`;

  const both = 'l_occ IS NOT NULL AND r_occ IS NOT NULL';
  const count = (from: string, where: string) => `(SELECT COUNT(*) FROM ${from} WHERE ${where})`;
  const answer = `SELECT
  (SELECT COUNT(*) FROM strata_left) AS left_rows,
  (SELECT COUNT(*) FROM strata_right) AS right_rows,
  (SELECT COUNT(*) FROM strata_left) - ${count('strata_rest', 'l_occ IS NOT NULL')} + ${count('strata_pairs', `${both} AND eq`)} AS matched,
  ${count('strata_pairs', `${both} AND NOT eq`)} AS changed,
  ${count('strata_pairs', 'r_occ IS NULL')} AS only_left,
  ${count('strata_pairs', 'l_occ IS NULL')} AS only_right,
  ${keyed ? count('strata_dups', `side = 'L'`) : '0'} AS dup_keys_left,
  ${keyed ? `(SELECT COALESCE(SUM(n - 1), 0) FROM strata_dups WHERE side = 'L')` : '0'} AS dup_rows_left,
  ${keyed ? count('strata_dups', `side = 'R'`) : '0'} AS dup_keys_right,
  ${keyed ? `(SELECT COALESCE(SUM(n - 1), 0) FROM strata_dups WHERE side = 'R')` : '0'} AS dup_rows_right${cols(
    nV,
    (i) => `,\n  ${count('strata_pairs', `${both} AND NOT eq AND d${i} = 1`)} AS mismatch_${i}`,
    '',
  )}`;

  // Each kind's rows, positional: keys k*, compared values l*/r* with flags d* (changed), whole rows c* (one-sided), n (duplicates).
  const kindSelect: Record<DiffKind, { select: string; order: string } | undefined> = {
    changed: keyed
      ? {
          select: `SELECT ${[cols(nK, (i) => `l_c${lk[i]} AS k${i}`), cols(nV, (i) => `l_c${lc[i]} AS l${i}, r_c${rc[i]} AS r${i}, d${i}`)].filter(Boolean).join(', ')} FROM strata_pairs WHERE ${both} AND NOT eq`,
          order: 'l_raw, r_raw',
        }
      : undefined,
    only_left: {
      select: `SELECT ${cols(nL, (j) => `l_c${j} AS c${j}`)} FROM strata_pairs WHERE r_occ IS NULL`,
      order: 'l_raw',
    },
    only_right: {
      select: `SELECT ${cols(nR, (j) => `r_c${j} AS c${j}`)} FROM strata_pairs WHERE l_occ IS NULL`,
      order: 'r_raw',
    },
    duplicate_left: keyed
      ? {
          select: `SELECT ${cols(nK, (i) => `kr${i} AS k${i}`)}, n FROM strata_dups WHERE side = 'L'`,
          order: cols(nK, (i) => `kr${i}`),
        }
      : undefined,
    duplicate_right: keyed
      ? {
          select: `SELECT ${cols(nK, (i) => `kr${i} AS k${i}`)}, n FROM strata_dups WHERE side = 'R'`,
          order: cols(nK, (i) => `kr${i}`),
        }
      : undefined,
  };
  const outputs = [{ name: 'answer', select: answer }];
  for (const kind of DIFF_KINDS) {
    const k = kindSelect[kind];
    if (!k) continue;
    outputs.push({ name: `samples_${kind}`, select: `${k.select} ORDER BY ${k.order} LIMIT ${p.sampleLimit}` });
    if (p.differences) outputs.push({ name: `differences_${kind}`, select: k.select });
  }
  return {
    stages: [
      { name: 'strata_rest', select: rest },
      { name: 'strata_pairs', select: pairs },
      ...(keyed ? [{ name: 'strata_dups', select: dups }] : []),
    ],
    outputs,
  };
}

/** The answer row as the result's counts (the shape every path returns). */
export function sqlAnswer(row: Record<string, unknown>, compared: string[]) {
  const n = (k: string) => Number(row[k] ?? 0);
  const columnMismatches: Record<string, number> = {};
  compared.forEach((c, i) => {
    if (n(`mismatch_${i}`) > 0) columnMismatches[c] = n(`mismatch_${i}`);
  });
  return {
    counts: {
      left: n('left_rows'),
      right: n('right_rows'),
      matched: n('matched'),
      changed: n('changed'),
      onlyLeft: n('only_left'),
      onlyRight: n('only_right'),
    },
    columnMismatches,
    duplicates: {
      left: { keys: n('dup_keys_left'), rows: n('dup_rows_left') },
      right: { keys: n('dup_keys_right'), rows: n('dup_rows_right') },
    },
  };
}
