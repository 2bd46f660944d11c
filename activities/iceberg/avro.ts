/**
 * Manifests and manifest lists as Avro container files (avsc), with the field ids of the
 * Iceberg spec (v2) in their schemas and the table schema and partition spec in the
 * file metadata. Reading accepts any writer's files (null and deflate codecs, what Iceberg writers use by default).
 */
import avro from 'avsc';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { IcebergType, StructType } from './schema.js';
import type { PartitionSpec } from './metadata.js';

/**
 * Avro longs beyond 2^53 (iceberg-go's random snapshot ids) read as BigInt, the rest as
 * numbers, the same rule as activities/iceberg/json.ts; both are written.
 */
const LONG = avro.types.LongType.__with({
  fromBuffer: (b: Buffer) => {
    const n = b.readBigInt64LE();
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  },
  toBuffer: (n: number | bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    return b;
  },
  fromJSON: (n: number | string) => (Number.isSafeInteger(Number(n)) ? Number(n) : BigInt(n)),
  toJSON: (n: number | bigint) => Number(n),
  isValid: (n: unknown) => typeof n === 'bigint' || Number.isInteger(n),
  compare: (a: number | bigint, b: number | bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

const opt = (type: unknown, name: string, id: number) => ({
  name,
  type: ['null', type],
  default: null,
  'field-id': id,
});
const intMap = (name: string, id: number, k: number, v: number, value: unknown) =>
  opt(
    {
      type: 'array',
      logicalType: 'map',
      items: {
        type: 'record',
        name: `k${k}_v${v}`,
        fields: [
          { name: 'key', type: 'int', 'field-id': k },
          { name: 'value', type: value, 'field-id': v },
        ],
      },
    },
    name,
    id,
  );

/** Bytes a decimal of precision P takes as Avro `fixed` (the spec's minBytesRequired(P)). */
export function decimalRequiredBytes(precision: number): number {
  let n = 1;
  while (2n ** BigInt(8 * n - 1) < 10n ** BigInt(precision)) n++;
  return n;
}

/**
 * The Avro type of a partition value (the partition field's result type). A decimal is a
 * `fixed` of minBytesRequired(P) bytes named `decimal_P_S` (as Iceberg's writers name it):
 * defined once per schema, referred to by name after that (`named`).
 */
function avroPrimitive(t: IcebergType, named: Set<string> = new Set()): unknown {
  if (typeof t !== 'string') return 'string';
  const dec = /^decimal\((\d+),\s*(\d+)\)$/.exec(t);
  if (dec) {
    const [precision, scale] = [Number(dec[1]), Number(dec[2])];
    const name = `decimal_${precision}_${scale}`;
    if (named.has(name)) return name;
    named.add(name);
    return { type: 'fixed', name, size: decimalRequiredBytes(precision), logicalType: 'decimal', precision, scale };
  }
  if (t === 'int' || t === 'boolean' || t === 'long' || t === 'float' || t === 'double' || t === 'string') return t;
  if (t === 'date') return { type: 'int', logicalType: 'date' };
  if (t === 'timestamp' || t === 'timestamptz')
    return { type: 'long', logicalType: 'timestamp-micros', 'adjust-to-utc': t === 'timestamptz' };
  if (t === 'binary') return 'bytes';
  return 'string';
}

/** A partition field's result type: identity and truncate keep the source type; day gives date; month/year/hour/bucket give int. */
export function partitionResultType(transform: string, source: IcebergType): IcebergType {
  if (transform === 'identity' || transform === 'truncate') return source;
  if (transform === 'day') return 'date';
  return 'int';
}

export function manifestEntrySchema(partition: { name: string; id: number; type: IcebergType }[]) {
  const named = new Set<string>();
  return {
    type: 'record',
    name: 'manifest_entry',
    fields: [
      { name: 'status', type: 'int', 'field-id': 0 },
      opt('long', 'snapshot_id', 1),
      opt('long', 'sequence_number', 3),
      opt('long', 'file_sequence_number', 4),
      {
        name: 'data_file',
        'field-id': 2,
        type: {
          type: 'record',
          name: 'r2',
          fields: [
            {
              name: 'content',
              type: 'int',
              'field-id': 134,
              doc: 'Contents of the file: 0=data, 1=position deletes, 2=equality deletes',
            },
            { name: 'file_path', type: 'string', 'field-id': 100 },
            { name: 'file_format', type: 'string', 'field-id': 101 },
            {
              name: 'partition',
              'field-id': 102,
              type: {
                type: 'record',
                name: 'r102',
                fields: partition.map((p) => opt(avroPrimitive(p.type, named), p.name, p.id)),
              },
            },
            { name: 'record_count', type: 'long', 'field-id': 103 },
            { name: 'file_size_in_bytes', type: 'long', 'field-id': 104 },
            intMap('column_sizes', 108, 117, 118, 'long'),
            intMap('value_counts', 109, 119, 120, 'long'),
            intMap('null_value_counts', 110, 121, 122, 'long'),
            intMap('nan_value_counts', 137, 138, 139, 'long'),
            intMap('lower_bounds', 125, 126, 127, 'bytes'),
            intMap('upper_bounds', 128, 129, 130, 'bytes'),
            opt('bytes', 'key_metadata', 131),
            opt({ type: 'array', items: 'long', 'element-id': 133 }, 'split_offsets', 132),
            opt({ type: 'array', items: 'int', 'element-id': 136 }, 'equality_ids', 135),
            opt('int', 'sort_order_id', 140),
          ],
        },
      },
    ],
  };
}

export const MANIFEST_LIST_SCHEMA = {
  type: 'record',
  name: 'manifest_file',
  fields: [
    { name: 'manifest_path', type: 'string', 'field-id': 500 },
    { name: 'manifest_length', type: 'long', 'field-id': 501 },
    { name: 'partition_spec_id', type: 'int', 'field-id': 502 },
    { name: 'content', type: 'int', 'field-id': 517 },
    { name: 'sequence_number', type: 'long', 'field-id': 515 },
    { name: 'min_sequence_number', type: 'long', 'field-id': 516 },
    { name: 'added_snapshot_id', type: 'long', 'field-id': 503 },
    { name: 'added_files_count', type: 'int', 'field-id': 504 },
    { name: 'existing_files_count', type: 'int', 'field-id': 505 },
    { name: 'deleted_files_count', type: 'int', 'field-id': 506 },
    { name: 'added_rows_count', type: 'long', 'field-id': 512 },
    { name: 'existing_rows_count', type: 'long', 'field-id': 513 },
    { name: 'deleted_rows_count', type: 'long', 'field-id': 514 },
    opt(
      {
        type: 'array',
        'element-id': 508,
        items: {
          type: 'record',
          name: 'r508',
          fields: [
            { name: 'contains_null', type: 'boolean', 'field-id': 509 },
            opt('boolean', 'contains_nan', 518),
            opt('bytes', 'lower_bound', 510),
            opt('bytes', 'upper_bound', 511),
          ],
        },
      },
      'partitions',
      507,
    ),
    opt('bytes', 'key_metadata', 519),
  ],
};

export interface DataFile {
  content: number;
  file_path: string;
  file_format: string;
  partition: Record<string, unknown>;
  record_count: number;
  file_size_in_bytes: number;
  column_sizes: { key: number; value: number }[] | null;
  value_counts: { key: number; value: number }[] | null;
  null_value_counts: { key: number; value: number }[] | null;
  nan_value_counts: { key: number; value: number }[] | null;
  lower_bounds: { key: number; value: Buffer }[] | null;
  upper_bounds: { key: number; value: Buffer }[] | null;
  key_metadata: Buffer | null;
  split_offsets: number[] | null;
  equality_ids: number[] | null;
  sort_order_id: number | null;
}
export interface ManifestEntry {
  status: 0 | 1 | 2;
  snapshot_id: number | null;
  sequence_number: number | null;
  file_sequence_number: number | null;
  data_file: DataFile;
}
export interface ManifestFile {
  manifest_path: string;
  manifest_length: number;
  partition_spec_id: number;
  content: number;
  sequence_number: number;
  min_sequence_number: number;
  added_snapshot_id: number;
  added_files_count: number;
  existing_files_count: number;
  deleted_files_count: number;
  added_rows_count: number;
  existing_rows_count: number;
  deleted_rows_count: number;
  partitions:
    | { contains_null: boolean; contains_nan: boolean | null; lower_bound: Buffer | null; upper_bound: Buffer | null }[]
    | null;
  key_metadata: Buffer | null;
}

/** Encodes records as one Avro container file (deflate) with the given file metadata. */
export async function encodeContainer(
  schema: object,
  records: object[],
  meta: Record<string, string>,
): Promise<Buffer> {
  // `metadata` (the file's key-value header) is an option avsc's typings leave out.
  const options = {
    codec: 'deflate',
    metadata: Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, Buffer.from(v)])),
    writeHeader: true,
  };
  // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- the schemas carry Iceberg's field ids (`field-id`, `element-id`), which avsc's schema typings do not model
  const enc = new avro.streams.BlockEncoder(schema as avro.Schema, options);
  const chunks: Buffer[] = [];
  enc.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((res, rej) => {
    enc.on('end', res);
    enc.on('error', rej);
  });
  for (const r of records) enc.write(r);
  enc.end();
  await done;
  return Buffer.concat(chunks);
}

const CODECS: Record<string, (buf: Buffer, cb: (e: Error | null, b?: Buffer) => void) => void> = {
  null: (b, cb) => cb(null, b),
  deflate: (b, cb) => zlib.inflateRaw(b, cb),
};

/** Reads every record of an Avro container file, and its metadata. */
export async function decodeContainer<T>(buf: Buffer): Promise<{ records: T[]; meta: Record<string, string> }> {
  const dec = new avro.streams.BlockDecoder({
    codecs: CODECS,
    parseHook: (s: avro.Schema) =>
      s instanceof avro.Type ? s : avro.Type.forSchema(s, { registry: { long: LONG }, wrapUnions: false }),
  });
  const records: T[] = [];
  let meta: Record<string, string> = {};
  dec.on('metadata', (_type: unknown, _codec: unknown, header: { meta: Record<string, Buffer> }) => {
    meta = Object.fromEntries(Object.entries(header.meta).map(([k, v]) => [k, v.toString()]));
  });
  dec.on('data', (r: T) => records.push(r));
  const done = new Promise<void>((res, rej) => {
    dec.on('end', res);
    dec.on('error', rej);
  });
  Readable.from([buf]).pipe(dec);
  await done;
  return { records, meta };
}

/** The manifest file metadata the spec requires (schema, partition spec, format version, content). */
export function manifestMeta(
  schema: StructType & { 'schema-id': number },
  spec: PartitionSpec,
): Record<string, string> {
  return {
    schema: JSON.stringify(schema),
    'schema-id': String(schema['schema-id']),
    'partition-spec': JSON.stringify(spec.fields),
    'partition-spec-id': String(spec['spec-id']),
    'format-version': '2',
    content: 'data',
  };
}
