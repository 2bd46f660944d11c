/**
 * The comparison as one SQL statement, for engines that scale out (Spark SQL as a
 * SparkApplication or an EMR step). Plain SQL that Spark 3 and DuckDB both run: the test
 * runs it on DuckDB over the same files and checks it gives the local path's answer.
 *
 * It reads two views of text columns, `strata_left` and `strata_right` (the job creates
 * them over the input files), and answers one row: the counts, duplicates and per-column
 * mismatches of the result shape. The semantics are the exact path's (schemas/reconcile.ts):
 * values normalised (trim, case, null values) before comparing; within a key, rows equal on
 * every compared column pair first (as multisets), the rest pair in a canonical order
 * (by their raw values) as changed — equal within `tolerance` counts as matched — and what
 * is left over is one-sided. With duplicated keys and a tolerance, the local path may pair
 * rows equal within the tolerance first; this pairs exactly equal rows first.
 */
import type { ReconcileOptions } from '../../schemas/reconcile.js';

const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;
const id = (s: string) => `\`${s.replaceAll('`', '``')}\``;
/** A NULL as a joinable value (a text no data is expected to hold). */
const NULL_MARK = lit('<<strata:null:5f0c>>');

export interface SqlLayout {
  key: string[];
  compared: string[];
  /** Every column of each side, in order (the canonical order of duplicated rows). */
  leftColumns: string[];
  rightColumns: string[];
}

/** The SQL, with identifiers quoted by `quote` (backticks for Spark; DuckDB takes double quotes). */
export function comparisonSql(
  l: SqlLayout,
  o: Pick<ReconcileOptions, 'tolerance' | 'trim' | 'caseInsensitive' | 'nullValues'>,
  quote: (s: string) => string = id,
): string {
  const norm = (col: string) => {
    let e = `CAST(${quote(col)} AS STRING)`;
    if (o.trim) e = `TRIM(${e})`;
    if (o.nullValues.length) e = `CASE WHEN ${e} IN (${o.nullValues.map(lit).join(', ')}) THEN NULL ELSE ${e} END`;
    if (o.caseInsensitive) e = `LOWER(${e})`;
    return e;
  };
  const keyed = l.key.length > 0;
  const keyCols = keyed ? l.key : l.compared;
  const K = keyCols.map((_, i) => `k${i}`);
  const V = l.compared.map((_, i) => `v${i}`);
  const side = (view: string, cols: string[]) => `
  ${view}_0 AS (
    SELECT ${[
      ...keyCols.map((c, i) => `COALESCE(${norm(c)}, ${NULL_MARK}) AS k${i}`),
      ...l.compared.map((c, i) => `${norm(c)} AS v${i}`),
      ...l.compared.map((c, i) => `COALESCE(${norm(c)}, ${NULL_MARK}) AS e${i}`),
      `CONCAT_WS(${lit('\u001f')}, ${cols.map((c) => `COALESCE(CAST(${quote(c)} AS STRING), ${lit('\u0001')})`).join(', ')}) AS raw`,
    ].join(',\n           ')}
    FROM strata_${view}
  ),
  ${view}_1 AS (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY ${[...K, ...V.map((_, i) => `e${i}`)].join(', ')} ORDER BY raw) AS occ,
           COUNT(*) OVER (PARTITION BY ${K.join(', ')}) AS kn
    FROM ${view}_0
  )`;
  const eqJoin = (a: string, b: string, cols: string[]) => cols.map((c) => `${a}.${c} = ${b}.${c}`).join(' AND ');
  const E = V.map((_, i) => `e${i}`);
  // Equal within the options: both null, or the same text, or numbers within the tolerance.
  const same = (i: number) => {
    const a = `pl.v${i}`;
    const b = `pr.v${i}`;
    const exact = `((${a} IS NULL AND ${b} IS NULL) OR ${a} = ${b})`;
    if (!(o.tolerance > 0)) return exact;
    return `(${exact} OR (TRIM(${a}) <> '' AND TRIM(${b}) <> '' AND ABS(TRY_CAST(${a} AS DOUBLE) - TRY_CAST(${b} AS DOUBLE)) <= ${o.tolerance} + 1e-12))`;
  };
  const allSame = V.length ? V.map((_, i) => `COALESCE(${same(i)}, FALSE)`).join(' AND ') : 'TRUE';
  const rest = (view: string, other: string) => `
  ${view}_rest AS (
    SELECT x.*, ROW_NUMBER() OVER (PARTITION BY ${K.map((k) => `x.${k}`).join(', ')} ORDER BY x.raw) AS rk
    FROM ${view}_1 x LEFT JOIN ${other}_1 y ON ${eqJoin('x', 'y', [...K, ...E, 'occ'])}
    WHERE y.occ IS NULL
  )`;
  const dup = (view: string) =>
    `(SELECT COUNT(*) FROM (SELECT ${K.join(', ')} FROM ${view}_1 WHERE kn > 1 GROUP BY ${K.join(', ')}) d)`;
  return `WITH${side('left', l.leftColumns)},${side('right', l.rightColumns)},
  matched_exact AS (
    SELECT COUNT(*) AS n FROM left_1 x JOIN right_1 y ON ${eqJoin('x', 'y', [...K, ...E, 'occ'])}
  ),${rest('left', 'right')},${rest('right', 'left')},
  pairs AS (
    SELECT pl.k0 AS lk, pr.k0 AS rk0, ${keyed ? allSame : 'FALSE'} AS eq,
           ${V.map((_, i) => `CASE WHEN COALESCE(${same(i)}, FALSE) THEN 0 ELSE 1 END AS d${i}`).join(', ') || '0 AS d_none'}
    FROM left_rest pl FULL OUTER JOIN right_rest pr
      ON ${keyed ? `${eqJoin('pl', 'pr', K)} AND pl.rk = pr.rk` : 'FALSE'}
  )
SELECT
  (SELECT COUNT(*) FROM left_0) AS left_rows,
  (SELECT COUNT(*) FROM right_0) AS right_rows,
  (SELECT n FROM matched_exact) + (SELECT COUNT(*) FROM pairs WHERE lk IS NOT NULL AND rk0 IS NOT NULL AND eq) AS matched,
  (SELECT COUNT(*) FROM pairs WHERE lk IS NOT NULL AND rk0 IS NOT NULL AND NOT eq) AS changed,
  (SELECT COUNT(*) FROM pairs WHERE rk0 IS NULL) AS only_left,
  (SELECT COUNT(*) FROM pairs WHERE lk IS NULL) AS only_right,
  ${keyed ? dup('left') : '0'} AS dup_keys_left,
  ${keyed ? `(SELECT COUNT(*) FROM left_1 WHERE kn > 1) - ${dup('left')}` : '0'} AS dup_rows_left,
  ${keyed ? dup('right') : '0'} AS dup_keys_right,
  ${keyed ? `(SELECT COUNT(*) FROM right_1 WHERE kn > 1) - ${dup('right')}` : '0'} AS dup_rows_right${V.map(
    (_, i) =>
      `,\n  (SELECT COUNT(*) FROM pairs WHERE lk IS NOT NULL AND rk0 IS NOT NULL AND NOT eq AND d${i} = 1) AS mismatch_${i}`,
  ).join('')}`;
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
