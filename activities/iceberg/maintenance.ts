/**
 * Table maintenance, for every Iceberg table of a tenant's warehouse (Strata's datasets and
 * tables other engines made through the catalog): snapshot expiry, orphan-file removal and
 * compaction of small files. Temporal-free: the `tableMaintenance` workflow, the task kinds
 * and the CLI all call these. Each is idempotent: it reads the table as it is now, and its
 * change is one compare-and-set of the table's pointer (run again, it finds nothing to do).
 *
 * - Expiry first removes refs past their age (audit branches of write-audit-publish after
 *   `strata.audit.max-ref-age-ms`, never `main` nor an audit in progress), then drops snapshots
 *   the policy no longer keeps from the metadata (and marks their
 *   dataset versions expired, in the same transaction), then deletes the files only they
 *   used. A snapshot's age counts from when it stopped being current on `main` (its
 *   creation time if it never was), so a version is readable for the whole retention after
 *   it was replaced, and a reader that started on the current version is never cut short.
 *   Always kept: every branch and tag head, each branch's last `min-snapshots-to-keep`
 *   snapshots (the branch's own settings first), an audit branch's snapshot (a branch like
 *   any other), a write-audit-publish snapshot staged under a `wap.id` not yet published, and
 *   versions a pipeline pins by number (store/maintenance.ts).
 * - Orphan removal deletes files under the table's own prefix that no snapshot, metadata
 *   file or dataset version references, once older than the safety age: a write in flight
 *   (files written, pointer not yet moved) is younger than that. Another table's folder
 *   nested inside is never touched; nothing outside the prefix is listed.
 * - Compaction rewrites small data files (under 75% of the target size, grouped per
 *   partition) into files of about the target size: a `replace` snapshot with exactly the
 *   same rows (checked by count before committing), committed only if `main` is still
 *   where it was planned. For a dataset it is also a new version (same rows, schema and
 *   checks-free), produced by the maintenance run.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { isLayer, type DatasetId } from '../../schemas/lake.js';
import { recordOf } from '../../schemas/guards.js';
import { Catalog, type Producer } from '../../store/catalog.js';
import type { Db } from '../../store/db.js';
import { IcebergStore, NS_SEP, type IcebergTableRow } from '../../store/iceberg.js';
import { maintenanceTables, pinnedVersions } from '../../store/maintenance.js';
import type { ObjectStore } from '../s3/client.js';
import { openDuck } from '../sql/sandbox.js';
import { quoteLiteral } from '../sql/quote.js';
import {
  decodeContainer,
  encodeContainer,
  MANIFEST_LIST_SCHEMA,
  manifestEntrySchema,
  manifestMeta,
  partitionResultType,
  type ManifestEntry,
  type ManifestFile,
} from './avro.js';
import {
  currentSchema,
  SchemaShape,
  setRef,
  snapshotById,
  type PartitionSpec,
  type Snapshot,
  type SnapshotRef,
  type TableMetadata,
  tableMetadata,
} from './metadata.js';
import { policyOf, type MaintenancePolicy } from './policy.js';
import { fieldIdsClause, sameFields, type Schema } from './schema.js';
import { fileStats } from './stats.js';
import { dataFile, keyOf, writeMetadata } from './writer.js';

export interface MaintenanceDeps {
  db: Db;
  /** The tenant's own store (every key under its lake prefix). */
  store: ObjectStore;
  /** Local scratch (S3 downloads, compaction output before upload). */
  cacheDir: string;
}

export interface TableRef {
  tenant: string;
  namespace: string[];
  name: string;
}

export interface MaintenanceOptions {
  now: number;
  /** Policy values that win over the table's properties (a task's or the CLI's flags). */
  overrides?: Partial<MaintenancePolicy>;
  dryRun?: boolean;
}

export const tableLabel = (t: { namespace: string[]; name: string }) => `${t.namespace.join('.')}.${t.name}`;
const sid = (id: number | bigint) => String(id);

/** The dataset a table is (property `strata.dataset`, set by Strata's writer), if any. */
export function datasetOfTable(meta: TableMetadata): DatasetId | undefined {
  const p = meta.properties?.['strata.dataset'];
  const m = p ? /^(bronze|silver|gold)\.([^.]+)\.([^.]+)$/.exec(p) : null;
  return m && isLayer(m[1]) ? { layer: m[1], namespace: m[2], name: m[3] } : undefined;
}

async function loadTable(deps: MaintenanceDeps, t: TableRef): Promise<IcebergTableRow> {
  const row = await new IcebergStore(deps.db).table(t.tenant, t.namespace, t.name);
  if (!row) throw new MaintenanceError(`no table ${tableLabel(t)} in tenant ${t.tenant}'s warehouse`, 'not_found');
  return row;
}

export class MaintenanceError extends Error {
  constructor(
    message: string,
    readonly code: 'not_found' | 'bad_policy',
  ) {
    super(message);
  }
}

/** The key of a URI when it lies under the table's prefix; undefined for anything else (never touched). */
function keyUnder(store: ObjectStore, prefix: string, uri: string): string | undefined {
  try {
    const k = keyOf(store, uri);
    return k.startsWith(prefix) ? k : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- expiry (pure planning)

export interface ExpiryPlan {
  expire: Snapshot[];
  /** Why each kept snapshot is kept (id → reason). */
  kept: Map<string, string>;
}

/**
 * Which snapshots expiry removes. Pure: the table, its policy, the time and the pinned
 * snapshot ids (id → who pins it).
 */
export function planExpiry(
  meta: TableMetadata,
  policy: MaintenancePolicy,
  now: number,
  pinned: Map<string, string> = new Map(),
): ExpiryPlan {
  const byId = new Map(meta.snapshots.map((s) => [sid(s['snapshot-id']), s]));
  const log = meta['snapshot-log'];
  // When a snapshot stopped being current: the next entry of the snapshot log after its last.
  const replacedAt = new Map<string, number>();
  log.forEach((e, i) => {
    const next = log[i + 1];
    replacedAt.set(sid(e['snapshot-id']), next ? next['timestamp-ms'] : Number.POSITIVE_INFINITY);
  });
  const currentId = meta['current-snapshot-id'];
  if (currentId !== undefined) replacedAt.set(sid(currentId), Number.POSITIVE_INFINITY);
  const age = (s: Snapshot) => {
    const at = replacedAt.get(sid(s['snapshot-id'])) ?? s['timestamp-ms'];
    return at === Number.POSITIVE_INFINITY ? 0 : now - at;
  };
  const kept = new Map<string, string>();
  const keep = (id: number | bigint, why: string) => {
    if (!kept.has(sid(id))) kept.set(sid(id), why);
  };
  if (currentId !== undefined) keep(currentId, 'current');
  for (const [name, ref] of Object.entries(meta.refs ?? {})) {
    keep(ref['snapshot-id'], `${ref.type} ${name}`);
    if (ref.type !== 'branch') continue;
    const minKeep = ref['min-snapshots-to-keep'] ?? policy.minSnapshotsToKeep;
    const maxAge = ref['max-snapshot-age-ms'] ?? policy.maxSnapshotAgeMs;
    let s = byId.get(sid(ref['snapshot-id']));
    for (let i = 0; s; i++) {
      if (i >= minKeep && age(s) > maxAge) break;
      keep(s['snapshot-id'], i < minKeep ? `last ${minKeep} of branch ${name}` : `younger than the retention`);
      s = s['parent-snapshot-id'] !== undefined ? byId.get(sid(s['parent-snapshot-id'])) : undefined;
    }
  }
  const published = new Set(meta.snapshots.map((s) => s.summary?.['published-wap-id']).filter((x): x is string => !!x));
  const expire: Snapshot[] = [];
  for (const s of meta.snapshots) {
    const id = sid(s['snapshot-id']);
    if (kept.has(id)) continue;
    const pin = pinned.get(id);
    if (pin) keep(s['snapshot-id'], `pinned by ${pin}`);
    else if (s.summary?.['wap.id'] && !published.has(s.summary['wap.id']))
      keep(s['snapshot-id'], `staged for audit (wap.id ${s.summary['wap.id']})`);
    else if (age(s) <= policy.maxSnapshotAgeMs) keep(s['snapshot-id'], 'younger than the retention');
    else expire.push(s);
  }
  return { expire, kept };
}

// ---------------------------------------------------------------- ref expiry (pure planning)

/** Branches `auditBranch` names (store/iceberg-audit.ts): write-audit-publish's, one per task of a run. */
export const isAuditRef = (name: string, ref: SnapshotRef) => ref.type === 'branch' && name.startsWith('audit-');

export interface RefExpiryPlan {
  /** Refs removed, by name. */
  remove: string[];
  /** Why each kept non-main ref is kept (name → reason). */
  kept: Map<string, string>;
}

/**
 * Which refs expiry removes before it looks at snapshots (so that what only they kept can
 * expire in the same run). A ref's age is its head snapshot's (Iceberg's rule). Never `main`;
 * never an audit in progress. A ref's own `max-ref-age-ms` first; else an audit branch
 * (`audit-…`) expires after the policy's `strata.audit.max-ref-age-ms`; any other branch or
 * tag is kept (Iceberg's default: refs live until removed). A ref whose snapshot is gone
 * points nowhere and is removed.
 */
export function planRefExpiry(
  meta: TableMetadata,
  policy: MaintenancePolicy,
  now: number,
  inProgress: ReadonlySet<string> = new Set(),
): RefExpiryPlan {
  const byId = new Map(meta.snapshots.map((s) => [sid(s['snapshot-id']), s]));
  const remove: string[] = [];
  const kept = new Map<string, string>();
  for (const [name, ref] of Object.entries(meta.refs ?? {})) {
    if (name === 'main') continue;
    if (inProgress.has(name)) {
      kept.set(name, 'audit in progress');
      continue;
    }
    const head = byId.get(sid(ref['snapshot-id']));
    const own = ref['max-ref-age-ms'];
    const maxAge = own ?? (isAuditRef(name, ref) ? policy.maxAuditRefAgeMs : undefined);
    if (!head) remove.push(name);
    else if (maxAge === undefined) kept.set(name, `${ref.type} without max-ref-age-ms`);
    else if (now - head['timestamp-ms'] > maxAge) remove.push(name);
    else kept.set(name, 'younger than its max ref age');
  }
  return { remove, kept };
}

/** A table's refs without the removed ones. */
export function withoutRefs(meta: TableMetadata, names: readonly string[]): TableMetadata {
  if (!names.length) return meta;
  const drop = new Set(names);
  return { ...meta, refs: Object.fromEntries(Object.entries(meta.refs ?? {}).filter(([n]) => !drop.has(n))) };
}

/**
 * The audit branches of a table whose audit is still in progress: recorded `staged` by the
 * catalog and their run's credential not expired yet (revoked or not: the audit revokes it
 * first, then reads the branch). A job that failed leaves its audit staged until then.
 */
async function auditsInProgress(db: Db, t: TableRef, now: number): Promise<Set<string>> {
  const r = await db.query<{ branch: string }>(
    `SELECT a.branch FROM iceberg_audits a
      WHERE a.tenant=$1 AND a.namespace=$2 AND a.name=$3 AND a.status='staged'
        AND EXISTS (SELECT 1 FROM iceberg_run_credentials c
                     WHERE c.tenant=a.tenant AND c.branch=a.branch AND c.expires_at > to_timestamp($4::double precision / 1000))`,
    [t.tenant, t.namespace.join(NS_SEP), t.name, now],
  );
  return new Set(r.rows.map((x) => x.branch));
}

// ---------------------------------------------------------------- what snapshots reach

interface Reach {
  lists: Set<string>;
  manifests: Set<string>;
  /** Data (and delete) files live in the snapshot. */
  live: Set<string>;
  /** Every file any of its manifest entries names (live or deleted). */
  named: Set<string>;
}

class ManifestReader {
  private cache = new Map<string, Promise<{ records: ManifestEntry[]; meta: Record<string, string> }>>();
  constructor(private readonly store: ObjectStore) {}
  list(uri: string): Promise<ManifestFile[]> {
    return this.store
      .getBytes(keyOf(this.store, uri))
      .then((b) => decodeContainer<ManifestFile>(b).then((r) => r.records));
  }
  manifest(uri: string) {
    let p = this.cache.get(uri);
    if (!p) {
      p = this.store.getBytes(keyOf(this.store, uri)).then((b) => decodeContainer<ManifestEntry>(b));
      this.cache.set(uri, p);
    }
    return p;
  }
  async reach(snaps: Snapshot[]): Promise<Reach> {
    const r: Reach = { lists: new Set(), manifests: new Set(), live: new Set(), named: new Set() };
    for (const s of snaps) {
      r.lists.add(s['manifest-list']);
      for (const m of await this.list(s['manifest-list'])) {
        r.manifests.add(m.manifest_path);
        for (const e of (await this.manifest(m.manifest_path)).records) {
          r.named.add(e.data_file.file_path);
          if (e.status !== 2) r.live.add(e.data_file.file_path);
        }
      }
    }
    return r;
  }
}

// ---------------------------------------------------------------- committing a maintenance change

class Skip extends Error {}

/**
 * One change to a table: under the table's row lock (and its dataset's, taken first, the
 * order writers lock in), `change` returns the new metadata or undefined for no change;
 * the metadata file is written and the pointer moved from exactly what was read.
 */
async function commitChange(
  deps: MaintenanceDeps,
  t: TableRef,
  change: (meta: TableMetadata, tx: Db) => Promise<TableMetadata | undefined>,
  tx?: Db,
): Promise<{ metadataLocation: string; meta: TableMetadata } | undefined> {
  const body = async (db: Db) => {
    const cat = new IcebergStore(db);
    const peek = await cat.table(t.tenant, t.namespace, t.name);
    if (!peek) throw new MaintenanceError(`no table ${tableLabel(t)}`, 'not_found');
    const ds = datasetOfTable(tableMetadata(peek.metadata));
    if (ds)
      await db.query(
        `SELECT 1 FROM lake_datasets WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4 FOR UPDATE`,
        [t.tenant, ds.layer, ds.namespace, ds.name],
      );
    const row = await cat.table(t.tenant, t.namespace, t.name, true);
    if (!row) throw new MaintenanceError(`no table ${tableLabel(t)}`, 'not_found');
    const meta = tableMetadata(row.metadata);
    let next = await change(meta, db);
    if (!next) return undefined;
    // Iceberg's write.metadata.previous-versions-max (default 100): older metadata files become orphans.
    const keepLog = Math.max(
      1,
      Math.floor(Number(meta.properties?.['write.metadata.previous-versions-max'] ?? 100)) || 100,
    );
    next = {
      ...next,
      'metadata-log': [
        ...meta['metadata-log'],
        { 'timestamp-ms': meta['last-updated-ms'], 'metadata-file': row.metadataLocation },
      ].slice(-keepLog),
    };
    const location = await writeMetadata(deps.store, keyOf(deps.store, next.location), next);
    if (!(await cat.swap(t.tenant, t.namespace, t.name, row.metadataLocation, location, next)))
      throw new Skip(`${tableLabel(t)} changed during maintenance`);
    return { metadataLocation: location, meta: next };
  };
  return tx ? body(tx) : deps.db.tx(body);
}

// ---------------------------------------------------------------- expiry

export interface ExpireResult {
  table: string;
  /** Refs removed first (expired audit branches, refs past their own max-ref-age-ms). */
  refsRemoved: string[];
  expired: string[];
  /** Dataset versions whose snapshot expired (now read as expired). */
  versions: number[];
  kept: number;
  filesDeleted: number;
  dryRun: boolean;
  problems: string[];
  skipped?: string;
}

/** Snapshot ids pinned by pipelines (dataset tables): version n is snapshot whose strata.version is n. */
async function pinnedSnapshots(deps: MaintenanceDeps, tenant: string, meta: TableMetadata) {
  const ds = datasetOfTable(meta);
  const out = new Map<string, string>();
  if (!ds) return out;
  const pins = await pinnedVersions(deps.db, tenant, ds);
  for (const s of meta.snapshots) {
    const v = Number(s.summary?.['strata.version']);
    const pin = pins.get(v);
    if (pin !== undefined) out.set(sid(s['snapshot-id']), pin);
  }
  return out;
}

export async function expireSnapshots(
  deps: MaintenanceDeps,
  t: TableRef,
  o: MaintenanceOptions,
): Promise<ExpireResult> {
  const row = await loadTable(deps, t);
  const before = tableMetadata(row.metadata);
  const { policy, problems } = policyOf(before.properties, o.overrides);
  const result: ExpireResult = {
    table: tableLabel(t),
    refsRemoved: [],
    expired: [],
    versions: [],
    kept: 0,
    filesDeleted: 0,
    dryRun: !!o.dryRun,
    problems,
  };
  let plan!: ExpiryPlan;
  let meta!: TableMetadata;
  // Expired refs go first (in the same commit), so the snapshots only they kept expire in this run.
  const decide = async (m: TableMetadata, db: Db) => {
    const refs = planRefExpiry(m, policy, o.now, await auditsInProgress(db, t, o.now));
    result.refsRemoved = refs.remove;
    m = withoutRefs(m, refs.remove);
    meta = m;
    plan = planExpiry(m, policy, o.now, await pinnedSnapshots(deps, t.tenant, m));
    result.expired = plan.expire.map((s) => sid(s['snapshot-id']));
    result.versions = plan.expire
      .map((s) => Number(s.summary?.['strata.version']))
      .filter((v) => Number.isInteger(v) && v > 0);
    result.kept = plan.kept.size;
  };
  if (o.dryRun) {
    await decide(before, deps.db);
    return result;
  }
  try {
    await commitChange(deps, t, async (read, tx) => {
      await decide(read, tx);
      const m = meta;
      if (!plan.expire.length && !result.refsRemoved.length) return undefined;
      const drop = new Set(result.expired);
      const ds = datasetOfTable(m);
      if (ds && result.versions.length)
        await tx.query(
          `UPDATE lake_dataset_versions SET status='vacuumed' WHERE tenant=$1 AND layer=$2 AND namespace=$3 AND name=$4 AND version = ANY($5::int[])`,
          [t.tenant, ds.layer, ds.namespace, ds.name, result.versions],
        );
      return {
        ...m,
        snapshots: m.snapshots.filter((s) => !drop.has(sid(s['snapshot-id']))),
        'snapshot-log': m['snapshot-log'].filter((e) => !drop.has(sid(e['snapshot-id']))),
        ...(Array.isArray(m.statistics)
          ? {
              statistics: m.statistics.filter((x) => !drop.has(String(recordOf(x)['snapshot-id']))),
            }
          : {}),
        'last-updated-ms': o.now,
      };
    });
  } catch (e) {
    if (e instanceof Skip) return { ...result, refsRemoved: [], expired: [], versions: [], skipped: e.message };
    throw e;
  }
  if (!plan.expire.length) return result;
  // The files only the expired snapshots used. Their manifests are still there to read.
  const store = deps.store;
  const prefix = `${keyOf(store, meta.location)}/`;
  const reader = new ManifestReader(store);
  const gone = await reader.reach(plan.expire);
  const kept = await reader.reach(meta.snapshots.filter((s) => plan.kept.has(sid(s['snapshot-id']))));
  const stillUsed = await liveVersionFiles(deps, t.tenant, meta);
  const doomed = new Set<string>();
  for (const uri of [...gone.live].filter((f) => !kept.live.has(f))) doomed.add(uri);
  for (const uri of [...gone.manifests].filter((f) => !kept.manifests.has(f))) doomed.add(uri);
  for (const uri of gone.lists) doomed.add(uri);
  const keys = [...doomed].map((u) => keyUnder(store, prefix, u)).filter((k): k is string => !!k && !stillUsed.has(k));
  await store.delete(keys);
  result.filesDeleted = keys.length;
  return result;
}

/** Files of a dataset's versions that are not expired (a version without a snapshot still reads them). */
async function liveVersionFiles(deps: MaintenanceDeps, tenant: string, meta: TableMetadata): Promise<Set<string>> {
  const ds = datasetOfTable(meta);
  return ds ? new Catalog(deps.db).liveFiles(tenant, ds) : new Set();
}

// ---------------------------------------------------------------- orphans

export interface OrphanResult {
  table: string;
  /** Keys deleted (or that would be, on a dry run), at most 1,000 listed. */
  deleted: string[];
  filesDeleted: number;
  bytesDeleted: number;
  /** Unreferenced files left because they are younger than the safety age. */
  tooYoung: number;
  dryRun: boolean;
  problems: string[];
}

export async function removeOrphans(
  deps: MaintenanceDeps,
  t: TableRef,
  o: MaintenanceOptions & { floorMs?: number },
): Promise<OrphanResult> {
  const row = await loadTable(deps, t);
  const meta = tableMetadata(row.metadata);
  const { policy, problems } = policyOf(meta.properties, o.overrides);
  const store = deps.store;
  const prefix = `${keyOf(store, meta.location)}/`;
  // Another table's folder inside this one (the catalog refuses overlaps; belt and braces).
  const nested: string[] = [];
  const cat = new IcebergStore(deps.db);
  for (const other of await maintenanceTables(deps.db, t.tenant)) {
    if (other.name === t.name && other.namespace.join('.') === t.namespace.join('.')) continue;
    const r = await cat.table(other.tenant, other.namespace, other.name);
    const loc = r && keyUnder(store, prefix, tableMetadata(r.metadata).location);
    if (loc) nested.push(`${loc}/`);
  }
  const referenced = new Set<string>();
  const add = (uri: string | undefined) => {
    const k = uri && keyUnder(store, prefix, uri);
    if (k) referenced.add(k);
  };
  const reach = await new ManifestReader(store).reach(meta.snapshots);
  for (const set of [reach.lists, reach.manifests, reach.named]) for (const u of set) add(u);
  add(row.metadataLocation);
  for (const e of meta['metadata-log']) add(e['metadata-file']);
  for (const s of [...(meta.statistics ?? []), ...(meta['partition-statistics'] ?? [])]) {
    const p = recordOf(s)['statistics-path'];
    add(typeof p === 'string' ? p : undefined);
  }
  for (const k of await liveVersionFiles(deps, t.tenant, meta)) referenced.add(k);
  const safety = Math.max(policy.orphanOlderThanMs, o.floorMs ?? 0);
  const cutoff = o.now - safety;
  const result: OrphanResult = {
    table: tableLabel(t),
    deleted: [],
    filesDeleted: 0,
    bytesDeleted: 0,
    tooYoung: 0,
    dryRun: !!o.dryRun,
    problems,
  };
  const doomed: string[] = [];
  for (const obj of await store.list(prefix)) {
    if (!obj.key.startsWith(prefix) || referenced.has(obj.key) || nested.some((n) => obj.key.startsWith(n))) continue;
    if (obj.lastModified.getTime() >= cutoff) {
      result.tooYoung++;
      continue;
    }
    doomed.push(obj.key);
    result.bytesDeleted += obj.size;
  }
  // The table may have committed meanwhile (files it wrote are young, but a commit can name an older file):
  // look at the pointer once more and keep anything it now reaches.
  const again = await cat.table(t.tenant, t.namespace, t.name);
  if (again && again.metadataLocation !== row.metadataLocation) {
    const m2 = tableMetadata(again.metadata);
    const r2 = await new ManifestReader(store).reach(m2.snapshots);
    const now2 = new Set<string>();
    for (const set of [r2.lists, r2.manifests, r2.named])
      for (const u of set) now2.add(keyUnder(store, prefix, u) ?? '');
    for (const k of await liveVersionFiles(deps, t.tenant, m2)) now2.add(k);
    doomed.splice(0, doomed.length, ...doomed.filter((k) => !now2.has(k)));
  }
  if (!o.dryRun) await store.delete(doomed);
  result.filesDeleted = doomed.length;
  result.deleted = doomed.slice(0, 1000);
  return result;
}

// ---------------------------------------------------------------- compaction

export interface CompactResult {
  table: string;
  /** Small files rewritten, and the files written in their place. */
  rewritten: number;
  written: number;
  rows: number;
  /** The new snapshot (and dataset version), when one was committed. */
  snapshotId?: string;
  version?: number;
  dryRun: boolean;
  problems: string[];
  skipped?: string;
}

interface LiveEntry {
  entry: ManifestEntry;
  manifest: ManifestFile;
  /** Written with the table's current fields (ids, names, types). */
  current: boolean;
}

/** The Avro partition fields of a spec, typed from the schema (top-level source columns). */
function partitionFields(spec: PartitionSpec, schema: Schema) {
  return spec.fields.map((f) => {
    const src = schema.fields.find((x) => x.id === f['source-id']);
    return {
      name: f.name,
      id: f['field-id'],
      type: partitionResultType(f.transform.replace(/\[.*$/, ''), src?.type ?? 'string'),
    };
  });
}

export async function compactTable(
  deps: MaintenanceDeps,
  t: TableRef,
  o: MaintenanceOptions & { producer: Omit<Producer, 'tenant'> },
): Promise<CompactResult> {
  const row = await loadTable(deps, t);
  const meta = tableMetadata(row.metadata);
  const { policy, problems } = policyOf(meta.properties, o.overrides);
  const result: CompactResult = {
    table: tableLabel(t),
    rewritten: 0,
    written: 0,
    rows: 0,
    dryRun: !!o.dryRun,
    problems,
  };
  const ds = datasetOfTable(meta);
  const catalog = new Catalog(deps.db);
  // A retried attempt after its commit: the version it made.
  if (ds) {
    const done = await catalog.findCommit({ tenant: t.tenant, ...o.producer }, ds);
    if (done)
      return {
        ...result,
        version: done.version,
        snapshotId: String(done.version),
        skipped: 'already compacted by this run',
      };
  }
  const currentId = meta['current-snapshot-id'];
  const current = currentId !== undefined ? snapshotById(meta, currentId) : undefined;
  if (!current) return { ...result, skipped: 'the table has no current snapshot' };
  const store = deps.store;
  const reader = new ManifestReader(store);
  const lists = await reader.list(current['manifest-list']);
  if (lists.some((m) => m.content !== 0))
    return { ...result, skipped: 'the table has delete files (not compacted yet)' };
  const schema = currentSchema(meta);
  const live: LiveEntry[] = [];
  for (const m of lists) {
    const { records, meta: mm } = await reader.manifest(m.manifest_path);
    // Written with the current schema's fields (the schema a manifest names; its id may be a duplicate's).
    const written = (() => {
      try {
        return mm.schema ? SchemaShape.parse(JSON.parse(mm.schema)) : undefined;
      } catch {
        return undefined;
      }
    })();
    const current = written ? sameFields(written, schema) : Number(mm['schema-id']) === schema['schema-id'];
    for (const e of records) if (e.status !== 2) live.push({ entry: e, manifest: m, current });
  }
  const small = Math.floor(policy.targetFileSizeBytes * 0.75);
  // Groups: same partition spec and values; only files written with the current schema (their field ids match it).
  const groups = new Map<string, LiveEntry[]>();
  for (const l of live) {
    const df = l.entry.data_file;
    if (df.file_size_in_bytes >= small || !l.current || df.file_format.toUpperCase() !== 'PARQUET') continue;
    const key = `${l.manifest.partition_spec_id}|${JSON.stringify(df.partition, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('hex') : v))}`;
    groups.set(key, [...(groups.get(key) ?? []), l]);
  }
  // Bins of about the target size, in file order; a bin of one file would change nothing.
  const bins: LiveEntry[][] = [];
  for (const g of groups.values()) {
    if (g.length < policy.minInputFiles) continue;
    let bin: LiveEntry[] = [];
    let bytes = 0;
    for (const l of g) {
      if (bin.length && bytes + l.entry.data_file.file_size_in_bytes > policy.targetFileSizeBytes) {
        bins.push(bin);
        bin = [];
        bytes = 0;
      }
      bin.push(l);
      bytes += l.entry.data_file.file_size_in_bytes;
    }
    bins.push(bin);
  }
  const work = bins.filter((b) => b.length > 1);
  result.rewritten = work.reduce((a, b) => a + b.length, 0);
  result.written = work.length;
  result.rows = work.flat().reduce((a, l) => a + Number(l.entry.data_file.record_count), 0);
  if (!work.length) return { ...result, skipped: `fewer than ${policy.minInputFiles} small files in any partition` };
  if (o.dryRun) return result;

  // Rewrite each bin in a sandboxed DuckDB that reaches only these files.
  const prefix = keyOf(store, meta.location);
  const tag = randomUUID();
  const scratch = path.join(deps.cacheDir, 'maintenance', tag);
  await mkdir(scratch, { recursive: true });
  const outputs: { key: string; bytes: number; entry: ManifestEntry; specId: number }[] = [];
  const duck = await openDuck();
  try {
    const locals: string[][] = [];
    for (const bin of work) {
      const ls: string[] = [];
      for (const l of bin) {
        const key = keyOf(store, l.entry.data_file.file_path);
        const direct = store.localPath(key);
        if (direct) ls.push(direct);
        else {
          const f = path.join(scratch, 'in', `${ls.length}-${locals.length}.parquet`);
          await mkdir(path.dirname(f), { recursive: true });
          await store.getFile(key, f);
          ls.push(f);
        }
      }
      locals.push(ls);
    }
    const outLocal = work.map((_, i) => path.join(scratch, 'out', `part-${String(i).padStart(5, '0')}.parquet`));
    await mkdir(path.join(scratch, 'out'), { recursive: true });
    await duck.lock({ files: [...locals.flat(), ...outLocal], scratch });
    for (const [i, bin] of work.entries()) {
      const want = bin.reduce((a, l) => a + Number(l.entry.data_file.record_count), 0);
      const copied = await duck.conn.runAndReadAll(
        `COPY (SELECT * FROM read_parquet([${locals[i].map(quoteLiteral).join(', ')}])) TO ${quoteLiteral(outLocal[i])} (FORMAT parquet, COMPRESSION zstd, FIELD_IDS ${fieldIdsClause(schema)})`,
      );
      const got = Number(copied.getRows()[0]?.[0] ?? -1);
      if (got !== want)
        throw new Error(
          `compaction of ${tableLabel(t)} read ${got} rows from files holding ${want}: nothing committed`,
        );
      const stats = await fileStats(duck.conn, outLocal[i], schema);
      const key = `${prefix}/data/compact-${tag}/part-${String(i).padStart(5, '0')}.parquet`;
      const bytes = (await stat(outLocal[i])).size;
      await store.putFile(key, outLocal[i]);
      const first = bin[0].entry.data_file;
      outputs.push({
        key,
        bytes,
        specId: bin[0].manifest.partition_spec_id,
        entry: {
          status: 1,
          snapshot_id: null,
          sequence_number: null,
          file_sequence_number: null,
          data_file: dataFile(store.uri(key), bytes, stats, first.partition),
        },
      });
    }
  } finally {
    await duck.close();
    await rm(scratch, { recursive: true, force: true });
  }

  const replaced = new Set(work.flat().map((l) => l.entry.data_file.file_path));
  const commit = async (m: TableMetadata, snapshotId: number | bigint, extra: Record<string, string>) => {
    if (sid(m['current-snapshot-id'] ?? -1) !== sid(current['snapshot-id']))
      throw new Skip(`${tableLabel(t)} moved on while compacting: the next run compacts again`);
    const seq = m['last-sequence-number'] + 1;
    const manifests: ManifestFile[] = [];
    const specOf = (id: number) => {
      const spec = m['partition-specs'].find((s) => s['spec-id'] === id);
      if (!spec) throw new Error(`${tableLabel(t)} has no partition spec ${id}, which a manifest names`);
      return spec;
    };
    const writeManifest = async (specId: number, entries: ManifestEntry[], counts: Partial<ManifestFile>) => {
      const spec = specOf(specId);
      const body = await encodeContainer(
        manifestEntrySchema(partitionFields(spec, schema)),
        entries,
        manifestMeta(schema, spec),
      );
      const key = `${prefix}/metadata/${tag}-m${manifests.length}.avro`;
      await store.putBytes(key, body);
      const seqs = entries.map((e) => e.sequence_number ?? seq);
      manifests.push({
        manifest_path: store.uri(key),
        manifest_length: body.length,
        partition_spec_id: specId,
        content: 0,
        sequence_number: seq,
        min_sequence_number: Math.min(seq, ...seqs),
        // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- 64-bit id typed number (metadata.ts Long)
        added_snapshot_id: snapshotId as number,
        added_files_count: 0,
        existing_files_count: 0,
        deleted_files_count: 0,
        added_rows_count: 0,
        existing_rows_count: 0,
        deleted_rows_count: 0,
        partitions: null,
        key_metadata: null,
        ...counts,
      });
    };
    // The compacted files, one manifest per partition spec.
    for (const specId of new Set(outputs.map((x) => x.specId))) {
      const es = outputs.filter((x) => x.specId === specId).map((x) => x.entry);
      await writeManifest(specId, es, {
        added_files_count: es.length,
        added_rows_count: es.reduce((a, e) => a + Number(e.data_file.record_count), 0),
      });
    }
    // Manifests naming a replaced file are rewritten (replaced: deleted, others: existing); the rest carry over as they are.
    for (const mf of lists) {
      const { records } = await reader.manifest(mf.manifest_path);
      const liveHere = records.filter((e) => e.status !== 2);
      if (!liveHere.some((e) => replaced.has(e.data_file.file_path))) {
        manifests.push(mf);
        continue;
      }
      const carry = (e: ManifestEntry, status: 0 | 2): ManifestEntry => ({
        status,
        // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- 64-bit id typed number (metadata.ts Long)
        snapshot_id: status === 2 ? (snapshotId as number) : (e.snapshot_id ?? mf.added_snapshot_id),
        sequence_number: e.sequence_number ?? mf.sequence_number,
        file_sequence_number: e.file_sequence_number ?? e.sequence_number ?? mf.sequence_number,
        data_file: e.data_file,
      });
      const es = liveHere.map((e) => carry(e, replaced.has(e.data_file.file_path) ? 2 : 0));
      const rows = (s: number) =>
        es.filter((e) => e.status === s).reduce((a, e) => a + Number(e.data_file.record_count), 0);
      await writeManifest(mf.partition_spec_id, es, {
        existing_files_count: es.filter((e) => e.status === 0).length,
        deleted_files_count: es.filter((e) => e.status === 2).length,
        existing_rows_count: rows(0),
        deleted_rows_count: rows(2),
        min_sequence_number: Math.min(...es.map((e) => Number(e.sequence_number))),
      });
    }
    const listKey = `${prefix}/metadata/snap-${sid(snapshotId)}-1-${tag}.avro`;
    const list = await encodeContainer(MANIFEST_LIST_SCHEMA, manifests, {
      'snapshot-id': sid(snapshotId),
      'parent-snapshot-id': sid(current['snapshot-id']),
      'sequence-number': String(seq),
      'format-version': '2',
    });
    await store.putBytes(listKey, list);
    const addedBytes = outputs.reduce((a, x) => a + x.bytes, 0);
    const removedBytes = work.flat().reduce((a, l) => a + Number(l.entry.data_file.file_size_in_bytes), 0);
    const prevTotal = (k: string, dflt: number) => Number(current.summary?.[k] ?? dflt);
    const liveBytes = live.reduce((a, l) => a + Number(l.entry.data_file.file_size_in_bytes), 0);
    const snapshot: Snapshot = {
      // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- 64-bit id typed number (metadata.ts Long)
      'snapshot-id': snapshotId as number,
      'parent-snapshot-id': current['snapshot-id'],
      'sequence-number': seq,
      'timestamp-ms': o.now,
      'manifest-list': store.uri(listKey),
      summary: {
        operation: 'replace',
        'added-data-files': String(outputs.length),
        'deleted-data-files': String(result.rewritten),
        'added-records': String(result.rows),
        'deleted-records': String(result.rows),
        'added-files-size': String(addedBytes),
        'removed-files-size': String(removedBytes),
        'total-records': String(
          prevTotal(
            'total-records',
            live.reduce((a, l) => a + Number(l.entry.data_file.record_count), 0),
          ),
        ),
        'total-files-size': String(liveBytes - removedBytes + addedBytes),
        'total-data-files': String(live.length - result.rewritten + outputs.length),
        'total-delete-files': '0',
        ...extra,
      },
      'schema-id': schema['schema-id'],
    };
    const next: TableMetadata = setRef(
      { ...m, snapshots: [...m.snapshots, snapshot], 'last-sequence-number': seq, 'last-updated-ms': o.now },
      'main',
      // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- 64-bit id typed number (metadata.ts Long)
      { ...(m.refs.main ?? { type: 'branch' }), 'snapshot-id': snapshotId as number, type: 'branch' },
      o.now,
    );
    return next;
  };
  const randomId = () => Number(BigInt.asUintN(52, BigInt(`0x${randomUUID().replace(/-/g, '').slice(0, 13)}`)));
  const keptFiles = live.filter((l) => !replaced.has(l.entry.data_file.file_path));

  try {
    if (ds) {
      const prev = await catalog.current(t.tenant, ds);
      if (!prev || current.summary?.['strata.version'] !== String(prev.version))
        return {
          ...result,
          skipped: `${tableLabel(t)}'s current snapshot is not its current dataset version: not compacted`,
        };
      let snapshotId: number | undefined;
      const [v] = await catalog.commit(
        { tenant: t.tenant, ...o.producer },
        [
          {
            id: ds,
            location: `${prefix}/data/compact-${tag}`,
            files: keptFiles.map((l) => keyOf(store, l.entry.data_file.file_path)).concat(outputs.map((x) => x.key)),
            schema: prev.schema,
            rowCount: prev.rowCount,
            bytes:
              outputs.reduce((a, x) => a + x.bytes, 0) +
              keptFiles.reduce((a, l) => a + Number(l.entry.data_file.file_size_in_bytes), 0),
            inputs: [],
            checks: [],
            promote: true,
          },
        ],
        undefined,
        // The version row and its `replace` snapshot commit together; `commit` refuses if main moved.
        (tx, inserted) =>
          commitChange(
            deps,
            t,
            async (m) => {
              snapshotId = snapshotById(m, inserted.version) ? randomId() : inserted.version;
              return commit(m, snapshotId, {
                'strata.version': String(inserted.version),
                'strata.run-id': o.producer.runId,
                'strata.task-id': o.producer.taskId,
                'strata.status': 'published',
              });
            },
            tx,
          ),
      );
      result.version = v.version;
      result.snapshotId = snapshotId === undefined ? String(v.version) : sid(snapshotId);
    } else {
      const id = randomId();
      await commitChange(deps, t, (m) => commit(m, id, {}));
      result.snapshotId = sid(id);
    }
  } catch (e) {
    if (e instanceof Skip) return { ...result, skipped: e.message };
    throw e;
  }
  return result;
}

// ---------------------------------------------------------------- policy changes

/** Sets (or, with undefined values, removes) table properties: one maintenance commit. */
export async function setTableProperties(
  deps: MaintenanceDeps,
  t: TableRef,
  updates: Record<string, string | undefined>,
  now: number,
): Promise<Record<string, string>> {
  await loadTable(deps, t);
  const r = await commitChange(deps, t, async (m) => {
    const properties = { ...m.properties };
    for (const [k, v] of Object.entries(updates))
      if (v === undefined) delete properties[k];
      else properties[k] = v;
    return { ...m, properties, 'last-updated-ms': now };
  });
  // A change always commits (or throws): the properties are the table's now.
  return r ? r.meta.properties : tableMetadata((await loadTable(deps, t)).metadata).properties;
}
