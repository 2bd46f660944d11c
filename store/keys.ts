/** API keys: the secret is shown once at creation; only its SHA-256 is stored. */
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from './db.js';
import { ensureTenant } from './pipelines.js';
import type { RunCredential } from './iceberg-audit.js';

export type Role = 'admin' | 'operator' | 'viewer';
export interface Principal {
  tenant: string;
  role: Role;
  keyId: string;
  /** The bootstrap key may manage keys of every tenant. */
  superuser?: boolean;
  /** A run's catalog credential (write-audit-publish): it reaches only the Iceberg catalog. */
  run?: RunCredential;
}

export const hashKey = (secret: string) => createHash('sha256').update(secret).digest('hex');

export async function createKey(
  db: Db,
  tenant: string,
  role: Role,
  name?: string,
): Promise<{ id: string; secret: string }> {
  const id = `key_${randomBytes(6).toString('hex')}`;
  const secret = `strata_${randomBytes(24).toString('base64url')}`;
  await ensureTenant(db, tenant);
  await db.query('INSERT INTO api_keys (id, tenant, role, key_hash, name) VALUES ($1, $2, $3, $4, $5)', [
    id,
    tenant,
    role,
    hashKey(secret),
    name ?? null,
  ]);
  return { id, secret };
}

export async function findKey(db: Db, secret: string): Promise<Principal | undefined> {
  const r = (
    await db.query<{ id: string; tenant: string; role: Role }>(
      'SELECT id, tenant, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL',
      [hashKey(secret)],
    )
  ).rows[0];
  return r && { tenant: r.tenant, role: r.role, keyId: r.id };
}

/**
 * findKey with a short-lived cache, so a busy API does not ask the metastore on every
 * request. A revoked key stops working within `ttlMs` (and at once in this process).
 */
export function cachedKeyLookup(db: Db, ttlMs = 5000) {
  const cache = new Map<string, { p: Principal | undefined; until: number }>();
  const lookup = async (secret: string) => {
    const h = hashKey(secret);
    const hit = cache.get(h);
    if (hit && hit.until > Date.now()) return hit.p;
    const p = await findKey(db, secret);
    if (cache.size > 10_000) cache.clear();
    cache.set(h, { p, until: Date.now() + ttlMs });
    return p;
  };
  lookup.forget = (keyId: string) => {
    for (const [h, v] of cache) if (v.p?.keyId === keyId) cache.delete(h);
  };
  return lookup;
}

export async function listKeys(db: Db, tenant: string) {
  return (
    await db.query<{ id: string; role: Role; name: string | null; created_at: Date; revoked_at: Date | null }>(
      'SELECT id, role, name, created_at, revoked_at FROM api_keys WHERE tenant = $1 ORDER BY created_at',
      [tenant],
    )
  ).rows;
}

export async function revokeKey(db: Db, tenant: string, id: string): Promise<boolean> {
  return (
    (
      await db.query('UPDATE api_keys SET revoked_at = now() WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL', [
        tenant,
        id,
      ])
    ).rowCount > 0
  );
}
