/**
 * The one home of SQL quoting (activities/sql/quote.ts), against the real engines it quotes
 * for: a hostile name or value stays one name or one value in DuckDB, Postgres and MariaDB.
 */
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { quoteIdent, quoteIdentIn, quoteLiteral } from '../../activities/sql/quote.js';

const NAMES = ['plain', 'with space', 'a"b', 'a""b', '"', 'x`y', '`; DROP TABLE t; --', "it's", 'é名'];

describe('SQL quoting', () => {
  let duck: DuckDBConnection;
  beforeAll(async () => {
    duck = await (await DuckDBInstance.create(':memory:')).connect();
  });
  afterAll(() => duck.closeSync());

  it('quoteIdent and quoteLiteral keep any text one name and one value in DuckDB', async () => {
    for (const n of NAMES) {
      const r = await duck.runAndReadAll(`SELECT ${quoteLiteral(n)} AS ${quoteIdent(n)}`);
      expect(r.columnNames()).toEqual([n]);
      expect(r.getRowObjects()[0][n]).toBe(n);
    }
  });

  it('quoteIdentIn quotes for Postgres with double quotes', async () => {
    const c = new pg.Client({ connectionString: inject('databases').postgresUrl });
    await c.connect();
    try {
      for (const n of NAMES) {
        const r = await c.query(`SELECT ${quoteLiteral(n)} AS ${quoteIdentIn('postgres', n)}`);
        expect(r.fields.map((f) => f.name)).toEqual([n]);
        expect((r.rows[0] as Record<string, string>)[n]).toBe(n);
      }
    } finally {
      await c.end();
    }
  });

  it('quoteIdentIn quotes for MariaDB with backticks: a name with a backtick stays one name', async () => {
    const c = await mysql.createConnection({ uri: inject('databases').mysqlUrl });
    try {
      for (const n of NAMES) {
        const [rows, fields] = await c.query(`SELECT 1 AS ${quoteIdentIn('mysql', n)}`);
        expect(fields.map((f) => f.name)).toEqual([n]);
        expect((rows as Record<string, number>[])[0][n]).toBe(1);
      }
      // A table whose name would end the quoting early: created, read and dropped by its name.
      const t = quoteIdentIn('mysql', 'q`t; DROP TABLE x; --');
      await c.query(`CREATE TABLE ${t} (v int)`);
      await c.query(`INSERT INTO ${t} VALUES (7)`);
      const [rows] = await c.query(`SELECT v FROM ${t}`);
      expect(rows).toEqual([{ v: 7 }]);
      await c.query(`DROP TABLE ${t}`);
    } finally {
      await c.end();
    }
  });
});
