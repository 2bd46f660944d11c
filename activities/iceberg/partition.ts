/**
 * Partitioned tables: a partition spec declared as transforms over columns (`identity`,
 * `year`, `month`, `day`, `hour`, `bucket[N]`, `truncate[W]`), resolved against a schema's
 * field ids, and the DuckDB expression that computes each partition value in Iceberg's own
 * representation (days, months, years or hours since 1970, Murmur3 buckets as the spec's
 * Appendix B defines them, truncation as its "Truncate Transform Details": a decimal as its
 * unscaled value), so that the values Strata writes into manifests are the values any reader
 * derives.
 */
import { PARTITION_RE } from '../../schemas/lake.js';
import type { PartitionField, PartitionSpec } from './metadata.js';
import { primitiveFields, type StructType } from './schema.js';
import { quoteIdent } from '../sql/quote.js';

/** One declared partition field, before ids: `day(ordered_at)`, `bucket(16, id)`, `customer`. */
export interface PartitionDecl {
  transform: string;
  column: string;
}

/** Parses `partitionBy` entries (schemas/lake.ts PartitionBy); a bad one is an error naming the forms Strata writes. */
export function parsePartitionBy(entries: string[]): PartitionDecl[] {
  return entries.map((e) => {
    const m = PARTITION_RE.exec(e);
    if (!m)
      throw new Error(
        `partition "${e}" is not one Strata writes: use COLUMN, identity(COLUMN), year(COLUMN), month(COLUMN), day(COLUMN), hour(COLUMN), bucket(N, COLUMN) or truncate(W, COLUMN)`,
      );
    if (m[1]) return { transform: 'identity', column: m[1] };
    if (m[2]) return { transform: m[2], column: m[3] };
    const n = Number(m[5]);
    if (!(n >= 1 && n <= 1_000_000))
      throw new Error(`partition "${e}": a ${m[4] === 'bucket' ? 'bucket count' : 'truncate width'} is 1 to 1000000`);
    return { transform: `${m[4]}[${n}]`, column: m[6] };
  });
}

const SUFFIX: Record<string, string> = {
  year: '_year',
  month: '_month',
  day: '_day',
  hour: '_hour',
  bucket: '_bucket',
  truncate: '_trunc',
};
const TEMPORAL = new Set(['date', 'timestamp', 'timestamptz']);
const IDENTITY = new Set(['int', 'long', 'string', 'boolean', 'double', 'date', 'timestamp', 'timestamptz']);
const BUCKETABLE = new Set(['int', 'long', 'date', 'timestamp', 'timestamptz']);
const DECIMAL_RE = /^decimal\((\d+),\s*(\d+)\)$/;
const truncatable = (t: string) => t === 'int' || t === 'long' || t === 'string' || DECIMAL_RE.test(t);

/**
 * The spec's fields for a schema: source ids by column name, field ids kept from `existing`
 * (a table's spec with the same transforms) or numbered after `lastPartitionId`.
 */
export function resolveSpec(
  decls: PartitionDecl[],
  schema: StructType,
  lastPartitionId: number,
  existing: PartitionSpec[] = [],
): PartitionField[] {
  const cols = new Map(primitiveFields(schema).map((f) => [f.name, f]));
  let next = lastPartitionId;
  const fields = decls.map((d) => {
    const src = cols.get(d.column);
    if (!src) throw new Error(`partition column ${d.column} is not a top-level column of the output`);
    const base = d.transform.replace(/\[.*$/, '');
    if (base === 'identity' && !IDENTITY.has(src.type))
      throw new Error(
        `partition ${d.column}: Strata partitions by the value of int, long, string, boolean, double, date and timestamp columns; ${d.column} is ${src.type}`,
      );
    if (base === 'truncate' && !truncatable(src.type))
      throw new Error(
        `partition truncate(…, ${d.column}): Strata truncates int, long, decimal and string columns; ${d.column} is ${src.type}`,
      );
    if (base !== 'identity' && base !== 'bucket' && base !== 'truncate' && !TEMPORAL.has(src.type))
      throw new Error(`partition ${base}(${d.column}) needs a date or timestamp column; ${d.column} is ${src.type}`);
    if (base === 'hour' && src.type === 'date')
      throw new Error(`partition hour(${d.column}) needs a timestamp; ${d.column} is a date`);
    if (base === 'bucket' && !BUCKETABLE.has(src.type))
      throw new Error(
        `partition bucket(…, ${d.column}): Strata buckets int, long, date and timestamp columns; ${d.column} is ${src.type}`,
      );
    const name = base === 'identity' ? d.column : `${d.column}${SUFFIX[base]}`;
    return { 'source-id': src.id, name, transform: d.transform };
  });
  const same = existing.find(
    (s) =>
      s.fields.length === fields.length &&
      s.fields.every((f, i) => f['source-id'] === fields[i]['source-id'] && f.transform === fields[i].transform),
  );
  return fields.map((f, i) => ({ ...f, 'field-id': same ? same.fields[i]['field-id'] : ++next }));
}

/** The spec a table has, or adds: an identical one keeps its id. */
export function withSpec(
  specs: PartitionSpec[],
  fields: PartitionField[],
): { specs: PartitionSpec[]; spec: PartitionSpec } {
  const key = (fs: PartitionField[]) => JSON.stringify(fs.map((f) => [f['source-id'], f['field-id'], f.transform]));
  const same = specs.find((s) => key(s.fields) === key(fields));
  if (same) return { specs, spec: same };
  const spec = { 'spec-id': Math.max(-1, ...specs.map((s) => s['spec-id'])) + 1, fields };
  return { specs: [...specs, spec], spec };
}

const q = quoteIdent;

/** A value as a long in Iceberg's hashing representation (days, microseconds). */
function asLong(col: string, type: string): string {
  if (type === 'date') return `date_diff('day', DATE '1970-01-01', ${col})`;
  if (type === 'timestamp' || type === 'timestamptz') return `epoch_us(${col})`;
  return `CAST(${col} AS BIGINT)`;
}

/**
 * The DuckDB expression of one partition value over a row of the output, in the result
 * type's representation (a date identity as days, a timestamp identity as microseconds).
 */
export function partitionExpr(f: PartitionField, schema: StructType): string {
  const src = primitiveFields(schema).find((x) => x.id === f['source-id']);
  if (!src) throw new Error(`partition ${f.name}: source field ${f['source-id']} is no longer in the schema`);
  const c = q(src.name);
  const base = f.transform.replace(/\[.*$/, '');
  switch (base) {
    case 'identity':
      return src.type === 'date' || src.type === 'timestamp' || src.type === 'timestamptz' ? asLong(c, src.type) : c;
    case 'year':
      return `(year(${c}) - 1970)`;
    case 'month':
      return `((year(${c}) - 1970) * 12 + month(${c}) - 1)`;
    case 'day':
      return `date_diff('day', DATE '1970-01-01', CAST(${c} AS DATE))`;
    case 'hour':
      return `CAST(floor(epoch_us(${c}) / 3600000000) AS INTEGER)`;
    case 'bucket': {
      const n = Number(/\[(\d+)\]/.exec(f.transform)?.[1]);
      return `CASE WHEN ${c} IS NULL THEN NULL ELSE CAST((__iceberg_murmur_long(${asLong(c, src.type)}) & 2147483647) % ${n} AS INTEGER) END`;
    }
    case 'truncate':
      return truncateExpr(c, src.type, transformWidth(f.transform));
    default:
      throw new Error(`partition transform ${f.transform} is not written by Strata`);
  }
}

/** The `W` of `truncate[W]` (or the `N` of `bucket[N]`). */
function transformWidth(transform: string): number {
  const w = Number(/^\w+\[(\d+)\]$/.exec(transform)?.[1]);
  if (!Number.isSafeInteger(w) || w < 1) throw new Error(`partition transform ${transform} has no width ≥ 1`);
  return w;
}

/**
 * `truncate[W]` of a column, per the spec: int and long `v - (((v % W) + W) % W)` (the
 * remainder kept positive, so -1 → -10 for W=10); a string's first W code points; a decimal's
 * unscaled value truncated the same way, as that unscaled value (a HUGEINT: the manifests
 * hold it as the decimal's fixed bytes). A null stays null.
 */
export function truncateExpr(col: string, type: string, w: number): string {
  if (type === 'string') return `substring(${col}, 1, ${w})`;
  if (type === 'int' || type === 'long') return `(${col} - (((${col} % ${w}) + ${w}) % ${w}))`;
  if (DECIMAL_RE.test(type)) {
    // The unscaled value, exactly: DuckDB prints a DECIMAL(P,S) with all S digits (scaling by 10^S could overflow).
    const u = `CAST(replace(CAST(${col} AS VARCHAR), '.', '') AS HUGEINT)`;
    return `(${u} - (((${u} % ${w}) + ${w}) % ${w}))`;
  }
  throw new Error(`partition truncate[${w}] of a ${type} column is not written by Strata`);
}

/**
 * Murmur3 (x86, 32-bit, seed 0) of a long's 8 little-endian bytes as DuckDB macros, in
 * 128-bit integers so that 32-bit products never overflow (each step masks to 32 bits).
 */
export const MURMUR_MACROS = [
  `CREATE OR REPLACE TEMP MACRO __iceberg_rotl(x, r) AS (((x << r) | (x >> (32 - r))) & 4294967295)`,
  `CREATE OR REPLACE TEMP MACRO __iceberg_k(k) AS ((__iceberg_rotl((k * 3432918353) & 4294967295, 15) * 461845907) & 4294967295)`,
  `CREATE OR REPLACE TEMP MACRO __iceberg_h(h, k) AS ((__iceberg_rotl(xor(h, __iceberg_k(k)), 13) * 5 + 3864292196) & 4294967295)`,
  `CREATE OR REPLACE TEMP MACRO __iceberg_f1(h) AS ((xor(h, h >> 16) * 2246822507) & 4294967295)`,
  `CREATE OR REPLACE TEMP MACRO __iceberg_f2(h) AS ((xor(h, h >> 13) * 3266489909) & 4294967295)`,
  `CREATE OR REPLACE TEMP MACRO __iceberg_fin(x) AS xor(x, x >> 16)`,
  `CREATE OR REPLACE TEMP MACRO __iceberg_murmur_long(v) AS __iceberg_fin(__iceberg_f2(__iceberg_f1(xor(__iceberg_h(__iceberg_h(0::HUGEINT, v::HUGEINT & 4294967295), (v::HUGEINT >> 32) & 4294967295), 8))))`,
];

/** Murmur3 x86 32 (seed 0) of bytes, as a signed 32-bit int: the spec's bucket hash (tests compare the macro with it). */
export function murmur3(bytes: Uint8Array): number {
  const mul = (a: number, b: number) => Math.imul(a, b);
  const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
  let h = 0;
  const n = bytes.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = mul(rotl(mul(k, 0xcc9e2d51), 15), 0x1b873593);
    h = (mul(rotl(h ^ k, 13), 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const rest = n - i;
  if (rest === 3) k ^= bytes[i + 2] << 16;
  if (rest >= 2) k ^= bytes[i + 1] << 8;
  if (rest >= 1) {
    k ^= bytes[i];
    h ^= mul(rotl(mul(k, 0xcc9e2d51), 15), 0x1b873593);
  }
  h ^= n;
  h ^= h >>> 16;
  h = mul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = mul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
