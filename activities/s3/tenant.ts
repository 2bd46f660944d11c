/**
 * The tenant boundary in storage. A tenant sees the lake through `tenantStore`: every key
 * it names lives under its own prefix (`{lake}/{tenant}/…`, or a root of its own from
 * STRATA_TENANT_LAKES), so no key a spec or a param hands it can reach another tenant's
 * objects. Locations outside the lake are reachable only when the platform operator lists
 * them for that tenant (STRATA_TENANT_LOCATIONS); a spec cannot widen that.
 */
import path from 'node:path';
import { TENANT_RE } from '../../schemas/tenant.js';
import { normaliseLocation } from './location.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { openStore, type ByteRange, type ObjectInfo, type ObjectStore, type S3Config } from './client.js';

export function assertTenant(tenant: string): string {
  if (!TENANT_RE.test(tenant))
    throw new NonRetryableError(
      `tenant "${tenant}" is not a valid tenant name (lower-case letters, digits and "-")`,
      'TenantError',
    );
  return tenant;
}

/** A tenant's own folder under the local lake folder: plain duckdb tasks and local reconciliation inputs. */
export function tenantFolder(lakeRoot: string, tenant: string): string {
  return path.join(path.resolve(lakeRoot), assertTenant(tenant));
}

/** A store whose keys all live under `prefix/` of another store. */
class PrefixedStore implements ObjectStore {
  readonly root: string;
  constructor(
    private readonly inner: ObjectStore,
    private readonly prefix: string,
  ) {
    this.root = inner.uri(prefix);
  }
  private k(key: string): string {
    const parts = key.split('/').filter((p) => p && p !== '.');
    if (parts.includes('..'))
      throw new NonRetryableError(
        `key "${key}" climbs out of the tenant's lake: use a path inside it`,
        'LocationError',
      );
    return [this.prefix, ...parts].join('/') + (key.endsWith('/') && parts.length ? '/' : '');
  }
  private rel = (o: ObjectInfo): ObjectInfo => ({ ...o, key: o.key.slice(this.prefix.length + 1) });
  uri = (key: string) => this.inner.uri(this.k(key));
  localPath = (key: string) => this.inner.localPath(this.k(key));
  putFile = async (key: string, file: string) => this.inner.putFile(this.k(key), file);
  putBytes = async (key: string, body: string | Uint8Array) => this.inner.putBytes(this.k(key), body);
  getFile = async (key: string, file: string) => this.inner.getFile(this.k(key), file);
  getBytes = async (key: string, range?: ByteRange) => this.inner.getBytes(this.k(key), range);
  head = async (key: string) => {
    const h = await this.inner.head(this.k(key));
    return h && this.rel(h);
  };
  list = async (prefix: string) => {
    // An empty prefix lists the tenant's whole folder, never a sibling named alike.
    const full = prefix ? this.k(prefix) : `${this.prefix}/`;
    return (await this.inner.list(full)).filter((o) => o.key.startsWith(`${this.prefix}/`)).map(this.rel);
  };
  delete = async (keys: string[]) => this.inner.delete(keys.map((k) => this.k(k)));
  copy = async (from: string, to: string) => this.inner.copy(this.k(from), this.k(to));
}

/** The lake as one tenant sees it. */
export function tenantStore(lake: ObjectStore, tenant: string, own?: Record<string, ObjectStore>): ObjectStore {
  assertTenant(tenant);
  if (own && Object.hasOwn(own, tenant)) return own[tenant];
  return new PrefixedStore(lake, tenant);
}

export interface Located {
  store: ObjectStore;
  key: string;
  /** Inside the tenant's own lake (not an allow-listed outside location). */
  inLake: boolean;
}

/**
 * Resolves a location a task names: a lake key (relative) is the tenant's; a URI or an
 * absolute path must fall inside the tenant's lake or one of its allowed locations.
 */
export function locate(o: { lake: ObjectStore; allowed?: readonly string[]; s3?: S3Config }, p: string): Located {
  if (!/^(s3|file):\/\//.test(p) && !p.startsWith('/')) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(p))
      throw new NonRetryableError(
        `"${p}" has a scheme Strata does not read: use a lake path, s3:// or file://`,
        'LocationError',
      );
    if (p.split('/').includes('..'))
      throw new NonRetryableError(`"${p}" climbs out of your lake: use a path inside it`, 'LocationError');
    return { store: o.lake, key: p, inLake: true };
  }
  const n = normaliseLocation(p);
  const root = normaliseLocation(o.lake.root).replace(/\/+$/, '');
  if (n === root || n.startsWith(`${root}/`)) return { store: o.lake, key: n.slice(root.length + 1), inLake: true };
  for (const a of o.allowed ?? [])
    if (n.startsWith(a)) return { store: openStore(a.replace(/\/$/, ''), o.s3), key: n.slice(a.length), inLake: false };
  throw new NonRetryableError(
    `"${p}" is outside your lake (${o.lake.root})${o.allowed?.length ? ` and your allowed locations (${o.allowed.join(', ')})` : ''}: use a path inside the lake, or ask the platform operator to allow the location for your tenant (STRATA_TENANT_LOCATIONS)`,
    'LocationError',
  );
}
