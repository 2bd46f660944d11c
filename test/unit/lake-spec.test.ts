import { describe, expect, it } from 'vitest';
import { datasetRefsInSql, layerMayRead } from '../../schemas/lake.js';
import { validateSpec } from '../../schemas/pipeline.js';
import { schemaChanges } from '../../store/catalog.js';
import { parseDatasetRef } from '../../client/datasets.js';

const problems = (tasks: object[]) => {
  const r = validateSpec({ id: 'p', tasks });
  return r.ok ? [] : r.problems;
};

describe('medallion layer rules in validateSpec', () => {
  it('rejects a silver task reading gold, with the path and a message that says what to change', () => {
    expect(
      problems([
        {
          id: 's',
          kind: 'sql',
          layer: 'silver',
          sql: 'SELECT * FROM gold.revenue JOIN bronze.orders USING (id)',
          output: 'silver.x',
        },
      ]),
    ).toEqual([
      {
        path: 'tasks[0].sql',
        message:
          'a silver task may read only silver or bronze datasets, not gold.revenue: move the task to another layer or read another dataset',
      },
    ]);
  });
  it('lets gold read silver and gold, but not bronze', () => {
    expect(
      problems([{ id: 'g', kind: 'sql', layer: 'gold', sql: 'SELECT * FROM silver.a, gold.b', output: 'gold.c' }]),
    ).toEqual([]);
    expect(
      problems([{ id: 'g', kind: 'sql', layer: 'gold', sql: 'SELECT * FROM bronze.a', output: 'gold.c' }])[0].message,
    ).toMatch(/not bronze\.a/);
  });
  it('checks the output against the layer, and checks need a dataset output', () => {
    expect(problems([{ id: 'a', kind: 'sql', layer: 'silver', sql: 'SELECT 1', output: 'gold.x' }])).toEqual([
      {
        path: 'tasks[0].output',
        message: "output gold.x is in layer gold, but the task's layer is silver: make them agree",
      },
    ]);
    expect(
      problems([{ id: 'a', kind: 'sql', layer: 'silver', sql: 'SELECT 1', output: 'silver/x.parquet' }])[0].path,
    ).toBe('tasks[0].output');
    expect(
      problems([{ id: 'a', kind: 'sql', sql: 'SELECT 1', output: 'x.parquet', checks: [{ unique: 'id' }] }])[0],
    ).toEqual({ path: 'tasks[0].checks', message: 'checks run on a dataset output: set "output: LAYER.NAME"' });
    expect(
      problems([
        {
          id: 'a',
          kind: 'sql',
          layer: 'silver',
          sql: 'SELECT 1',
          output: 'silver.x',
          checks: [{ unique: 'id', severity: 'fatal' }],
        },
      ])[0].path,
    ).toMatch(/^tasks\[0\]\.checks\[0\]/);
  });
  it('keeps plain path outputs working (no layer)', () => {
    expect(
      problems([{ id: 'a', kind: 'sql', sql: "SELECT * FROM read_csv('x.csv')", output: 'silver/x.parquet' }]),
    ).toEqual([]);
  });
  it('ingestion writes bronze and ingest.table needs a cursor for incremental', () => {
    expect(
      problems([
        { id: 'i', kind: 'ingest.file', source: 'landing/', format: 'csv', columns: { a: 'int' }, output: 'silver.a' },
      ])[0],
    ).toEqual({
      path: 'tasks[0].output',
      message: 'ingestion writes the bronze layer: name the output bronze.a',
    });
    expect(
      problems([
        { id: 'i', kind: 'ingest.table', connection: 'w', table: 't', mode: 'incremental', output: 'bronze.t' },
      ])[0].path,
    ).toBe('tasks[0].cursor');
    expect(problems([{ id: 'i', kind: 'ingest.table', connection: 'w', output: 'bronze.t' }])[0].message).toBe(
      'give exactly one of "table" or "query"',
    );
  });
});

describe('dataset references', () => {
  it('finds layer.name, @version and @time, but not inside strings or longer names', () => {
    const refs = datasetRefsInSql(
      "SELECT 'silver.nope', x.silver_y FROM silver.orders@3 o JOIN gold.rev@'2026-01-01T00:00:00Z' USING (d), bronze.raw",
    );
    expect(refs.map((r) => [r.layer, r.name, r.at])).toEqual([
      ['silver', 'orders', '3'],
      ['gold', 'rev', "'2026-01-01T00:00:00Z'"],
      ['bronze', 'raw', undefined],
    ]);
    expect(layerMayRead('silver', 'bronze')).toBe(true);
    expect(layerMayRead('bronze', 'silver')).toBe(false);
  });
  it('parses API dataset names and rejects others with a 400', () => {
    expect(parseDatasetRef('silver.shop.orders@2')).toEqual({
      id: { layer: 'silver', namespace: 'shop', name: 'orders' },
      at: '2',
    });
    expect(() => parseDatasetRef('platinum.x')).toThrow(/is not a dataset name/);
  });
  it('records added, removed and retyped columns', () => {
    expect(
      schemaChanges(
        [
          { name: 'a', type: 'INTEGER' },
          { name: 'b', type: 'VARCHAR' },
        ],
        [
          { name: 'a', type: 'BIGINT' },
          { name: 'c', type: 'DATE' },
        ],
      ),
    ).toEqual([
      { column: 'a', change: 'type_changed', from: 'INTEGER', to: 'BIGINT' },
      { column: 'c', change: 'added', to: 'DATE' },
      { column: 'b', change: 'removed', from: 'VARCHAR' },
    ]);
  });
});
