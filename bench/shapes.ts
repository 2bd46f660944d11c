/** Pipeline shapes of the scale benchmark (the scale tests build the same). */

/** Layers of `width` tasks; each task needs one task of the layer above. */
export function layered(n: number, width: number, task: (i: number) => Record<string, unknown>) {
  return Array.from({ length: n }, (_, i) => ({ id: `t${i}`, needs: i >= width ? [`t${i - width}`] : [], ...task(i) }));
}

/** About 300 bytes of realistic SQL: a projection with a filter and a literal, writing a Parquet file. */
export function sqlTask(i: number): Record<string, unknown> {
  const sql =
    `SELECT ${i} AS task_id, d.day, d.day + INTERVAL ${i % 30} DAY AS due, ${i % 97} AS bucket, ` +
    `'order batch ${String(i).padStart(6, '0')} for region eu-west' AS note, round(${i} * 1.07, 2) AS amount ` +
    `FROM (SELECT DATE '2026-01-01' AS day) AS d WHERE ${i} >= 0 AND d.day IS NOT NULL`;
  return { kind: 'sql', engine: 'duckdb', sql, output: `bench/out/t${i}.parquet` };
}
