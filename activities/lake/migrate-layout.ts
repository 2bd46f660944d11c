/**
 * Moves a lake written before tenants had their own prefix (`{root}/{layer}/…`) to the
 * tenant layout (`{root}/{tenant}/{layer}/…`). Catalogued files go to the tenant whose
 * version references them (catalog keys are relative to the tenant's lake, so no catalog
 * row changes), and so do the Iceberg metadata files under a dataset's `metadata/`; every other object at the root (landing files, plain task outputs, files of
 * crashed attempts) goes to `defaultTenant`. Each object is copied, checked by size, and
 * only then deleted, so a crash mid-way loses nothing and a second run finishes the job.
 */
import type { Db } from '../../store/db.js';
import type { ObjectStore } from '../s3/client.js';
import { assertTenant } from '../s3/tenant.js';

export interface LayoutMigration {
  moved: number;
  bytes: number;
  /** Objects per tenant that were moved. */
  tenants: Record<string, number>;
  /** Objects left where they are, with why (already under a tenant's prefix). */
  kept: number;
  dryRun: boolean;
}

export async function migrateToTenantLayout(o: {
  store: ObjectStore;
  db: Db;
  defaultTenant: string;
  dryRun?: boolean;
  log?: (m: string) => void;
}): Promise<LayoutMigration> {
  assertTenant(o.defaultTenant);
  const owner = new Map<string, string>();
  const tenants = new Set<string>([o.defaultTenant]);
  const rows = await o.db.query<{ tenant: string; files: string[] }>(
    `SELECT tenant, files FROM lake_dataset_versions WHERE status <> 'vacuumed'`,
  );
  for (const r of rows.rows) {
    tenants.add(r.tenant);
    for (const f of r.files) {
      const prev = owner.get(f);
      if (prev && prev !== r.tenant)
        throw new Error(
          `object ${f} is referenced by tenants ${prev} and ${r.tenant}: resolve this by hand before migrating`,
        );
      owner.set(f, r.tenant);
    }
  }
  // A dataset's Iceberg metadata (manifests, metadata files) goes with the dataset's tenant.
  const metaOwner = new Map<string, string | null>();
  for (const r of (
    await o.db.query<{ tenant: string; layer: string; namespace: string; name: string }>(
      'SELECT tenant, layer, namespace, name FROM lake_datasets',
    )
  ).rows) {
    tenants.add(r.tenant);
    const prefix = `${r.layer}/${r.namespace}/${r.name}/metadata/`;
    metaOwner.set(prefix, metaOwner.has(prefix) && metaOwner.get(prefix) !== r.tenant ? null : r.tenant);
  }
  const metadataTenant = (key: string) => {
    const m = /^([^/]+\/[^/]+\/[^/]+\/metadata\/)/.exec(key);
    return (m && metaOwner.get(m[1])) ?? undefined;
  };
  const out: LayoutMigration = { moved: 0, bytes: 0, tenants: {}, kept: 0, dryRun: !!o.dryRun };
  for (const obj of await o.store.list('')) {
    const first = obj.key.split('/')[0];
    // Already in the tenant layout: a tenant's prefix that no catalogued legacy file claims.
    if (tenants.has(first) && !owner.has(obj.key)) {
      out.kept++;
      continue;
    }
    const tenant = owner.get(obj.key) ?? metadataTenant(obj.key) ?? o.defaultTenant;
    const to = `${tenant}/${obj.key}`;
    out.moved++;
    out.bytes += obj.size;
    out.tenants[tenant] = (out.tenants[tenant] ?? 0) + 1;
    if (o.dryRun) {
      o.log?.(`would move ${obj.key} -> ${to}`);
      continue;
    }
    const there = await o.store.head(to);
    if (!there || there.size !== obj.size) await o.store.copy(obj.key, to);
    const check = await o.store.head(to);
    if (!check || check.size !== obj.size)
      throw new Error(
        `copy of ${obj.key} to ${to} did not verify (size ${check?.size ?? 'missing'} vs ${obj.size}); nothing was deleted for it`,
      );
    await o.store.delete([obj.key]);
    o.log?.(`moved ${obj.key} -> ${to}`);
  }
  return out;
}
