/**
 * Iceberg schemas from DuckDB column types, with field ids that survive schema evolution:
 * a column keeps its id while its name and a compatible type stay (int → long, float →
 * double, a wider decimal are promotions); anything else gets a fresh id above the table's
 * `last-column-id`. Pure: no I/O. Also the DuckDB side of writing: the type each column is
 * cast to (Iceberg has no int16, unsigned or nanosecond types) and the FIELD_IDS clause.
 */

import { isRecord } from '../../schemas/guards.js';
import { quoteIdent } from '../sql/quote.js';

export type IcebergType = string | StructType | ListType | MapType;
export interface NestedField {
  id: number;
  name: string;
  required: boolean;
  type: IcebergType;
  doc?: string;
}
export interface StructType {
  type: 'struct';
  fields: NestedField[];
}
export interface ListType {
  type: 'list';
  'element-id': number;
  element: IcebergType;
  'element-required': boolean;
}
export interface MapType {
  type: 'map';
  'key-id': number;
  key: IcebergType;
  'value-id': number;
  value: IcebergType;
  'value-required': boolean;
}
export interface Schema extends StructType {
  'schema-id': number;
  'identifier-field-ids'?: number[];
}

/** A DuckDB type, parsed: the shape of a column before it has ids. */
type Shape =
  | { kind: 'prim'; iceberg: string; duck: string }
  | { kind: 'struct'; fields: { name: string; shape: Shape }[] }
  | { kind: 'list'; element: Shape }
  | { kind: 'map'; key: Shape; value: Shape };

const PRIM: Record<string, [string, string]> = {
  BOOLEAN: ['boolean', 'BOOLEAN'],
  TINYINT: ['int', 'INTEGER'],
  SMALLINT: ['int', 'INTEGER'],
  INTEGER: ['int', 'INTEGER'],
  UTINYINT: ['int', 'INTEGER'],
  USMALLINT: ['int', 'INTEGER'],
  UINTEGER: ['long', 'BIGINT'],
  BIGINT: ['long', 'BIGINT'],
  UBIGINT: ['decimal(38, 0)', 'DECIMAL(38,0)'],
  HUGEINT: ['decimal(38, 0)', 'DECIMAL(38,0)'],
  UHUGEINT: ['decimal(38, 0)', 'DECIMAL(38,0)'],
  FLOAT: ['float', 'FLOAT'],
  DOUBLE: ['double', 'DOUBLE'],
  VARCHAR: ['string', 'VARCHAR'],
  BLOB: ['binary', 'BLOB'],
  DATE: ['date', 'DATE'],
  TIME: ['time', 'TIME'],
  TIMESTAMP: ['timestamp', 'TIMESTAMP'],
  TIMESTAMP_S: ['timestamp', 'TIMESTAMP'],
  TIMESTAMP_MS: ['timestamp', 'TIMESTAMP'],
  TIMESTAMP_NS: ['timestamp', 'TIMESTAMP'],
  'TIMESTAMP WITH TIME ZONE': ['timestamptz', 'TIMESTAMP WITH TIME ZONE'],
  UUID: ['uuid', 'UUID'],
};

/** Parses a DuckDB type as DESCRIBE prints it. Types Iceberg lacks (INTERVAL, ENUM, JSON, BIT, UNION, TIMETZ) become strings. */
export function parseDuckType(t: string): Shape {
  const p = new TypeParser(t);
  const s = p.type();
  p.end();
  return s;
}

class TypeParser {
  i = 0;
  constructor(readonly s: string) {}
  ws() {
    while (this.s[this.i] === ' ') this.i++;
  }
  end() {
    this.ws();
    if (this.i !== this.s.length) throw new Error(`cannot read DuckDB type "${this.s}" at ${this.i}`);
  }
  name(): string {
    this.ws();
    if (this.s[this.i] === '"') {
      let out = '';
      this.i++;
      for (;;) {
        const c = this.s[this.i++];
        if (c === undefined) throw new Error(`unterminated name in DuckDB type "${this.s}"`);
        if (c === '"') {
          if (this.s[this.i] === '"') {
            out += '"';
            this.i++;
          } else return out;
        } else out += c;
      }
    }
    const m = /^[^\s,()[\]]+/.exec(this.s.slice(this.i));
    if (!m) throw new Error(`cannot read DuckDB type "${this.s}" at ${this.i}`);
    this.i += m[0].length;
    return m[0];
  }
  /** The argument text inside balanced parentheses (for DECIMAL, ENUM). */
  parens(): string {
    const start = this.i;
    let depth = 0;
    let quote = '';
    for (; this.i < this.s.length; this.i++) {
      const c = this.s[this.i];
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === "'" || c === '"') quote = c;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) {
        this.i++;
        return this.s.slice(start + 1, this.i - 1);
      }
    }
    throw new Error(`unbalanced parentheses in DuckDB type "${this.s}"`);
  }
  type(): Shape {
    let base = this.base();
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '[') return base;
      const close = this.s.indexOf(']', this.i);
      this.i = close + 1;
      base = { kind: 'list', element: base };
    }
  }
  base(): Shape {
    const word = this.name().toUpperCase();
    this.ws();
    if (word === 'STRUCT') {
      this.expect('(');
      const fields: { name: string; shape: Shape }[] = [];
      for (;;) {
        const name = this.name();
        fields.push({ name, shape: this.type() });
        this.ws();
        if (this.s[this.i] === ',') {
          this.i++;
          continue;
        }
        this.expect(')');
        return { kind: 'struct', fields };
      }
    }
    if (word === 'MAP') {
      this.expect('(');
      const key = this.type();
      this.expect(',');
      const value = this.type();
      this.expect(')');
      return { kind: 'map', key, value };
    }
    if (word === 'DECIMAL' || word === 'NUMERIC') {
      const [p, s] = (this.s[this.i] === '(' ? this.parens() : '18,3').split(',').map((x) => Number(x.trim()));
      return { kind: 'prim', iceberg: `decimal(${p}, ${s})`, duck: `DECIMAL(${p},${s})` };
    }
    const tz = word === 'TIMESTAMP' || word === 'TIME' ? /^\s*WITH TIME ZONE/i.exec(this.s.slice(this.i)) : null;
    if (tz) {
      this.i += tz[0].length;
      // Iceberg's time has no offset: a TIMETZ is kept whole, as text ('01:02:03+01').
      return word === 'TIME'
        ? { kind: 'prim', iceberg: 'string', duck: 'VARCHAR' }
        : { kind: 'prim', iceberg: 'timestamptz', duck: 'TIMESTAMP WITH TIME ZONE' };
    }
    if (this.s[this.i] === '(') this.parens(); // ENUM('a', …), UNION(…), VARCHAR(n)
    const m = PRIM[word];
    return m ? { kind: 'prim', iceberg: m[0], duck: m[1] } : { kind: 'prim', iceberg: 'string', duck: 'VARCHAR' };
  }
  expect(c: string) {
    this.ws();
    if (this.s[this.i] !== c) throw new Error(`expected "${c}" in DuckDB type "${this.s}" at ${this.i}`);
    this.i++;
  }
}

const quoteName = quoteIdent;

/** The DuckDB type a column is written as (what Iceberg can represent). */
export function duckTarget(s: Shape): string {
  switch (s.kind) {
    case 'prim':
      return s.duck;
    case 'list':
      return `${duckTarget(s.element)}[]`;
    case 'map':
      return `MAP(${duckTarget(s.key)}, ${duckTarget(s.value)})`;
    case 'struct':
      return `STRUCT(${s.fields.map((f) => `${quoteName(f.name)} ${duckTarget(f.shape)}`).join(', ')})`;
  }
}

const DECIMAL = /^decimal\((\d+),\s*(\d+)\)$/;
/** May a column of type `from` keep its field id when its type becomes `to`? (The spec's allowed promotions.) */
export function promotable(from: string, to: string): boolean {
  if (from === to) return true;
  if (from === 'int' && to === 'long') return true;
  if (from === 'float' && to === 'double') return true;
  const a = DECIMAL.exec(from);
  const b = DECIMAL.exec(to);
  return !!a && !!b && a[2] === b[2] && Number(b[1]) >= Number(a[1]);
}

export interface Column {
  name: string;
  /** DuckDB type as DESCRIBE prints it. */
  type: string;
  nullable?: boolean;
}

/**
 * The Iceberg schema for a table's new columns, reusing the ids of `previous` (any of the
 * table's schemas, newest first) where name and type allow. Returns the schema (id not yet
 * assigned: -1) and the new last-column-id.
 */
export function schemaFor(
  columns: Column[],
  previous: StructType | undefined,
  lastColumnId: number,
): { schema: Schema; lastColumnId: number } {
  let last = lastColumnId;
  const next = () => ++last;
  const build = (shape: Shape, prev: IcebergType | undefined): IcebergType => {
    switch (shape.kind) {
      case 'prim':
        return shape.iceberg;
      case 'list': {
        const p = typeof prev === 'object' && prev.type === 'list' ? prev : undefined;
        const element = build(shape.element, p?.element);
        return {
          type: 'list',
          'element-id': p && compatible(p.element, element) ? p['element-id'] : next(),
          element,
          'element-required': false,
        };
      }
      case 'map': {
        const p = typeof prev === 'object' && prev.type === 'map' ? prev : undefined;
        const key = build(shape.key, p?.key);
        const value = build(shape.value, p?.value);
        return {
          type: 'map',
          'key-id': p && compatible(p.key, key) ? p['key-id'] : next(),
          key,
          'value-id': p && compatible(p.value, value) ? p['value-id'] : next(),
          value,
          'value-required': false,
        };
      }
      case 'struct': {
        const p = typeof prev === 'object' && prev.type === 'struct' ? prev : undefined;
        return { type: 'struct', fields: shape.fields.map((f) => field(f.name, f.shape, p, false)) };
      }
    }
  };
  const field = (name: string, shape: Shape, parent: StructType | undefined, required: boolean): NestedField => {
    const old = parent?.fields.find((f) => f.name === name);
    const type = build(shape, old?.type);
    return { id: old && compatible(old.type, type) ? old.id : next(), name, required, type };
  };
  const fields = columns.map((c) => field(c.name, parseDuckType(c.type), previous, false));
  return { schema: { type: 'struct', 'schema-id': -1, fields }, lastColumnId: last };
}

/** Same kind of type (ids may be kept): promotable primitives, or the same nested kind. */
function compatible(a: IcebergType, b: IcebergType): boolean {
  if (typeof a === 'string' || typeof b === 'string')
    return typeof a === 'string' && typeof b === 'string' && promotable(a, b);
  return a.type === b.type;
}

/**
 * True when two schemas have the same fields (ids, names, types), whatever their schema ids.
 * Key order does not count: metadata read back from the metastore (jsonb) has its keys
 * reordered, and an identical schema must still be found as the same one.
 */
export function sameFields(a: StructType, b: StructType): boolean {
  return JSON.stringify(sortedKeys(a.fields)) === JSON.stringify(sortedKeys(b.fields));
}

function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (!isRecord(v)) return v;
  const o = v;
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, sortedKeys(o[k])]),
  );
}

/** DuckDB's FIELD_IDS value for COPY … (FORMAT parquet): a struct literal keyed by column name. */
export function fieldIdsClause(schema: StructType): string {
  const key = (n: string) => `'${n.replace(/'/g, "''")}'`;
  const ids = (t: IcebergType): string | undefined => {
    if (typeof t === 'string') return undefined;
    if (t.type === 'struct') return t.fields.map((f) => `${key(f.name)}: ${node(f.id, f.type)}`).join(', ');
    if (t.type === 'list') return `'element': ${node(t['element-id'], t.element)}`;
    return `'key': ${node(t['key-id'], t.key)}, 'value': ${node(t['value-id'], t.value)}`;
  };
  const node = (id: number, t: IcebergType): string => {
    const inner = ids(t);
    return inner ? `{'__duckdb_field_id': ${id}, ${inner}}` : String(id);
  };
  return `{${ids(schema)}}`;
}

/** The SELECT list that casts each column to the type it is written as (only where it differs). */
export function castList(columns: Column[]): { list: string; changed: boolean } {
  let changed = false;
  const list = columns
    .map((c) => {
      const target = duckTarget(parseDuckType(c.type));
      if (target.replace(/\s/g, '') === c.type.replace(/\s/g, '')) return quoteName(c.name);
      changed = true;
      return `CAST(${quoteName(c.name)} AS ${target}) AS ${quoteName(c.name)}`;
    })
    .join(', ');
  return { list, changed };
}

/** A top-level primitive field by id (for statistics). */
export function primitiveFields(schema: StructType): { id: number; name: string; type: string }[] {
  return schema.fields.flatMap((f) => (typeof f.type === 'string' ? [{ id: f.id, name: f.name, type: f.type }] : []));
}

/** The DuckDB type of an Iceberg type (how a table another engine wrote reads in DuckDB): the inverse of `parseDuckType`. */
export function duckTypeOf(t: IcebergType): string {
  if (typeof t === 'string') {
    const dec = DECIMAL.exec(t);
    if (dec) return `DECIMAL(${dec[1]},${dec[2]})`;
    const prim: Record<string, string> = {
      boolean: 'BOOLEAN',
      int: 'INTEGER',
      long: 'BIGINT',
      float: 'FLOAT',
      double: 'DOUBLE',
      string: 'VARCHAR',
      binary: 'BLOB',
      date: 'DATE',
      time: 'TIME',
      timestamp: 'TIMESTAMP',
      timestamptz: 'TIMESTAMP WITH TIME ZONE',
      timestamp_ns: 'TIMESTAMP_NS',
      timestamptz_ns: 'TIMESTAMP WITH TIME ZONE',
      uuid: 'UUID',
    };
    return prim[t] ?? (/^fixed\[\d+\]$/.test(t) ? 'BLOB' : 'VARCHAR');
  }
  switch (t.type) {
    case 'list':
      return `${duckTypeOf(t.element)}[]`;
    case 'map':
      return `MAP(${duckTypeOf(t.key)}, ${duckTypeOf(t.value)})`;
    case 'struct':
      return `STRUCT(${t.fields.map((f) => `${quoteName(f.name)} ${duckTypeOf(f.type)}`).join(', ')})`;
  }
}
