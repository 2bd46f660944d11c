/**
 * Tenant names and the locations a tenant may reach, as configured by the platform
 * operator. Pure: used by the config schema, the API and the worker alike.
 */

/** Tenant names: also a path segment, a Kubernetes label value and a key prefix. */
export const TENANT_RE = /^[a-z][a-z0-9-]{0,62}$/;

export class LocationError extends Error {
  override name = 'LocationError';
}

/**
 * Normalises a location (s3:// or file:// URI, or an absolute path) for prefix comparison:
 * repeated slashes folded, percent-escapes of file URIs decoded; "." and ".." segments are
 * refused rather than resolved, so a prefix check can never be walked around.
 */
export function normaliseLocation(p: string): string {
  const isPath = p.startsWith('/');
  const uri = isPath ? `file://${p}` : p;
  const m = /^(s3|file):\/\/([^/]*)(\/.*)?$/s.exec(uri);
  if (!m) throw new LocationError(`"${p}" is not a location: use a path inside the lake, or an s3:// or file:// URI`);
  let rest = m[3] ?? '/';
  if (m[1] === 'file') {
    if (m[2] && m[2] !== 'localhost')
      throw new LocationError(`"${p}" names a host: file:// locations are local folders (file:///FOLDER)`);
    if (!isPath)
      try {
        rest = decodeURIComponent(rest);
      } catch {
        throw new LocationError(`"${p}" has a broken percent-escape`);
      }
  } else if (!m[2]) throw new LocationError(`"${p}" names no bucket: write s3://BUCKET/KEY`);
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\u0000-\u001f]/.test(rest)) throw new LocationError(`"${p}" holds control characters`);
  const segs = rest.split('/');
  if (segs.some((s) => s === '..' || s === '.'))
    throw new LocationError(`"${p}" has "." or ".." segments: write the location without them`);
  rest = rest.replace(/\/{2,}/g, '/');
  return m[1] === 'file' ? `file://${rest}` : `s3://${m[2]}${rest}`;
}

function pairs(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** STRATA_TENANT_LOCATIONS: `acme=s3://partner/acme/|file:///srv/exports/acme/,beta=…`. */
export function parseTenantLocations(text: string | undefined): Record<string, string[]> {
  const out = Object.create(null) as Record<string, string[]>;
  for (const pair of pairs(text)) {
    const eq = pair.indexOf('=');
    const tenant = pair.slice(0, eq).trim();
    const list = pair
      .slice(eq + 1)
      .split('|')
      .map((s) => s.trim())
      .filter(Boolean);
    if (eq < 1 || !TENANT_RE.test(tenant) || !list.length)
      throw new Error(
        `STRATA_TENANT_LOCATIONS: "${pair}" should be TENANT=URI[|URI…] with each URI an s3://BUCKET/PREFIX/ or file:///FOLDER/`,
      );
    for (const u of list) {
      let n: string;
      try {
        n = normaliseLocation(u);
      } catch (e) {
        throw new Error(`STRATA_TENANT_LOCATIONS: ${(e as Error).message}`);
      }
      if (!n.endsWith('/'))
        throw new Error(`STRATA_TENANT_LOCATIONS: "${u}" must end with "/" (a folder or prefix, not one object)`);
      (out[tenant] ??= []).push(n);
    }
  }
  return out;
}

const overlaps = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);

/** STRATA_TENANT_LAKES: `acme=s3://acme-lake/prod,…` — tenants whose lake is a root of their own. */
export function parseTenantLakes(text: string | undefined, sharedRoot?: string): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (const pair of pairs(text)) {
    const [tenant = '', root = '', ...extra] = pair.split('=').map((s) => s.trim());
    if (!TENANT_RE.test(tenant) || !root || extra.length)
      throw new Error(`STRATA_TENANT_LAKES: "${pair}" should be TENANT=s3://BUCKET/PREFIX or TENANT=file:///FOLDER`);
    try {
      out[tenant] = normaliseLocation(root).replace(/\/+$/, '');
    } catch (e) {
      throw new Error(`STRATA_TENANT_LAKES: ${(e as Error).message}`);
    }
  }
  const roots = Object.entries(out);
  const shared =
    sharedRoot && /^(s3|file):\/\/|^\//.test(sharedRoot)
      ? normaliseLocation(sharedRoot).replace(/\/+$/, '')
      : undefined;
  for (const [i, [t, r]] of roots.entries()) {
    if (shared && overlaps(r, shared))
      throw new Error(
        `STRATA_TENANT_LAKES: ${t}'s lake ${r} overlaps the shared lake ${shared}: give it a root outside it`,
      );
    for (const [t2, r2] of roots.slice(i + 1))
      if (overlaps(r, r2))
        throw new Error(`STRATA_TENANT_LAKES: the lakes of ${t} and ${t2} overlap: give each its own root`);
  }
  return out;
}

/**
 * The `PREFIX<NAME>=value` entries of a process environment that belong to tenants (a connection,
 * a notification channel): each with the tenants that may use it (`PREFIX<NAME>_TENANTS`,
 * comma-separated; default the bootstrap tenant). Keys ending in one of `skip` are an entry's
 * own settings, not entries.
 */
export function tenantScopedEnv(
  env: NodeJS.ProcessEnv,
  prefix: string,
  skip: string[] = [],
): { key: string; name: string; value: string; tenants: string[] }[] {
  const owner = env.STRATA_BOOTSTRAP_TENANT || 'default';
  const out: { key: string; name: string; value: string; tenants: string[] }[] = [];
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith(prefix) || !value || ['_TENANTS', ...skip].some((s) => key.endsWith(s))) continue;
    const listed = env[`${key}_TENANTS`];
    const tenants = listed
      ? listed
          .split(',')
          .map((t) => t.trim())
          .filter(Boolean)
      : [owner];
    for (const t of tenants)
      if (!TENANT_RE.test(t))
        throw new Error(`${key}_TENANTS: "${t}" is not a tenant name (lower-case letters, digits and "-")`);
    out.push({ key, name: key.slice(prefix.length).toLowerCase(), value, tenants });
  }
  return out;
}
