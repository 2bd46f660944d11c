/**
 * ingest.table: extracts a Postgres or MySQL table or query in batches (keyset pages on
 * the cursor column when there is one, so memory stays bounded and an incremental run
 * reads only rows past the stored high-water mark) into a local JSON-lines file that
 * DuckDB turns into Parquet with the source's column types.
 */
import mysql from 'mysql2/promise';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { NonRetryableError, errorMessage, errorString } from '../../schemas/errors.js';
import { redact, type ConnectionConfig } from '../sql/connections.js';
import { quoteIdentIn } from '../sql/quote.js';

// Postgres type OIDs → DuckDB types (anything else stays text).
const PG_TYPES: Record<number, string> = {
  16: 'BOOLEAN',
  20: 'BIGINT',
  21: 'SMALLINT',
  23: 'INTEGER',
  700: 'REAL',
  701: 'DOUBLE',
  1700: 'DECIMAL(38, 10)',
  1082: 'DATE',
  1114: 'TIMESTAMP',
  1184: 'TIMESTAMPTZ',
  25: 'VARCHAR',
  1043: 'VARCHAR',
};
// mysql2 column type codes → DuckDB types.
const MY_TYPES: Record<number, string> = {
  1: 'TINYINT',
  2: 'SMALLINT',
  3: 'INTEGER',
  8: 'BIGINT',
  9: 'INTEGER',
  4: 'FLOAT',
  5: 'DOUBLE',
  246: 'DECIMAL(38, 10)',
  10: 'DATE',
  12: 'TIMESTAMP',
  7: 'TIMESTAMP',
  253: 'VARCHAR',
  254: 'VARCHAR',
  252: 'VARCHAR',
};

/** Dates and timestamps stay the text Postgres sends (DuckDB reads them); other types parse as pg's defaults. */
const pgTypes = new pg.TypeOverrides();
for (const oid of [1082, 1114, 1184]) pgTypes.setTypeParser(oid, (v: string) => v);

export interface Extracted {
  rows: number;
  columns: Record<string, string>;
  maxCursor?: string;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_.]*$/;

export async function extractTable(
  conn: ConnectionConfig,
  o: {
    table?: string;
    query?: string;
    cursor?: string;
    since?: string;
    batchSize: number;
    file: string;
    signal: AbortSignal;
    progress(n: number): void;
  },
): Promise<Extracted> {
  if (o.table && !IDENT.test(o.table))
    throw new NonRetryableError(`table "${o.table}" is not a plain name`, 'ConfigError');
  await mkdir(path.dirname(o.file), { recursive: true });
  const out = createWriteStream(o.file);
  const isPg = conn.engine === 'postgres';
  const q = (s: string) => quoteIdentIn(conn.engine, s);
  if (!o.table && !o.query)
    throw new NonRetryableError('an ingest.table task reads a "table" or a "query": give one', 'ConfigError');
  const src = o.table ? o.table.split('.').map(q).join('.') : `(${(o.query ?? '').trim().replace(/;\s*$/, '')}) AS src`;
  const cur = o.cursor ? q(o.cursor) : undefined;
  let columns: Record<string, string> = {};
  let rows = 0;
  let maxCursor = o.since;
  let pgc: pg.Client | undefined;
  let my: mysql.Connection | undefined;
  try {
    if (isPg) {
      pgc = new pg.Client({ connectionString: conn.url });
      await pgc.connect();
    } else {
      my = await mysql.createConnection({
        uri: conn.url,
        dateStrings: true,
        supportBigNumbers: true,
        bigNumberStrings: true,
        decimalNumbers: false,
      });
    }
    const page = async (
      after: string | undefined,
    ): Promise<{ fields: Record<string, string>; data: Record<string, unknown>[] }> => {
      const where = cur && after !== undefined ? `WHERE ${cur} > ${isPg ? '$1' : '?'}` : '';
      const sql = `SELECT * FROM ${src} ${where} ${cur ? `ORDER BY ${cur} LIMIT ${o.batchSize}` : ''}`;
      const params = cur && after !== undefined ? [after] : [];
      if (pgc) {
        const r = await pgc.query<Record<string, unknown>>({ text: sql, values: params, types: pgTypes });
        return {
          fields: Object.fromEntries(r.fields.map((f) => [f.name, PG_TYPES[f.dataTypeID] ?? 'VARCHAR'])),
          data: r.rows,
        };
      }
      if (!my) throw new Error('the MySQL connection is not open');
      const [data, fields] = await my.query<mysql.RowDataPacket[]>({ sql, values: params });
      return {
        fields: Object.fromEntries(fields.map((f) => [f.name, MY_TYPES[f.columnType ?? 253] ?? 'VARCHAR'])),
        data,
      };
    };
    let after = o.since;
    for (;;) {
      if (o.signal.aborted) throw new Error('cancelled');
      const { fields, data } = await page(after);
      columns = fields;
      for (const r of data)
        out.write(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
      rows += data.length;
      o.progress(rows);
      if (o.cursor && data.length) {
        after = String(data[data.length - 1][o.cursor]);
        maxCursor = after;
      }
      if (!cur || data.length < o.batchSize) break;
    }
  } catch (e) {
    const msg = redact(errorMessage(e));
    const code = errorString(e, 'code');
    if (code && /^(42|ER_)/.test(code))
      throw new NonRetryableError(`${conn.engine} (${conn.name}): ${msg} [${code}]`, 'SqlError');
    throw new Error(`${conn.engine} (${conn.name}): ${msg}`);
  } finally {
    await new Promise((r) => out.end(r));
    await pgc?.end().catch(() => {});
    await my?.end().catch(() => {});
  }
  return { rows, columns, maxCursor };
}
