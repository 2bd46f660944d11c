/**
 * A Parquet file's column statistics as Iceberg manifests carry them: value, null and
 * size counts per field id, and lower/upper bounds in the spec's single-value binary
 * serialization (Appendix D). Read from the file's footer (DuckDB's parquet_metadata),
 * not by scanning the data. A bound that cannot be derived exactly is left out (bounds are
 * optional; a wrong one would make readers skip rows).
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { z } from 'zod';
import { duckRows } from '../sql/duckdb.js';
import { quoteLiteral } from '../sql/quote.js';
import { primitiveFields, type StructType } from './schema.js';

export interface FileStats {
  recordCount: number;
  columnSizes: { key: number; value: number }[];
  valueCounts: { key: number; value: number }[];
  nullValueCounts: { key: number; value: number }[];
  lowerBounds: { key: number; value: Buffer }[];
  upperBounds: { key: number; value: Buffer }[];
  splitOffsets: number[];
}

type Typed = { cmp: bigint | number | Buffer; bytes: Buffer };

const MAX_STRING_BOUND = 64;

function micros(s: string): bigint | undefined {
  const m = /^(-?\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([+-])(\d\d)(?::?(\d\d))?)?$/.exec(
    s.trim(),
  );
  if (!m) return undefined;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  let us = BigInt(ms) * 1000n + BigInt((m[7] ?? '').padEnd(6, '0').slice(0, 6) || '0');
  if (m[8]) {
    const off = (Number(m[9]) * 60 + Number(m[10] ?? 0)) * 60_000_000;
    us += BigInt(m[8] === '+' ? -off : off);
  }
  return us;
}

function le(n: bigint, size: 4 | 8): Buffer {
  const b = Buffer.alloc(size);
  if (size === 4) b.writeInt32LE(Number(n));
  else b.writeBigInt64LE(n);
  return b;
}

/** Two's-complement big-endian, minimum bytes (a decimal's unscaled value in the single-value binary form). */
export function decimalBytes(unscaled: bigint): Buffer {
  let bytes = 1;
  while (unscaled >= 1n << BigInt(8 * bytes - 1) || unscaled < -(1n << BigInt(8 * bytes - 1))) bytes++;
  return fixedDecimal(unscaled, bytes);
}

/** A decimal's unscaled value as Avro `fixed` of `size` bytes: two's complement, big-endian, sign-extended. */
export function fixedDecimal(unscaled: bigint, size: number): Buffer {
  const lim = 1n << BigInt(8 * size - 1);
  if (unscaled >= lim || unscaled < -lim) throw new Error(`decimal ${unscaled} does not fit in ${size} bytes`);
  let v = unscaled < 0n ? (1n << BigInt(8 * size)) + unscaled : unscaled;
  const out = Buffer.alloc(size);
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** A statistics value (as DuckDB prints it) in Iceberg's binary form, or undefined when not exact. */
export function boundValue(type: string, s: string | null): Typed | undefined {
  if (s === null || s === undefined) return undefined;
  try {
    switch (type) {
      case 'boolean':
        return s === 'true' || s === 'false'
          ? { cmp: s === 'true' ? 1 : 0, bytes: Buffer.from([s === 'true' ? 1 : 0]) }
          : undefined;
      case 'int': {
        const n = BigInt(s);
        return { cmp: n, bytes: le(n, 4) };
      }
      case 'long': {
        const n = BigInt(s);
        return { cmp: n, bytes: le(n, 8) };
      }
      case 'float':
      case 'double': {
        const n = Number(s);
        if (!Number.isFinite(n) && !/^-?inf/i.test(s)) return undefined;
        const b = Buffer.alloc(type === 'float' ? 4 : 8);
        if (type === 'float') b.writeFloatLE(n);
        else b.writeDoubleLE(n);
        return { cmp: n, bytes: b };
      }
      case 'string': {
        const b = Buffer.from(s, 'utf8');
        return b.length <= MAX_STRING_BOUND ? { cmp: b, bytes: b } : undefined;
      }
      case 'date': {
        const m = /^(-?\d{4,})-(\d\d)-(\d\d)$/.exec(s);
        if (!m) return undefined;
        const days = BigInt(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) / 86_400_000);
        return { cmp: days, bytes: le(days, 4) };
      }
      case 'timestamp':
      case 'timestamptz': {
        const us = micros(s);
        return us === undefined ? undefined : { cmp: us, bytes: le(us, 8) };
      }
      default: {
        const d = /^decimal\((\d+),\s*(\d+)\)$/.exec(type);
        if (!d) return undefined;
        const m = /^(-?)(\d*)(?:\.(\d*))?$/.exec(s);
        if (!m) return undefined;
        const scale = Number(d[2]);
        const frac = (m[3] ?? '').padEnd(scale, '0');
        if (frac.length > scale) return undefined;
        const n = BigInt(`${m[1]}${m[2] || '0'}${frac}`);
        return { cmp: n, bytes: decimalBytes(n) };
      }
    }
  } catch {
    return undefined;
  }
}

const less = (a: Typed['cmp'], b: Typed['cmp']) =>
  Buffer.isBuffer(a) || Buffer.isBuffer(b)
    ? Buffer.isBuffer(a) && Buffer.isBuffer(b) && Buffer.compare(a, b) < 0
    : a < b;

/** A row of parquet_metadata(): the fields read as text are checked; the rest are counted with Number(). */
const ParquetMetaRow = z.looseObject({
  path_in_schema: z.string(),
  stats_min_value: z.string().nullable(),
  stats_max_value: z.string().nullable(),
});

export async function fileStats(conn: DuckDBConnection, localFile: string, schema: StructType): Promise<FileStats> {
  const rows = await duckRows(
    conn,
    `SELECT row_group_id, row_group_num_rows, file_offset, path_in_schema, stats_min_value, stats_max_value, stats_null_count, num_values, total_compressed_size
       FROM parquet_metadata(${quoteLiteral(localFile)})`,
    ParquetMetaRow,
  );
  const groups = new Map<string, { rows: number; offset: number }>();
  for (const r of rows) {
    const g = groups.get(String(r.row_group_id));
    const off = Number(r.file_offset);
    if (!g) groups.set(String(r.row_group_id), { rows: Number(r.row_group_num_rows), offset: off });
    else if (off < g.offset) g.offset = off;
  }
  const out: FileStats = {
    recordCount: [...groups.values()].reduce((a, g) => a + g.rows, 0),
    columnSizes: [],
    valueCounts: [],
    nullValueCounts: [],
    lowerBounds: [],
    upperBounds: [],
    splitOffsets: [...groups.values()].map((g) => g.offset).sort((a, b) => a - b),
  };
  for (const f of primitiveFields(schema)) {
    const col = rows.filter((r) => r.path_in_schema === f.name);
    if (!col.length) continue;
    out.columnSizes.push({ key: f.id, value: col.reduce((a, r) => a + Number(r.total_compressed_size), 0) });
    out.valueCounts.push({ key: f.id, value: col.reduce((a, r) => a + Number(r.num_values), 0) });
    if (col.every((r) => r.stats_null_count !== null))
      out.nullValueCounts.push({ key: f.id, value: col.reduce((a, r) => a + Number(r.stats_null_count), 0) });
    let lo: Typed | undefined;
    let hi: Typed | undefined;
    let exact = true;
    for (const r of col) {
      const allNull = Number(r.stats_null_count) === Number(r.num_values);
      if (allNull) continue;
      const a = boundValue(f.type, r.stats_min_value);
      const b = boundValue(f.type, r.stats_max_value);
      if (!a || !b) {
        exact = false;
        break;
      }
      if (!lo || less(a.cmp, lo.cmp)) lo = a;
      if (!hi || less(hi.cmp, b.cmp)) hi = b;
    }
    if (exact && lo && hi) {
      out.lowerBounds.push({ key: f.id, value: lo.bytes });
      out.upperBounds.push({ key: f.id, value: hi.bytes });
    }
  }
  return out;
}
