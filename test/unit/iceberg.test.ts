/** The pure parts of the Iceberg tables: types and field ids, bounds, 64-bit JSON, requirements and updates. */
import { describe, expect, it } from 'vitest';
import { parseJson, stringifyJson } from '../../schemas/json64.js';
import { applyUpdates, checkRequirements, MetadataError, newTableMetadata } from '../../activities/iceberg/metadata.js';
import { castList, fieldIdsClause, parseDuckType, schemaFor } from '../../activities/iceberg/schema.js';
import { boundValue } from '../../activities/iceberg/stats.js';
import { parseIcebergVending } from '../../schemas/config.js';

describe('Iceberg schemas from DuckDB types', () => {
  it('maps nested types, keeps ids by name across evolution, promotes int → long, renumbers a changed type', () => {
    const cols = [
      { name: 'id', type: 'INTEGER' },
      { name: 'tags', type: 'VARCHAR[]' },
      { name: 'addr', type: 'STRUCT("zip code" VARCHAR, n SMALLINT)' },
      { name: 'm', type: 'MAP(VARCHAR, DOUBLE)' },
    ];
    const a = schemaFor(cols, undefined, 0);
    expect(a.lastColumnId).toBe(9);
    expect(a.schema.fields[2]).toEqual({
      id: 6,
      name: 'addr',
      required: false,
      type: {
        type: 'struct',
        fields: [
          { id: 4, name: 'zip code', required: false, type: 'string' },
          { id: 5, name: 'n', required: false, type: 'int' },
        ],
      },
    });
    expect(fieldIdsClause(a.schema)).toBe(
      "{'id': 1, 'tags': {'__duckdb_field_id': 3, 'element': 2}, 'addr': {'__duckdb_field_id': 6, 'zip code': 4, 'n': 5}, " +
        "'m': {'__duckdb_field_id': 9, 'key': 7, 'value': 8}}",
    );
    const b = schemaFor(
      [
        { name: 'id', type: 'BIGINT' },
        { name: 'm', type: 'VARCHAR' },
        { name: 'new', type: 'DATE' },
      ],
      a.schema,
      a.lastColumnId,
    );
    expect(b.schema.fields.map((f) => [f.id, f.name, f.type])).toEqual([
      [1, 'id', 'long'],
      [10, 'm', 'string'],
      [11, 'new', 'date'],
    ]);
    expect(parseDuckType('TIMESTAMP WITH TIME ZONE')).toMatchObject({ iceberg: 'timestamptz' });
    expect(parseDuckType("ENUM('a', 'b')")).toMatchObject({ iceberg: 'string', duck: 'VARCHAR' });
    // Iceberg's time has no offset: TIMETZ is kept as text rather than failing the write.
    expect(parseDuckType('TIME WITH TIME ZONE')).toMatchObject({ iceberg: 'string', duck: 'VARCHAR' });
    expect(parseDuckType('STRUCT(t TIME WITH TIME ZONE)')).toMatchObject({ kind: 'struct' });
    expect(castList([{ name: 'q', type: 'HUGEINT' }]).list).toBe('CAST("q" AS DECIMAL(38,0)) AS "q"');
    expect(castList([{ name: 'q', type: 'BIGINT' }]).changed).toBe(false);
  });
});

describe('bounds in the single-value binary form', () => {
  it('encodes what it can exactly and leaves out what it cannot', () => {
    expect(boundValue('int', '-2')!.bytes).toEqual(Buffer.from([0xfe, 0xff, 0xff, 0xff]));
    expect(boundValue('date', '1970-01-02')!.bytes.readInt32LE()).toBe(1);
    expect(boundValue('timestamptz', '1970-01-01 01:00:00.5+01')!.bytes.readBigInt64LE()).toBe(500_000n);
    expect(boundValue('decimal(10, 2)', '-1.5')!.bytes).toEqual(Buffer.from([0xff, 0x6a])); // -150
    expect(boundValue('string', 'x'.repeat(100))).toBeUndefined();
    expect(boundValue('decimal(10, 2)', '1.234')).toBeUndefined();
    expect(boundValue('double', 'NaN')).toBeUndefined();
  });
});

describe('JSON with 64-bit ids', () => {
  it('round-trips ids beyond 2^53 exactly and leaves strings alone', () => {
    const text = '{"snapshot-id":3787404170787890265,"n":12,"s":"9007199254740993","f":-1.5}';
    const v = parseJson<Record<string, unknown>>(text);
    expect(v['snapshot-id']).toBe(3787404170787890265n);
    expect(v.n).toBe(12);
    expect(v.s).toBe('9007199254740993');
    expect(stringifyJson(v)).toBe(text);
  });
});

describe('commit requirements and updates', () => {
  const base = newTableMetadata({
    uuid: 'u1',
    location: 's3://b/t',
    schema: { type: 'struct', fields: [{ id: 1, name: 'id', required: true, type: 'long' }] },
    lastColumnId: 1,
    now: 1,
  });
  it('a stale branch is a conflict, an unknown update is bad input, a snapshot moves main and the log', () => {
    expect(() => checkRequirements(base, [{ type: 'assert-ref-snapshot-id', ref: 'main', 'snapshot-id': 5 }])).toThrow(
      expect.objectContaining({ kind: 'conflict' }),
    );
    checkRequirements(base, [{ type: 'assert-ref-snapshot-id', ref: 'main', 'snapshot-id': null }]);
    expect(() => applyUpdates(base, [{ action: 'explode' }], { now: 2, uuid: 'u1' })).toThrow(MetadataError);
    const snap = {
      'snapshot-id': 7n,
      'sequence-number': 1,
      'timestamp-ms': 2,
      'manifest-list': 's3://b/t/m.avro',
      summary: { operation: 'append' },
    };
    const m = applyUpdates(
      base,
      [
        { action: 'add-snapshot', snapshot: snap },
        { action: 'set-snapshot-ref', 'ref-name': 'main', type: 'branch', 'snapshot-id': 7n },
      ],
      { now: 3, uuid: 'u1' },
    );
    expect(m['current-snapshot-id']).toBe(7n);
    expect(m['snapshot-log']).toEqual([{ 'timestamp-ms': 3, 'snapshot-id': 7n }]);
    expect(() => checkRequirements(m, [{ type: 'assert-create' }])).toThrow(
      expect.objectContaining({ kind: 'conflict' }),
    );
  });
});

describe('STRATA_ICEBERG_VENDING', () => {
  it('reads per-warehouse modes and refuses anything else', () => {
    expect(parseIcebergVending('*=sts,legacy=none')).toEqual({ '*': 'sts', legacy: 'none' });
    expect(parseIcebergVending('sts')).toEqual({ '*': 'sts' });
    expect(() => parseIcebergVending('acme=sign')).toThrow(/tenant=sts or tenant=none/);
  });
});
