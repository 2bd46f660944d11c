/**
 * The Iceberg REST catalog over the metastore: one warehouse per tenant (the tenant's own
 * lake prefix, which no other tenant's overlaps), namespaces, tables. A commit runs in one
 * transaction: lock the table's row, check the requirements against the metadata as it is
 * now (409 when they fail), apply the updates, write the new metadata file, move the
 * pointer, and record the Idempotency-Key so a retry is answered, not applied again.
 */
import { randomUUID } from 'node:crypto';
import {
  applyUpdates,
  checkRequirements,
  MetadataError,
  newTableMetadata,
  type PartitionSpec,
  type SortOrder,
  type TableMetadata,
  type TableRequirement,
  type TableUpdate,
} from '../activities/iceberg/metadata.js';
import type { Schema } from '../activities/iceberg/schema.js';
import { keyOf, writeMetadata } from '../activities/iceberg/writer.js';
import { parseJson } from '../schemas/json64.js';
import type { LakeDeps } from '../activities/lake/engine.js';
import { forTenant } from '../activities/lake/open.js';
import type { ObjectStore, S3Config } from '../activities/s3/client.js';
import type { Db } from '../store/db.js';
import { IcebergStore, type IcebergTableRow } from '../store/iceberg.js';
import { AuditStore, type RunCredential } from '../store/iceberg-audit.js';
import { asSeenOnBranch, redirectToBranch, refHead, WapRefusal } from '../activities/iceberg/wap.js';

/** An answer in the spec's error shape: `{"error": {"message", "type", "code"}}`. */
export class IcebergError extends Error {
  constructor(
    readonly code: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
  body() {
    return { error: { message: this.message, type: this.type, code: this.code } };
  }
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$/;
const LAYERS = new Set(['bronze', 'silver', 'gold']);

export function checkName(what: string, n: unknown): string {
  if (typeof n !== 'string' || !NAME.test(n))
    throw new IcebergError(
      400,
      'BadRequestException',
      `${what} ${JSON.stringify(n)} is not allowed: use letters, digits, _ and - (at most 128, not starting with -)`,
    );
  return n;
}

export function checkNamespace(ns: unknown): string[] {
  if (!Array.isArray(ns) || ns.length === 0 || ns.length > 8)
    throw new IcebergError(400, 'BadRequestException', 'namespace must be an array of 1 to 8 names');
  return ns.map((x) => checkName('namespace level', x));
}

/** A table's storage key prefix: datasets' own layout for bronze/silver/gold, `tables/…` for others. */
export function tablePrefix(ns: string[], name: string): string {
  if (LAYERS.has(ns[0]) && ns.length <= 2) return `${ns[0]}/${ns[1] ?? 'default'}/${name}`;
  return `tables/${ns.join('/')}/${name}`;
}

export interface IcebergServiceOptions {
  lake: LakeDeps;
  /** The lake's S3 settings, told to clients as catalog defaults (endpoint, path style, region). */
  s3?: S3Config;
  /** Credential vending per warehouse (`*` for the rest): STS AssumeRole scoped to the table, or none. */
  vending?: Record<string, 'sts' | 'none'>;
  /** How long vended credentials live (seconds, 900–43200). */
  vendingSeconds?: number;
}

export class IcebergService {
  constructor(readonly o: IcebergServiceOptions) {}

  private get db(): Db {
    return this.o.lake.catalog.db;
  }
  private cat(db: Db = this.db) {
    return new IcebergStore(db);
  }
  store(tenant: string): ObjectStore {
    return forTenant(this.o.lake, tenant).store;
  }

  config(tenant: string, warehouse: string | undefined) {
    if (warehouse !== undefined && warehouse !== tenant)
      throw new IcebergError(404, 'NoSuchWarehouseException', `no warehouse ${warehouse}: yours is ${tenant}`);
    const s3 = this.o.s3;
    const defaults: Record<string, string> = {};
    if (s3) {
      defaults['s3.region'] = s3.region;
      defaults['client.region'] = s3.region;
      if (s3.endpoint) {
        defaults['s3.endpoint'] = s3.endpoint;
        defaults['s3.path-style-access'] = 'true';
        defaults['s3.force-virtual-addressing'] = 'false';
      }
    }
    return {
      defaults,
      overrides: { prefix: tenant, warehouse: tenant },
      endpoints: ENDPOINTS,
      'idempotency-key-lifetime': 'PT30M',
    };
  }

  async listNamespaces(tenant: string, parent: string[]) {
    if (parent.length && !(await this.cat().namespaceExists(tenant, parent))) throw noNamespace(parent);
    return { namespaces: await this.cat().listNamespaces(tenant, parent) };
  }

  async createNamespace(tenant: string, body: Record<string, unknown>) {
    const ns = checkNamespace(body.namespace);
    const props = stringMap(body.properties ?? {}, 'properties');
    if (ns.length > 1 && !(await this.cat().namespaceExists(tenant, ns.slice(0, -1))))
      throw noNamespace(ns.slice(0, -1));
    if (!(await this.cat().createNamespace(tenant, ns, props)))
      throw new IcebergError(409, 'AlreadyExistsException', `namespace ${ns.join('.')} already exists`);
    return { namespace: ns, properties: props };
  }

  async getNamespace(tenant: string, ns: string[]) {
    const props = await this.cat().namespace(tenant, ns);
    if (!props) throw noNamespace(ns);
    return { namespace: ns, properties: props };
  }

  async dropNamespace(tenant: string, ns: string[]) {
    const r = await this.cat().dropNamespace(tenant, ns);
    if (r === 'missing') throw noNamespace(ns);
    if (r === 'not_empty')
      throw new IcebergError(
        409,
        'NamespaceNotEmptyException',
        `namespace ${ns.join('.')} still holds tables or namespaces`,
      );
  }

  async updateNamespaceProperties(tenant: string, ns: string[], body: Record<string, unknown>) {
    const props = await this.cat().namespace(tenant, ns);
    if (!props) throw noNamespace(ns);
    const removals = Array.isArray(body.removals) ? body.removals.map(String) : [];
    const updates = stringMap(body.updates ?? {}, 'updates');
    const both = removals.filter((k) => Object.hasOwn(updates, k));
    if (both.length)
      throw new IcebergError(
        422,
        'UnprocessableEntityException',
        `properties both removed and updated: ${both.join(', ')}`,
      );
    const missing = removals.filter((k) => !Object.hasOwn(props, k));
    const next = { ...props, ...updates };
    for (const k of removals) delete next[k];
    await this.cat().setNamespaceProperties(tenant, ns, next);
    return { updated: Object.keys(updates), removed: removals.filter((k) => Object.hasOwn(props, k)), missing };
  }

  async listTables(tenant: string, ns: string[]) {
    if (!(await this.cat().namespaceExists(tenant, ns))) throw noNamespace(ns);
    return { identifiers: (await this.cat().listTables(tenant, ns)).map((name) => ({ namespace: ns, name })) };
  }

  /**
   * A run's credential (write-audit-publish) sees its output tables with its audit branch as
   * `main`; a table it reads is recorded as the job's input (the snapshot `main` is at).
   */
  async loadTable(tenant: string, ns: string[], name: string, delegation?: string, run?: RunCredential) {
    const row = await this.cat().table(tenant, ns, name);
    if (!row) throw noTable(ns, name);
    const meta = row.metadata as unknown as TableMetadata;
    const vended = await this.vend(tenant, meta.location, delegation);
    if (!run) return { ...loadResult(row), ...vended };
    if (isOutput(run, ns, name)) return { ...loadResult(row), metadata: asSeenOnBranch(meta, run.branch), ...vended };
    const head = refHead(meta, 'main');
    if (head !== null) await new AuditStore(this.db).recordRead(tenant, run.branch, { namespace: ns, name }, head);
    return { ...loadResult(row), ...vended };
  }

  /**
   * Short-lived storage credentials for one table (X-Iceberg-Access-Delegation:
   * vended-credentials): STS AssumeRole with an inline session policy that allows only
   * the table's prefix. Remote signing is never offered. Warehouses set to `none` get none.
   */
  async vend(tenant: string, location: string, delegation?: string) {
    if (!delegation?.split(',').some((d) => d.trim() === 'vended-credentials')) return {};
    const v = this.o.vending ?? {};
    const mode = Object.hasOwn(v, tenant) ? v[tenant] : (v['*'] ?? 'none');
    if (mode !== 'sts' || !this.o.s3) return {};
    const m = /^s3a?:\/\/([^/]+)\/(.+?)\/*$/.exec(location);
    // A location that is not a plain bucket/prefix, or holds IAM wildcards, could widen the policy.
    if (!m || /[*?$\\"]/.test(m[2]) || /[*?$\\"]/.test(m[1]))
      throw new IcebergError(403, 'ForbiddenException', `no credentials can be scoped to ${location}`);
    const [, bucket, prefix] = m;
    inWarehouse(this.store(tenant), location, 'the table location');
    const policy = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'],
          Resource: [`arn:aws:s3:::${bucket}/${prefix}/*`],
        },
        {
          Effect: 'Allow',
          Action: ['s3:ListBucket'],
          Resource: [`arn:aws:s3:::${bucket}`],
          Condition: { StringLike: { 's3:prefix': [`${prefix}/*`] } },
        },
      ],
    };
    const { STSClient, AssumeRoleCommand } = await import('@aws-sdk/client-sts');
    const s3 = this.o.s3;
    const sts = new STSClient({
      region: s3.region,
      ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
      ...(s3.accessKeyId && s3.secretAccessKey
        ? { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } }
        : {}),
    });
    const r = await sts
      .send(
        new AssumeRoleCommand({
          RoleArn: process.env.STRATA_ICEBERG_ROLE_ARN ?? 'arn:aws:iam::000000000000:role/strata-iceberg',
          RoleSessionName: `strata-${tenant}`.replace(/[^\w+=,.@-]/g, '-').slice(0, 64),
          Policy: JSON.stringify(policy),
          DurationSeconds: this.o.vendingSeconds ?? 900,
        }),
      )
      .catch((e: Error) => {
        throw new IcebergError(503, 'ServiceUnavailableException', `the storage's STS refused credentials: ${e.name}`);
      });
    const c = r.Credentials!;
    const config: Record<string, string> = {
      's3.access-key-id': c.AccessKeyId!,
      's3.secret-access-key': c.SecretAccessKey!,
      's3.session-token': c.SessionToken!,
      's3.session-token-expires-at-ms': String(c.Expiration?.getTime() ?? Date.now() + 900_000),
      's3.remote-signing-enabled': 'false',
    };
    return { config, 'storage-credentials': [{ prefix: location, config }] };
  }

  async createTable(tenant: string, ns: string[], body: Record<string, unknown>, run?: RunCredential) {
    const name = checkName('table name', body.name);
    if (run && !isOutput(run, ns, name)) throw notAnOutput(run, ns, name);
    if (!(await this.cat().namespaceExists(tenant, ns))) throw noNamespace(ns);
    const schema = body.schema as Schema | undefined;
    if (!schema || schema.type !== 'struct' || !Array.isArray(schema.fields))
      throw new IcebergError(400, 'BadRequestException', 'schema must be a struct schema with fields');
    const store = this.store(tenant);
    const prefix = this.locationPrefix(store, ns, name, body.location);
    await this.assertNoOverlap(tenant, store, prefix);
    const spec = (body['partition-spec'] as PartitionSpec | undefined) ?? { 'spec-id': 0, fields: [] };
    let lastPartition = 999;
    const fields = (spec.fields ?? []).map((f) => ({ ...f, 'field-id': f['field-id'] ?? ++lastPartition }));
    const meta = newTableMetadata({
      uuid: randomUUID(),
      location: store.uri(prefix),
      schema: { ...schema, 'schema-id': 0 },
      lastColumnId: maxId(schema),
      spec: { 'spec-id': 0, fields },
      sortOrder: body['write-order'] as SortOrder | undefined,
      properties: stringMap(body.properties ?? {}, 'properties'),
      now: Date.now(),
    });
    if (body['stage-create'] === true) return { metadata: meta, config: {} };
    const location = await writeMetadata(store, prefix, meta);
    if (!(await this.cat().createTable(tenant, ns, name, location, meta)))
      throw new IcebergError(409, 'AlreadyExistsException', `table ${ns.join('.')}.${name} already exists`);
    return { 'metadata-location': location, metadata: meta, config: {} };
  }

  async registerTable(tenant: string, ns: string[], body: Record<string, unknown>) {
    const name = checkName('table name', body.name);
    if (!(await this.cat().namespaceExists(tenant, ns))) throw noNamespace(ns);
    const store = this.store(tenant);
    const loc = typeof body['metadata-location'] === 'string' ? body['metadata-location'] : '';
    const key = inWarehouse(store, loc, 'metadata-location');
    const meta = parseJson<TableMetadata>(
      (
        await store.getBytes(key).catch(() => {
          throw new IcebergError(400, 'BadRequestException', `metadata-location ${loc} cannot be read`);
        })
      ).toString(),
    );
    inWarehouse(store, meta.location, 'the table location');
    if (body.overwrite === true) await this.cat().dropTable(tenant, ns, name);
    if (!(await this.cat().createTable(tenant, ns, name, loc, meta)))
      throw new IcebergError(409, 'AlreadyExistsException', `table ${ns.join('.')}.${name} already exists`);
    return { 'metadata-location': loc, metadata: meta, config: {} };
  }

  /** Commits requirements and updates; `onCommitted` runs in the same transaction (the idempotency record). */
  async commitTable(
    tenant: string,
    ns: string[],
    name: string,
    body: Record<string, unknown>,
    onCommitted?: (db: Db, result: unknown) => Promise<void>,
    run?: RunCredential,
  ) {
    let reqs = (body.requirements ?? []) as TableRequirement[];
    let updates = (body.updates ?? []) as TableUpdate[];
    if (!Array.isArray(reqs) || !Array.isArray(updates))
      throw new IcebergError(400, 'BadRequestException', 'requirements and updates must be arrays');
    if (run && !isOutput(run, ns, name)) throw notAnOutput(run, ns, name);
    const store = this.store(tenant);
    return this.db.tx(async (t) => {
      const cat = this.cat(t);
      const row = await cat.table(tenant, ns, name, true);
      if (!row) throw noTable(ns, name);
      const meta = row.metadata as unknown as TableMetadata;
      let next: TableMetadata;
      if (run) {
        // Write-audit-publish: the job's move of main lands on its audit branch (activities/iceberg/wap.ts).
        try {
          ({ requirements: reqs, updates } = redirectToBranch(meta, reqs, updates, {
            branch: run.branch,
            runId: run.runId,
            taskId: run.taskId,
          }));
        } catch (e) {
          if (e instanceof WapRefusal) throw new IcebergError(403, 'ForbiddenException', e.message);
          throw e;
        }
        if (!meta.refs?.[run.branch])
          await new AuditStore(t).begin(tenant, { namespace: ns, name }, run.branch, {
            workflowId: run.workflowId,
            taskId: run.taskId,
            baseSnapshotId: refHead(meta, 'main'),
          });
      }
      try {
        checkRequirements(meta, reqs);
        next = applyUpdates(meta, updates, { now: Date.now(), uuid: meta['table-uuid'] });
      } catch (e) {
        if (e instanceof MetadataError)
          throw e.kind === 'conflict'
            ? new IcebergError(409, 'CommitFailedException', e.message)
            : new IcebergError(400, 'BadRequestException', e.message);
        throw e;
      }
      // Every file the table names stays in the tenant's warehouse.
      for (const u of updates)
        if (u.action === 'add-snapshot')
          inWarehouse(
            store,
            String((u.snapshot as { 'manifest-list'?: string })?.['manifest-list']),
            'the manifest list',
          );
      next = {
        ...next,
        'metadata-log': [
          ...meta['metadata-log'],
          { 'timestamp-ms': meta['last-updated-ms'], 'metadata-file': row.metadataLocation },
        ],
      };
      const prefix = keyOf(store, next.location);
      const location = await writeMetadata(store, prefix, next);
      if (!(await cat.swap(tenant, ns, name, row.metadataLocation, location, next)))
        throw new IcebergError(409, 'CommitFailedException', 'the table changed during the commit: reload and retry');
      const result = { 'metadata-location': location, metadata: run ? asSeenOnBranch(next, run.branch) : next };
      await onCommitted?.(t, result);
      return result;
    });
  }

  async dropTable(tenant: string, ns: string[], name: string, purge: boolean) {
    const row = await this.cat().table(tenant, ns, name);
    if (!row) throw noTable(ns, name);
    managedRefusal(row, 'drop');
    await this.cat().dropTable(tenant, ns, name);
    if (purge) {
      const store = this.store(tenant);
      const prefix = keyOf(store, (row.metadata as unknown as TableMetadata).location);
      const objs = await store.list(`${prefix}/`);
      for (let i = 0; i < objs.length; i += 500) await store.delete(objs.slice(i, i + 500).map((o) => o.key));
    }
  }

  async tableExists(tenant: string, ns: string[], name: string) {
    if (!(await this.cat().table(tenant, ns, name))) throw noTable(ns, name);
  }

  async renameTable(tenant: string, body: Record<string, unknown>) {
    const src = body.source as { namespace?: unknown; name?: unknown } | undefined;
    const dst = body.destination as { namespace?: unknown; name?: unknown } | undefined;
    if (!src || !dst) throw new IcebergError(400, 'BadRequestException', 'rename needs source and destination');
    const from = { ns: checkNamespace(src.namespace), name: checkName('table name', src.name) };
    const to = { ns: checkNamespace(dst.namespace), name: checkName('table name', dst.name) };
    const row = await this.cat().table(tenant, from.ns, from.name);
    if (!row) throw noTable(from.ns, from.name);
    managedRefusal(row, 'rename');
    if (!(await this.cat().namespaceExists(tenant, to.ns))) throw noNamespace(to.ns);
    const r = await this.cat().renameTable(tenant, from, to);
    if (r === 'missing') throw noTable(from.ns, from.name);
    if (r === 'exists')
      throw new IcebergError(409, 'AlreadyExistsException', `table ${to.ns.join('.')}.${to.name} already exists`);
  }

  private locationPrefix(store: ObjectStore, ns: string[], name: string, location: unknown): string {
    if (location === undefined || location === null || location === '') return tablePrefix(ns, name);
    if (typeof location !== 'string')
      throw new IcebergError(400, 'BadRequestException', 'location must be a string: an s3:// URI in your warehouse');
    return inWarehouse(store, location, 'location').replace(/\/+$/, '');
  }

  /** No two tables of a warehouse share files: a new location may not hold or sit inside another's. */
  private async assertNoOverlap(tenant: string, store: ObjectStore, prefix: string) {
    const r = await this.db.query<{ namespace: string; name: string; loc: string }>(
      `SELECT namespace, name, metadata->>'location' AS loc FROM iceberg_tables WHERE tenant=$1`,
      [tenant],
    );
    for (const t of r.rows) {
      let other: string;
      try {
        other = keyOf(store, t.loc);
      } catch {
        continue;
      }
      if (other === prefix || other.startsWith(`${prefix}/`) || prefix.startsWith(`${other}/`))
        throw new IcebergError(
          409,
          'AlreadyExistsException',
          `location ${store.uri(prefix)} overlaps table ${t.namespace.split('\u001f').join('.')}.${t.name}: choose another location`,
        );
    }
  }
}

const isOutput = (run: RunCredential, ns: string[], name: string) =>
  run.outputs.some((o) => o.name === name && o.namespace.join('.') === ns.join('.'));

function notAnOutput(run: RunCredential, ns: string[], name: string) {
  const outs = run.outputs.map((o) => [...o.namespace, o.name].join('.')).join(', ') || 'none';
  return new IcebergError(
    403,
    'ForbiddenException',
    `task ${run.taskId}'s catalog credential writes only the outputs it declared (${outs}), not ${[...ns, name].join('.')}: add it to the task's outputs`,
  );
}

function managedRefusal(row: IcebergTableRow, what: string) {
  const ds = (row.metadata as unknown as TableMetadata).properties?.['strata.dataset'];
  if (ds)
    throw new IcebergError(
      403,
      'ForbiddenException',
      `${row.namespace.join('.')}.${row.name} is Strata dataset ${ds}: ${what} it through Strata, not the catalog`,
    );
}

function inWarehouse(store: ObjectStore, uri: string, what: string): string {
  try {
    return keyOf(store, uri);
  } catch {
    throw new IcebergError(403, 'ForbiddenException', `${what} ${uri} is outside your warehouse (${store.root})`);
  }
}

function loadResult(row: IcebergTableRow) {
  return { 'metadata-location': row.metadataLocation, metadata: row.metadata, config: {} };
}

const noNamespace = (ns: string[]) =>
  new IcebergError(404, 'NoSuchNamespaceException', `namespace ${ns.join('.')} does not exist`);
const noTable = (ns: string[], name: string) =>
  new IcebergError(404, 'NoSuchTableException', `table ${ns.join('.')}.${name} does not exist`);

function stringMap(v: unknown, what: string): Record<string, string> {
  if (!v || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string'))
    throw new IcebergError(400, 'BadRequestException', `${what} must be an object of strings`);
  return { ...(v as Record<string, string>) };
}

function maxId(s: unknown): number {
  let m = 0;
  const walk = (x: unknown) => {
    if (!x || typeof x !== 'object') return;
    for (const [k, v] of Object.entries(x)) {
      if ((k === 'id' || k === 'element-id' || k === 'key-id' || k === 'value-id') && typeof v === 'number')
        m = Math.max(m, v);
      else walk(v);
    }
  };
  walk(s);
  return m;
}

export const ENDPOINTS = [
  'GET /v1/{prefix}/namespaces',
  'POST /v1/{prefix}/namespaces',
  'GET /v1/{prefix}/namespaces/{namespace}',
  'HEAD /v1/{prefix}/namespaces/{namespace}',
  'DELETE /v1/{prefix}/namespaces/{namespace}',
  'POST /v1/{prefix}/namespaces/{namespace}/properties',
  'GET /v1/{prefix}/namespaces/{namespace}/tables',
  'POST /v1/{prefix}/namespaces/{namespace}/tables',
  'GET /v1/{prefix}/namespaces/{namespace}/tables/{table}',
  'HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}',
  'POST /v1/{prefix}/namespaces/{namespace}/tables/{table}',
  'DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}',
  'POST /v1/{prefix}/namespaces/{namespace}/register',
  'POST /v1/{prefix}/tables/rename',
];
