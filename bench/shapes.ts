/** Pipeline shapes of the scale benchmark (the scale tests build the same). */

/** Layers of `width` tasks; each task needs one task of the layer above. */
export function layered(n: number, width: number, task: (i: number) => Record<string, unknown>) {
  return Array.from({ length: n }, (_, i) => ({ id: `t${i}`, needs: i >= width ? [`t${i - width}`] : [], ...task(i) }));
}

/**
 * What a dataset task reports (about 400 bytes): its dataset and version, where it landed,
 * rows and bytes, and its checks' verdicts — a no-op returns it to give a run realistic outputs.
 */
export function datasetOutput(i: number): Record<string, unknown> {
  return {
    rowCount: 1_000 + i,
    location: `s3://lake/acme/silver/default/orders_${i}/data/v3/part-00000-${String(i).padStart(8, '0')}.parquet`,
    dataset: `silver.orders_${i}`,
    namespace: 'default',
    version: 3,
    bytes: 48_213 + i,
    checks: { passed: 4, warned: i % 10 === 0 ? ['amount_not_negative', 'customer_known'] : [] },
  };
}

/** About 300 bytes of realistic SQL: a projection with a filter and a literal, writing a Parquet file. */
export function sqlTask(i: number): Record<string, unknown> {
  const sql =
    `SELECT ${i} AS task_id, d.day, d.day + INTERVAL ${i % 30} DAY AS due, ${i % 97} AS bucket, ` +
    `'order batch ${String(i).padStart(6, '0')} for region eu-west' AS note, round(${i} * 1.07, 2) AS amount ` +
    `FROM (SELECT DATE '2026-01-01' AS day) AS d WHERE ${i} >= 0 AND d.day IS NOT NULL`;
  return { kind: 'sql', engine: 'duckdb', sql, output: `bench/out/t${i}.parquet` };
}
