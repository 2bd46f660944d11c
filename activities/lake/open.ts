/** Builds the lake dependencies a worker needs: the object store, the catalog (migrated) and the lineage sink. */
import os from 'node:os';
import path from 'node:path';
import { Catalog } from '../../store/catalog.js';
import type { Db } from '../../store/db.js';
import { migrate } from '../../store/migrate.js';
import { lineageSinkFromEnv, type LineageSink } from '../catalog/openlineage.js';
import { openStore, type S3Config } from '../s3/client.js';
import { tenantStore } from '../s3/tenant.js';
import type { LakeDeps } from './engine.js';

export interface LakeOptions {
  root: string;
  db: Db;
  s3?: S3Config;
  cacheDir?: string;
  lineage?: LineageSink;
  faults?: LakeDeps['faults'];
  /** Tenant → a lake root of its own (STRATA_TENANT_LAKES, already checked for overlaps). */
  tenantLakes?: Record<string, string>;
  /** Tenant → allowed locations outside the lake (STRATA_TENANT_LOCATIONS). */
  tenantLocations?: Record<string, string[]>;
}

export async function openLake(o: LakeOptions): Promise<LakeDeps> {
  await migrate(o.db);
  // A map without a prototype: a tenant named like an Object method finds nothing of Object's.
  const own: Record<string, ReturnType<typeof openStore>> = {};
  Object.setPrototypeOf(own, null);
  for (const [t, r] of Object.entries(o.tenantLakes ?? {})) own[t] = openStore(r, o.s3);
  return {
    tenantLakes: own,
    tenantLocations: o.tenantLocations,
    store: openStore(o.root, o.s3),
    catalog: new Catalog(o.db),
    cacheDir: o.cacheDir ?? path.join(os.tmpdir(), 'strata-lake-cache'),
    lineage: o.lineage ?? lineageSinkFromEnv(),
    faults: o.faults,
  };
}

/**
 * The lake as one tenant's tasks see it: its own store (every key under its prefix), its
 * own cache folder, its allowed outside locations. Every task activity starts here.
 */
export function forTenant(deps: LakeDeps, tenant: string): LakeDeps {
  if (deps.tenant) {
    if (deps.tenant !== tenant) throw new Error(`lake already scoped to another tenant`);
    return deps;
  }
  return {
    ...deps,
    tenant,
    store: tenantStore(deps.store, tenant, deps.tenantLakes),
    cacheDir: path.join(deps.cacheDir, 'tenants', tenant),
  };
}

/** The outside-the-lake locations a tenant may use. */
export function allowedLocations(deps: LakeDeps, tenant: string): string[] {
  const m = deps.tenantLocations;
  return m && Object.hasOwn(m, tenant) ? m[tenant] : [];
}
