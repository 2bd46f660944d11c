/**
 * oneSelectColumns binds a lake task's SELECT once for two jobs: the check that it is exactly
 * one SELECT, and the columns its version is planned with. Those columns must be what
 * `DESCRIBE SELECT * FROM (…)` gave before (names with DuckDB's suffixes for duplicates, types
 * the Iceberg mapping reads the same way), and whatever is not one SELECT must still be refused.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeSelect } from '../../activities/sql/duckdb.js';
import { oneSelectColumns } from '../../activities/sql/sandbox.js';
import { castList, parseDuckType } from '../../activities/iceberg/schema.js';

let instance: DuckDBInstance;
let conn: DuckDBConnection;
let dir: string;
beforeAll(async () => {
  instance = await DuckDBInstance.create(':memory:');
  conn = await instance.connect();
  dir = await mkdtemp(path.join(os.tmpdir(), 'strata-one-select-'));
});
afterAll(async () => {
  conn.closeSync();
  instance.closeSync();
  await rm(dir, { recursive: true, force: true });
});

const WHAT = 'the SQL of a task writing silver.x';

describe('oneSelectColumns', () => {
  const queries = [
    `SELECT 1::TINYINT a, 2::SMALLINT b, 3 c, 4::BIGINT d, 5::HUGEINT e, 1::UTINYINT f, 1::UBIGINT g, 1.5::FLOAT h,
       1.5::DOUBLE i, 1.23::DECIMAL(18,3) j, 1.2::DECIMAL(38,10) k, 'x' l, 'x'::BLOB m, true n`,
    `SELECT DATE '2020-01-01' o, TIME '01:02:03' p, TIMESTAMP '2020-01-01' q, TIMESTAMPTZ '2020-01-01' r,
       TIMESTAMP_MS '2020-01-01' s, TIMESTAMP_NS '2020-01-01' t, TIMESTAMP_S '2020-01-01' u, INTERVAL 1 DAY v,
       uuid() w, TIMETZ '01:02:03+01' af, 1::BIT ae, NULL ac`,
    `SELECT [1, 2] x, {'a': 1, 'b c': 'x', 'q"t': 2} y, MAP {'k': 1} z, [1, 2]::INTEGER[2] ab,
       union_value(num := 2) ah, [[1.5::DECIMAL(4,1)]] aj, [{'k': [DATE '2020-01-01']}] ak`,
    // JSON is an alias of VARCHAR: DESCRIBE names it, at the top and nested, and so must this.
    `SELECT '{}'::JSON j, {'a': '{}'::JSON} s, ['{}'::JSON] l, MAP {'k': '{}'::JSON} m`,
    // Duplicate names: DESCRIBE of the wrapped query suffixes them, and COPY writes those names.
    `SELECT 1 a, 2 a, 3 A`,
    `WITH q AS (SELECT 1 a) SELECT a, a FROM q`,
    `SELECT * FROM (SELECT 1 x) t, (SELECT 2 x) u`,
    `SELECT 1, 1 + 1, 'x'`,
    `VALUES (1, 'a'), (2, 'b')`,
    `FROM (SELECT 1 a) ORDER BY a -- trailing comment`,
    `SELECT 1 a UNION ALL SELECT 2 b;`,
  ];
  it.each(queries)('gives the columns DESCRIBE gives, read the same way: %s', async (q) => {
    const ours = await oneSelectColumns(conn, q, WHAT);
    const body = q.trim().replace(/;\s*$/, '');
    const theirs = await describeSelect(conn, `SELECT * FROM (${body}\n)`);
    expect(ours.map((c) => c.name)).toEqual(theirs.map((c) => c.name));
    // Struct and union field names are always quoted here, only where needed by DESCRIBE: the
    // type parser reads both the same, and every other type is the same text.
    for (const [i, c] of ours.entries()) {
      expect(parseDuckType(c.type)).toEqual(parseDuckType(theirs[i].type));
      if (!/^(STRUCT|UNION)|STRUCT\(|UNION\(/.test(theirs[i].type)) expect(c.type).toBe(theirs[i].type);
    }
  });

  it('keeps the JSON alias, so a JSON column is still cast to text before it is written', async () => {
    const [j] = await oneSelectColumns(conn, `SELECT '{"a": 1}'::JSON AS j`, WHAT);
    expect(j.type).toBe('JSON');
    expect(castList([j]).changed).toBe(true);
  });

  it('refuses more than one statement, naming how many, and runs none of them', async () => {
    const out = path.join(dir, 'two.csv');
    await expect(oneSelectColumns(conn, `SELECT 1; COPY (SELECT 'owned' AS x) TO '${out}'`, WHAT)).rejects.toThrow(
      /the SQL of a task writing silver\.x must be one SELECT statement, found 2/,
    );
    expect(await readdir(dir)).toEqual([]);
  });

  it.each([
    [`COPY (SELECT 'owned' AS x) TO '__OUT__'`, /must be a SELECT, not a COPY/],
    [`CREATE TABLE made AS SELECT 1 AS x`, /must be a SELECT, not a CREATE/],
    [`INSERT INTO nowhere VALUES (1)`, /Table with name nowhere does not exist/],
    [`SET threads = 1`, /must be a SELECT, not a SET/],
    [`ATTACH '__OUT__' AS other`, /must be a SELECT, not a ATTACH/],
  ])('refuses a statement that is not a query, and it does not run: %s', async (q, message) => {
    const out = path.join(dir, 'not-a-query.out');
    await expect(oneSelectColumns(conn, q.replace('__OUT__', out), WHAT)).rejects.toThrow(message);
    expect(await readdir(dir)).toEqual([]);
    expect(Number((await conn.runAndReadAll(`SELECT count(*) FROM duckdb_tables()`)).getRows()[0][0])).toBe(0);
  });

  it('cannot be broken out of its parentheses: text that is one SELECT only once wrapped is refused', async () => {
    await expect(oneSelectColumns(conn, `SELECT 1) UNION ALL (SELECT 2`, WHAT)).rejects.toThrow(/Parser Error/);
    await expect(oneSelectColumns(conn, `SELECT 1 /* open comment`, WHAT)).rejects.toThrow();
  });

  it("passes DuckDB's own error on for a SELECT that does not bind", async () => {
    await expect(oneSelectColumns(conn, `SELECT no_such_column FROM (SELECT 1 AS x)`, WHAT)).rejects.toThrow(
      /Binder Error.*no_such_column/s,
    );
  });
});
