/**
 * Query results as Arrow IPC streams (`Accept: application/vnd.apache.arrow.stream`): one
 * stream per chunk, each with its schema, so chunks fetched in parallel decode on their own.
 * Columns get Arrow types from the engine's type names (DuckDB, Postgres, MySQL): integers up
 * to 32 bits, 64-bit integers (as BigInt, exact), floating point, booleans, dates and
 * timestamps; everything else — decimals, huge integers, intervals, nested values — is text,
 * exactly as the JSON result shows it, so nothing is rounded on the way.
 */
import {
  Bool,
  DateDay,
  Float64,
  Int32,
  Int64,
  Table,
  TimestampMillisecond,
  Utf8,
  tableToIPC,
  vectorFromArray,
  type DataType,
  type Vector,
} from 'apache-arrow';
import type { QueryColumn } from '../activities/sql/query.js';
import { cellText } from './queries-service.js';

export const ARROW_STREAM = 'application/vnd.apache.arrow.stream';

type Kind = 'int32' | 'int64' | 'float' | 'bool' | 'date' | 'timestamp' | 'text';

/** The Arrow kind of an engine's column type name. */
export function arrowKind(engineType: string): Kind {
  const t = engineType.toLowerCase().replace(/\(.*$/, '').trim();
  if (/^(tinyint|smallint|integer|int|int2|int4|mediumint|utinyint|usmallint|year)$/.test(t)) return 'int32';
  if (/^(bigint|int8|uinteger)$/.test(t)) return 'int64';
  if (/^(double|float|real|float4|float8|double precision)$/.test(t)) return 'float';
  if (/^(boolean|bool)$/.test(t)) return 'bool';
  if (t === 'date') return 'date';
  if (/^(timestamp|timestamptz|timestamp with time zone|datetime)$/.test(t)) return 'timestamp';
  return 'text';
}

const TYPES: Record<Kind, () => DataType> = {
  int32: () => new Int32(),
  int64: () => new Int64(),
  float: () => new Float64(),
  bool: () => new Bool(),
  date: () => new DateDay(),
  timestamp: () => new TimestampMillisecond(),
  text: () => new Utf8(),
};

/** Values come JSON-safe from the query path: numbers, strings (64-bit, decimals, dates), booleans, objects. */
function cell(kind: Kind, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  const text = cellText(v);
  switch (kind) {
    case 'int32':
    case 'float':
      return typeof v === 'number' ? v : Number(v);
    case 'int64':
      return typeof v === 'bigint' ? v : BigInt(typeof v === 'number' ? Math.trunc(v) : text);
    case 'bool':
      return typeof v === 'boolean' ? v : v === 'true' || v === 1 || v === 't';
    case 'date':
    case 'timestamp':
      return new Date(typeof v === 'number' ? v : text);
    case 'text':
      return text;
  }
}

/** One chunk of rows as an Arrow IPC stream (schema, then one record batch). */
export function arrowOf(columns: QueryColumn[], rows: unknown[][]): Uint8Array {
  const vectors: Record<string, Vector> = {};
  columns.forEach((c, i) => {
    const kind = arrowKind(c.type);
    const type: DataType = TYPES[kind]();
    vectors[uniqueName(c.name, vectors)] = vectorFromArray(
      rows.map((r) => cell(kind, r[i])),
      type,
    );
  });
  return tableToIPC(new Table(vectors), 'stream');
}

/** Arrow columns are named uniquely; a repeated name (SELECT a, a) gets a suffix. */
function uniqueName(name: string, taken: Record<string, unknown>): string {
  if (!Object.hasOwn(taken, name)) return name;
  for (let i = 1; ; i++) if (!Object.hasOwn(taken, `${name}_${i}`)) return `${name}_${i}`;
}
