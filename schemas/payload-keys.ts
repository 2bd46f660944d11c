/**
 * STRATA_PAYLOAD_KEYS: the AES-256 keys that encrypt workflow payloads, per tenant.
 *
 *   STRATA_PAYLOAD_KEYS=acme:k2=<base64 of 32 bytes>,acme:k1=<…>,_platform:p1=<…>
 *
 * For each tenant the first key listed encrypts; every listed key decrypts (so a key is
 * rotated by listing a new one first and keeping the old one while histories use it).
 * `_platform` is required: it encrypts payloads that belong to no tenant, and tenants
 * without keys of their own get keys derived from it. Messages name entries by
 * `tenant:id` and position, never by their key material.
 */
import { TENANT_PATTERN } from './workflow-ids.js';

export const PLATFORM_TENANT = '_platform';
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

export interface PayloadKey {
  id: string;
  key: Uint8Array;
}
/** Tenant → its keys, the encrypting one first. */
export type PayloadKeys = Record<string, PayloadKey[]>;

export function parsePayloadKeys(v: string | undefined): PayloadKeys | undefined {
  if (v === undefined || v.trim() === '') return undefined;
  const fail = (m: string): never => {
    throw new Error(
      `STRATA_PAYLOAD_KEYS: ${m}; write TENANT:KEY_ID=BASE64_KEY entries separated by commas, e.g. acme:k2=…,acme:k1=…,_platform:p1=… (a key is 32 random bytes in base64: openssl rand -base64 32)`,
    );
  };
  const out: PayloadKeys = {};
  v.split(',').forEach((raw, i) => {
    const entry = raw.trim();
    const eq = entry.indexOf('=');
    const colon = entry.indexOf(':');
    if (eq < 0 || colon < 0 || colon > eq) fail(`entry ${i + 1} is not TENANT:KEY_ID=BASE64_KEY`);
    const tenant = entry.slice(0, colon);
    const id = entry.slice(colon + 1, eq);
    const b64 = entry.slice(eq + 1).trim();
    const name = `entry ${i + 1} (${tenant}:${id})`;
    if (tenant !== PLATFORM_TENANT && !TENANT_PATTERN.test(tenant))
      fail(`${name}: the tenant must be lower-case letters, digits and "-", or ${PLATFORM_TENANT}`);
    if (!KEY_ID.test(id)) fail(`${name}: the key id must be 1-32 letters, digits, "_" or "-"`);
    const key = decodeBase64(b64);
    if (!key) fail(`${name}: the key is not base64`);
    if (key!.length !== 32) fail(`${name}: the key must be 32 bytes (AES-256), it is ${key!.length}`);
    if (out[tenant]?.some((k) => k.id === id))
      fail(`${name}: ${tenant}:${id} is listed twice; give each key its own id`);
    (out[tenant] ??= []).push({ id, key: key! });
  });
  if (!out[PLATFORM_TENANT])
    fail(
      `no ${PLATFORM_TENANT} key: add ${PLATFORM_TENANT}:<id>=<key> (it encrypts payloads of no tenant, and tenants without keys of their own get keys derived from it)`,
    );
  return out;
}

function decodeBase64(s: string): Uint8Array | undefined {
  const std = s.replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(std) || std.replace(/=+$/, '').length % 4 === 1) return undefined;
  try {
    return Uint8Array.from(atob(std.padEnd(Math.ceil(std.length / 4) * 4, '=')), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}
