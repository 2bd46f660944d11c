/**
 * Iceberg v2 table metadata (the JSON a metadata file holds) and every change to it, as
 * pure functions: the REST catalog's requirements and updates, and the snapshot a Strata
 * dataset version becomes. No I/O here: writer.ts and the catalog do that.
 */
import { z } from 'zod';
import { sameFields, type IcebergType, type Schema, type StructType } from './schema.js';

export interface PartitionField {
  'source-id': number;
  'field-id': number;
  name: string;
  transform: string;
}
export interface PartitionSpec {
  'spec-id': number;
  fields: PartitionField[];
}
export interface SortOrder {
  'order-id': number;
  fields: { transform: string; 'source-id': number; direction: 'asc' | 'desc'; 'null-order': string }[];
}
export interface Snapshot {
  'snapshot-id': number;
  'parent-snapshot-id'?: number;
  'sequence-number': number;
  'timestamp-ms': number;
  'manifest-list': string;
  summary: Record<string, string> & { operation: string };
  'schema-id'?: number;
}
export interface SnapshotRef {
  'snapshot-id': number;
  type: 'branch' | 'tag';
  'max-ref-age-ms'?: number;
  'max-snapshot-age-ms'?: number;
  'min-snapshots-to-keep'?: number;
}
export interface TableMetadata {
  'format-version': 2;
  'table-uuid': string;
  location: string;
  'last-sequence-number': number;
  'last-updated-ms': number;
  'last-column-id': number;
  schemas: Schema[];
  'current-schema-id': number;
  'partition-specs': PartitionSpec[];
  'default-spec-id': number;
  'last-partition-id': number;
  properties: Record<string, string>;
  'current-snapshot-id'?: number;
  snapshots: Snapshot[];
  'snapshot-log': { 'timestamp-ms': number; 'snapshot-id': number }[];
  'metadata-log': { 'timestamp-ms': number; 'metadata-file': string }[];
  'sort-orders': SortOrder[];
  'default-sort-order-id': number;
  refs: Record<string, SnapshotRef>;
  statistics?: unknown[];
  'partition-statistics'?: unknown[];
}

// ---- checked forms of the above, for metadata read back from the metastore and REST bodies ----

/**
 * A 64-bit id or count: a number, or a BigInt beyond 2^53 (schemas/json64.ts parses those so).
 * Typed `number` like the interfaces above; code that compares ids goes through idKey.
 */
const Long = z.custom<number>((v) => typeof v === 'number' || typeof v === 'bigint', 'expected an integer');
const IcebergTypeShape: z.ZodType<IcebergType> = z.lazy(() =>
  z.union([
    z.string(),
    StructShape,
    z.looseObject({
      type: z.literal('list'),
      'element-id': z.number(),
      element: IcebergTypeShape,
      'element-required': z.boolean(),
    }),
    z.looseObject({
      type: z.literal('map'),
      'key-id': z.number(),
      key: IcebergTypeShape,
      'value-id': z.number(),
      value: IcebergTypeShape,
      'value-required': z.boolean(),
    }),
  ]),
);
const StructShape: z.ZodType<StructType> = z.looseObject({
  type: z.literal('struct'),
  fields: z.array(
    z.looseObject({
      id: z.number(),
      name: z.string(),
      required: z.boolean(),
      type: IcebergTypeShape,
      doc: z.string().optional(),
    }),
  ),
});
export const SchemaShape: z.ZodType<Schema> = z.looseObject({
  type: z.literal('struct'),
  fields: z.array(
    z.looseObject({
      id: z.number(),
      name: z.string(),
      required: z.boolean(),
      type: IcebergTypeShape,
      doc: z.string().optional(),
    }),
  ),
  'schema-id': z.number(),
  'identifier-field-ids': z.array(z.number()).optional(),
});
const PartitionFieldShape = z.looseObject({
  'source-id': z.number(),
  'field-id': z.number(),
  name: z.string(),
  transform: z.string(),
});
export const PartitionSpecShape: z.ZodType<PartitionSpec> = z.looseObject({
  'spec-id': z.number(),
  fields: z.array(PartitionFieldShape),
});
export const SortOrderShape: z.ZodType<SortOrder> = z.looseObject({
  'order-id': z.number(),
  fields: z.array(
    z.looseObject({
      transform: z.string(),
      'source-id': z.number(),
      direction: z.enum(['asc', 'desc']),
      'null-order': z.string(),
    }),
  ),
});
export const SnapshotShape: z.ZodType<Snapshot> = z.looseObject({
  'snapshot-id': Long,
  'parent-snapshot-id': Long.optional(),
  'sequence-number': z.number(),
  'timestamp-ms': z.number(),
  'manifest-list': z.string(),
  summary: z.looseObject({ operation: z.string() }).catchall(z.string()),
  'schema-id': z.number().optional(),
});
const SnapshotRefShape: z.ZodType<SnapshotRef> = z.looseObject({
  'snapshot-id': Long,
  type: z.enum(['branch', 'tag']),
  'max-ref-age-ms': z.number().optional(),
  'max-snapshot-age-ms': z.number().optional(),
  'min-snapshots-to-keep': z.number().optional(),
});
const TableMetadataShape: z.ZodType<TableMetadata> = z.looseObject({
  'format-version': z.literal(2),
  'table-uuid': z.string(),
  location: z.string(),
  'last-sequence-number': z.number(),
  'last-updated-ms': z.number(),
  'last-column-id': z.number(),
  schemas: z.array(SchemaShape),
  'current-schema-id': z.number(),
  'partition-specs': z.array(PartitionSpecShape),
  'default-spec-id': z.number(),
  'last-partition-id': z.number(),
  properties: z.record(z.string(), z.string()),
  'current-snapshot-id': Long.optional(),
  snapshots: z.array(SnapshotShape),
  'snapshot-log': z.array(z.looseObject({ 'timestamp-ms': z.number(), 'snapshot-id': Long })),
  'metadata-log': z.array(z.looseObject({ 'timestamp-ms': z.number(), 'metadata-file': z.string() })),
  'sort-orders': z.array(SortOrderShape),
  'default-sort-order-id': z.number(),
  refs: z.record(z.string(), SnapshotRefShape),
  statistics: z.array(z.unknown()).optional(),
  'partition-statistics': z.array(z.unknown()).optional(),
});

/** Table metadata read back (the metastore's JSON, a metadata file), checked: a bad one is an Error naming the field. */
export function tableMetadata(v: unknown): TableMetadata {
  const r = TableMetadataShape.safeParse(v);
  if (r.success) return r.data;
  throw new Error(`table metadata does not parse: ${z.prettifyError(r.error)}`);
}

/** The same, for a value that may be absent (no table yet). */
export function tableMetadataOrUndefined(v: unknown): TableMetadata | undefined {
  return v === undefined || v === null ? undefined : tableMetadata(v);
}

/** A field of a REST update, checked against its shape: a bad one is a 400 naming the action and field. */
function updateField<T>(u: TableUpdate, key: string, shape: z.ZodType<T>): T {
  const r = shape.safeParse(u[key]);
  if (r.success) return r.data;
  throw new MetadataError(`${u.action}: ${key}: ${z.prettifyError(r.error).replace(/\n/g, ' ')}`, 'bad');
}

/** A request the catalog cannot apply (400), or whose requirements no longer hold (409). */
export class MetadataError extends Error {
  constructor(
    message: string,
    readonly kind: 'bad' | 'conflict',
  ) {
    super(message);
  }
}

export const UNPARTITIONED: PartitionSpec = { 'spec-id': 0, fields: [] };
const UNSORTED: SortOrder = { 'order-id': 0, fields: [] };

export function newTableMetadata(o: {
  uuid: string;
  location: string;
  schema: StructType & { 'schema-id'?: number };
  lastColumnId: number;
  spec?: PartitionSpec;
  sortOrder?: SortOrder;
  properties?: Record<string, string>;
  now: number;
}): TableMetadata {
  const spec = o.spec ?? UNPARTITIONED;
  const sort = o.sortOrder ?? UNSORTED;
  return {
    'format-version': 2,
    'table-uuid': o.uuid,
    location: o.location.replace(/\/+$/, ''),
    'last-sequence-number': 0,
    'last-updated-ms': o.now,
    'last-column-id': o.lastColumnId,
    schemas: [{ ...o.schema, 'schema-id': 0 }],
    'current-schema-id': 0,
    'partition-specs': [{ ...spec, 'spec-id': spec['spec-id'] ?? 0 }],
    'default-spec-id': spec['spec-id'] ?? 0,
    'last-partition-id': Math.max(999, ...spec.fields.map((f) => f['field-id'])),
    properties: o.properties ?? {},
    snapshots: [],
    'snapshot-log': [],
    'metadata-log': [],
    'sort-orders': [sort],
    'default-sort-order-id': sort['order-id'],
    refs: {},
  };
}

export function currentSchema(m: TableMetadata): Schema {
  const s = m.schemas.find((x) => x['schema-id'] === m['current-schema-id']);
  if (!s)
    throw new MetadataError(`the table's current schema ${m['current-schema-id']} is not among its schemas`, 'bad');
  return s;
}

/** The table's default partition spec (every valid table has it). */
export function defaultSpec(m: TableMetadata): PartitionSpec {
  const s = m['partition-specs'].find((x) => x['spec-id'] === m['default-spec-id']);
  if (!s)
    throw new MetadataError(`the table's default partition spec ${m['default-spec-id']} is not among its specs`, 'bad');
  return s;
}

export function snapshotById(m: TableMetadata, id: number): Snapshot | undefined {
  return m.snapshots.find((s) => s['snapshot-id'] === id);
}

/** Adds a schema (or finds an identical one) and makes it current. */
export function withSchema(m: TableMetadata, schema: StructType, lastColumnId: number): TableMetadata {
  const same = m.schemas.find((s) => sameFields(s, schema));
  const id = same ? same['schema-id'] : Math.max(-1, ...m.schemas.map((s) => s['schema-id'])) + 1;
  return {
    ...m,
    schemas: same ? m.schemas : [...m.schemas, { ...schema, type: 'struct', 'schema-id': id }],
    'current-schema-id': id,
    'last-column-id': Math.max(m['last-column-id'], lastColumnId),
  };
}

// ---- the REST catalog's TableUpdate and TableRequirement (rest-catalog-open-api.yaml) ----

export type TableUpdate = { action: string } & Record<string, unknown>;
export type TableRequirement = { type: string } & Record<string, unknown>;

/** Checks a commit's requirements against the table as it is now; a failed one is a conflict (409). */
export function checkRequirements(m: TableMetadata | undefined, reqs: TableRequirement[]): void {
  for (const r of reqs) {
    const fail = (why: string) => {
      throw new MetadataError(`requirement ${r.type} failed: ${why}`, 'conflict');
    };
    switch (r.type) {
      case 'assert-create':
        if (m) fail('the table already exists');
        break;
      case 'assert-table-uuid':
        if (!m || m['table-uuid'] !== r.uuid) fail(`table uuid is ${m?.['table-uuid']}, not ${String(r.uuid)}`);
        break;
      case 'assert-ref-snapshot-id': {
        const ref = m?.refs[String(r.ref)];
        const want = r['snapshot-id'] ?? null;
        const have = ref ? ref['snapshot-id'] : null;
        if (have !== want)
          fail(
            `branch or tag ${typeof r.ref === 'string' ? r.ref : '?'} is at ${have ?? 'nothing'}, not ${typeof want === 'bigint' || typeof want === 'number' ? want.toString() : 'nothing'}: reload the table and retry`,
          );
        break;
      }
      case 'assert-last-assigned-field-id':
        if (m?.['last-column-id'] !== r['last-assigned-field-id'])
          fail(`last assigned field id is ${m?.['last-column-id']}`);
        break;
      case 'assert-current-schema-id':
        if (m?.['current-schema-id'] !== r['current-schema-id'])
          fail(`current schema id is ${m?.['current-schema-id']}`);
        break;
      case 'assert-last-assigned-partition-id':
        if (m?.['last-partition-id'] !== r['last-assigned-partition-id'])
          fail(`last assigned partition id is ${m?.['last-partition-id']}`);
        break;
      case 'assert-default-spec-id':
        if (m?.['default-spec-id'] !== r['default-spec-id']) fail(`default spec id is ${m?.['default-spec-id']}`);
        break;
      case 'assert-default-sort-order-id':
        if (m?.['default-sort-order-id'] !== r['default-sort-order-id'])
          fail(`default sort order id is ${m?.['default-sort-order-id']}`);
        break;
      default:
        throw new MetadataError(`unknown requirement type "${r.type}"`, 'bad');
    }
  }
}

/** Applies a commit's updates in order; an update that cannot apply is a 400 naming it. */
export function applyUpdates(
  start: TableMetadata | undefined,
  updates: TableUpdate[],
  o: { now: number; location?: string; uuid: string },
): TableMetadata {
  let m = start;
  let lastAddedSchema: number | undefined;
  let lastAddedSpec: number | undefined;
  let lastAddedOrder: number | undefined;
  const need = (u: TableUpdate): TableMetadata => {
    if (!m) throw new MetadataError(`update ${u.action} needs a table: begin with assign-uuid or add-schema`, 'bad');
    return m;
  };
  const bad: (msg: string) => never = (msg) => {
    throw new MetadataError(msg, 'bad');
  };
  for (const u of updates) {
    switch (u.action) {
      case 'upgrade-format-version':
        if (u['format-version'] !== 2)
          bad(`format-version ${String(u['format-version'])} is not supported: Strata writes v2`);
        m ??= emptyTable(o);
        break;
      case 'assign-uuid':
        if (m && m['table-uuid'] !== u.uuid && start) bad('a table uuid cannot change');
        m = { ...(m ?? emptyTable(o)), 'table-uuid': String(u.uuid) };
        break;
      case 'add-schema': {
        const t = m ?? emptyTable(o);
        if (!StructShape.safeParse(u.schema).success) bad('add-schema needs a struct schema');
        const s = updateField(u, 'schema', StructShape);
        const maxId = maxFieldId(s);
        const id =
          t.schemas.find((x) => sameFields(x, s))?.['schema-id'] ??
          Math.max(-1, ...t.schemas.map((x) => x['schema-id'])) + 1;
        m = {
          ...t,
          schemas: t.schemas.some((x) => x['schema-id'] === id) ? t.schemas : [...t.schemas, { ...s, 'schema-id': id }],
          'last-column-id': Math.max(t['last-column-id'], Number(u['last-column-id'] ?? 0), maxId),
        };
        lastAddedSchema = id;
        break;
      }
      case 'set-current-schema': {
        const t = need(u);
        const id = u['schema-id'] === -1 ? lastAddedSchema : Number(u['schema-id']);
        if (id === undefined || !t.schemas.some((s) => s['schema-id'] === id))
          bad(`no schema ${String(u['schema-id'])}`);
        m = { ...t, 'current-schema-id': id };
        break;
      }
      case 'add-spec': {
        const t = m ?? emptyTable(o);
        const spec = updateField(
          u,
          'spec',
          z.looseObject({
            fields: z.array(PartitionFieldShape.extend({ 'field-id': z.number().optional() })),
          }),
        );
        let nextField = t['last-partition-id'];
        const fields = spec.fields.map((f) => ({ ...f, 'field-id': f['field-id'] ?? ++nextField }));
        const same = t['partition-specs'].find((p) => JSON.stringify(p.fields) === JSON.stringify(fields));
        const id = same?.['spec-id'] ?? Math.max(-1, ...t['partition-specs'].map((p) => p['spec-id'])) + 1;
        m = {
          ...t,
          'partition-specs': same ? t['partition-specs'] : [...t['partition-specs'], { 'spec-id': id, fields }],
          'last-partition-id': Math.max(t['last-partition-id'], ...fields.map((f) => f['field-id'])),
        };
        lastAddedSpec = id;
        break;
      }
      case 'set-default-spec': {
        const t = need(u);
        const id = u['spec-id'] === -1 ? lastAddedSpec : Number(u['spec-id']);
        if (id === undefined || !t['partition-specs'].some((s) => s['spec-id'] === id))
          bad(`no partition spec ${String(u['spec-id'])}`);
        m = { ...t, 'default-spec-id': id };
        break;
      }
      case 'add-sort-order': {
        const t = m ?? emptyTable(o);
        const so = updateField(u, 'sort-order', SortOrderShape);
        const same = t['sort-orders'].find((x) => JSON.stringify(x.fields) === JSON.stringify(so.fields));
        const id =
          same?.['order-id'] ?? (so.fields.length ? Math.max(0, ...t['sort-orders'].map((x) => x['order-id'])) + 1 : 0);
        m = { ...t, 'sort-orders': same ? t['sort-orders'] : [...t['sort-orders'], { ...so, 'order-id': id }] };
        lastAddedOrder = id;
        break;
      }
      case 'set-default-sort-order': {
        const t = need(u);
        const id = u['sort-order-id'] === -1 ? lastAddedOrder : Number(u['sort-order-id']);
        if (id === undefined || !t['sort-orders'].some((s) => s['order-id'] === id))
          bad(`no sort order ${String(u['sort-order-id'])}`);
        m = { ...t, 'default-sort-order-id': id };
        break;
      }
      case 'set-location': {
        const t = need(u);
        if (start && start.location !== u.location)
          bad('a table location cannot move: register the files as a new table');
        m = { ...t, location: String(u.location).replace(/\/+$/, '') };
        break;
      }
      case 'set-properties': {
        const t = need(u);
        m = { ...t, properties: { ...t.properties, ...updateField(u, 'updates', z.record(z.string(), z.string())) } };
        break;
      }
      case 'remove-properties': {
        const t = need(u);
        const props = { ...t.properties };
        for (const k of updateField(u, 'removals', z.array(z.string()).optional()) ?? []) delete props[k];
        m = { ...t, properties: props };
        break;
      }
      case 'add-snapshot': {
        const t = need(u);
        const s = updateField(u, 'snapshot', SnapshotShape);
        if (snapshotById(t, s['snapshot-id'])) bad(`snapshot ${s['snapshot-id']} already exists`);
        if (s['sequence-number'] <= t['last-sequence-number'] && t.snapshots.length)
          throw new MetadataError(
            `snapshot sequence number ${s['sequence-number']} is not above the table's ${t['last-sequence-number']}: reload and retry`,
            'conflict',
          );
        m = {
          ...t,
          snapshots: [...t.snapshots, s],
          'last-sequence-number': Math.max(t['last-sequence-number'], s['sequence-number']),
          'last-updated-ms': s['timestamp-ms'],
        };
        break;
      }
      case 'set-snapshot-ref': {
        const t = need(u);
        const name = String(u['ref-name']);
        const id = updateField(u, 'snapshot-id', Long);
        if (!snapshotById(t, id)) bad(`set-snapshot-ref ${name}: no snapshot ${id}`);
        const ref: SnapshotRef = { 'snapshot-id': id, type: u.type === 'tag' ? 'tag' : 'branch' };
        for (const k of ['max-ref-age-ms', 'max-snapshot-age-ms', 'min-snapshots-to-keep'] as const)
          if (typeof u[k] === 'number') ref[k] = u[k];
        m = setRef(t, name, ref, o.now);
        break;
      }
      case 'remove-snapshot-ref': {
        const t = need(u);
        const refs = { ...t.refs };
        delete refs[String(u['ref-name'])];
        m = { ...t, refs, ...(u['ref-name'] === 'main' ? { 'current-snapshot-id': undefined } : {}) };
        break;
      }
      case 'remove-snapshots': {
        const t = need(u);
        const drop = new Set(updateField(u, 'snapshot-ids', z.array(Long).optional()) ?? []);
        for (const r of Object.values(t.refs))
          if (drop.has(r['snapshot-id'])) bad(`snapshot ${r['snapshot-id']} is referenced by a branch or tag`);
        m = {
          ...t,
          snapshots: t.snapshots.filter((s) => !drop.has(s['snapshot-id'])),
          'snapshot-log': t['snapshot-log'].filter((e) => !drop.has(e['snapshot-id'])),
        };
        break;
      }
      case 'set-statistics':
      case 'remove-statistics':
      case 'set-partition-statistics':
      case 'remove-partition-statistics':
        need(u);
        break;
      default:
        bad(`update action "${u.action}" is not supported by this catalog`);
    }
  }
  if (!m) bad('the commit makes no table: send add-schema (and assign-uuid)');
  return { ...m, 'last-updated-ms': o.now };
}

export function setRef(t: TableMetadata, name: string, ref: SnapshotRef, now: number): TableMetadata {
  const main = name === 'main';
  return {
    ...t,
    refs: { ...t.refs, [name]: ref },
    ...(main
      ? {
          'current-snapshot-id': ref['snapshot-id'],
          'snapshot-log': [...t['snapshot-log'], { 'timestamp-ms': now, 'snapshot-id': ref['snapshot-id'] }],
        }
      : {}),
  };
}

function emptyTable(o: { now: number; location?: string; uuid: string }): TableMetadata {
  return newTableMetadata({
    uuid: o.uuid,
    location: o.location ?? '',
    schema: { type: 'struct', fields: [] },
    lastColumnId: 0,
    now: o.now,
  });
}

function maxFieldId(s: StructType): number {
  let max = 0;
  const walk = (t: unknown) => {
    if (!t || typeof t !== 'object') return;
    for (const k of ['id', 'element-id', 'key-id', 'value-id']) {
      const v: unknown = Reflect.get(t, k);
      if (typeof v === 'number') max = Math.max(max, v);
    }
    for (const v of Object.values(t)) if (typeof v === 'object') walk(v);
  };
  walk(s);
  return max;
}

/** The snapshot current at a time (the snapshot log: what `main` pointed at then). */
export function snapshotAsOf(m: TableMetadata, ms: number): Snapshot | undefined {
  let id: number | undefined;
  for (const e of m['snapshot-log']) if (e['timestamp-ms'] <= ms) id = e['snapshot-id'];
  return id === undefined ? undefined : snapshotById(m, id);
}
