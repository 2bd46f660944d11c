/**
 * The payload codec: AES-256-GCM with one key ring per tenant (schemas/payload-keys.ts).
 *
 * Which tenant a payload belongs to comes from the serialization context the SDK hands
 * every codec call (the workflow id of the workflow or activity the payload belongs to;
 * see the SDK's workflow-codec-runner, activity and client code), read by
 * `tenantOfWorkflowId`; else from the caller's `withTenant` scope; else the payload is
 * the platform's. An encrypted payload carries, in clear, its tenant and key id (so keys
 * rotate while old histories still decode, and the API's codec endpoint can decide whom
 * to decode it for); both are bound into the cipher as additional data, so a payload
 * relabelled to another tenant or key does not decrypt. Payloads without encryption
 * metadata (histories recorded before encryption) decode as they are.
 */
import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';
import proto from '@temporalio/proto';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { PLATFORM_TENANT, type PayloadKey, type PayloadKeys } from '../schemas/payload-keys.js';
import { tenantOfWorkflowId } from '../schemas/workflow-ids.js';
import { currentTenant } from './tenant-scope.js';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const META_TENANT = 'strata-tenant';
export const META_KEY_ID = 'encryption-key-id';
export const META_CIPHER = 'encryption-cipher';
const CIPHER = 'AES-256-GCM';
/** Key ids of keys derived from a platform key (for tenants without keys of their own) start with this. */
const DERIVED = '~';
const NONCE = 12;
const TAG = 16;

const PayloadProto = proto.temporal.api.common.v1.Payload;
const enc = new TextEncoder();
const dec = new TextDecoder();

export class PayloadDecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadDecryptError';
  }
}

export class TenantPayloadCodec implements PayloadCodec {
  private readonly derived = new Map<string, Uint8Array>();

  constructor(private readonly keys: PayloadKeys) {}

  /** The tenant whose key encrypts payloads in this context. */
  tenantFor(context?: SerializationContext): string {
    return tenantOfWorkflowId(context?.workflowId) ?? currentTenant() ?? PLATFORM_TENANT;
  }

  async encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    const tenant = this.tenantFor(context);
    return payloads.map((p) => this.encrypt(p, tenant));
  }

  /**
   * Decrypts what is encrypted. Within a workflow of tenant T (the context says which),
   * a payload encrypted for another tenant is refused: it was copied in from elsewhere.
   */
  async decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    const expected = tenantOfWorkflowId(context?.workflowId);
    return payloads.map((p) => {
      const t = payloadTenant(p);
      if (t === undefined) return p;
      if (expected && t !== expected && t !== PLATFORM_TENANT)
        throw new PayloadDecryptError(
          `a payload encrypted for tenant ${t} appeared in ${context!.workflowId} (tenant ${expected}); refusing to decrypt it`,
        );
      return this.decrypt(p);
    });
  }

  encrypt(p: Payload, tenant: string): Payload {
    const { id, key } = this.encryptingKey(tenant);
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(aad(tenant, id));
    const body = Buffer.concat([cipher.update(PayloadProto.encode(p).finish()), cipher.final()]);
    return {
      metadata: {
        encoding: enc.encode(ENCRYPTED_ENCODING),
        [META_CIPHER]: enc.encode(CIPHER),
        [META_TENANT]: enc.encode(tenant),
        [META_KEY_ID]: enc.encode(id),
      },
      data: Buffer.concat([nonce, body, cipher.getAuthTag()]),
    };
  }

  /** The plain payload; throws PayloadDecryptError (naming tenant and key id, never key material) when it cannot. */
  decrypt(p: Payload): Payload {
    const tenant = payloadTenant(p);
    if (tenant === undefined) return p;
    const id = p.metadata?.[META_KEY_ID] ? dec.decode(p.metadata[META_KEY_ID]) : '';
    const key = this.decryptingKey(tenant, id);
    if (!key)
      throw new PayloadDecryptError(
        `a payload of tenant ${tenant} is encrypted with key "${id}", which STRATA_PAYLOAD_KEYS does not list: keep old keys listed while histories use them`,
      );
    const data = p.data ?? new Uint8Array();
    if (data.length < NONCE + TAG)
      throw new PayloadDecryptError(`a payload of tenant ${tenant} (key ${id}) is too short to be ciphertext`);
    try {
      const d = createDecipheriv('aes-256-gcm', key, data.subarray(0, NONCE));
      d.setAAD(aad(tenant, id));
      d.setAuthTag(data.subarray(data.length - TAG));
      const plain = Buffer.concat([d.update(data.subarray(NONCE, data.length - TAG)), d.final()]);
      const inner = PayloadProto.decode(plain);
      // protobufjs leaves an absent bytes field as its prototype default, not always a Uint8Array.
      const bytes = (b: unknown) => (b instanceof Uint8Array ? b : new Uint8Array((b as number[] | null) ?? []));
      return {
        metadata: Object.fromEntries(Object.entries(inner.metadata ?? {}).map(([k, v]) => [k, bytes(v)])),
        data: bytes(inner.data),
      };
    } catch {
      throw new PayloadDecryptError(
        `a payload labelled tenant ${tenant}, key ${id} does not decrypt: its data or labels were changed, or the key is not the one that encrypted it`,
      );
    }
  }

  private encryptingKey(tenant: string): PayloadKey {
    const own = this.keys[tenant]?.[0];
    if (own) return own;
    const platform = this.keys[PLATFORM_TENANT][0];
    return { id: DERIVED + platform.id, key: this.derive(tenant, platform) };
  }

  private decryptingKey(tenant: string, id: string): Uint8Array | undefined {
    if (tenant !== PLATFORM_TENANT && id.startsWith(DERIVED)) {
      const platform = this.keys[PLATFORM_TENANT].find((k) => k.id === id.slice(DERIVED.length));
      return platform && this.derive(tenant, platform);
    }
    return this.keys[tenant]?.find((k) => k.id === id)?.key;
  }

  /** A tenant's key derived from a platform key (HKDF-SHA256), so every tenant has a distinct key without configuring one. */
  private derive(tenant: string, platform: PayloadKey): Uint8Array {
    const k = `${tenant}\n${platform.id}`;
    let key = this.derived.get(k);
    if (!key) {
      key = new Uint8Array(hkdfSync('sha256', platform.key, 'strata-payload-keys/v1', `tenant:${tenant}`, 32));
      this.derived.set(k, key);
    }
    return key;
  }
}

/** The tenant an encrypted payload is labelled with; undefined for a payload this codec did not encrypt. */
export function payloadTenant(p: Payload): string | undefined {
  const m = p.metadata;
  if (!m?.encoding || dec.decode(m.encoding) !== ENCRYPTED_ENCODING || !m[META_TENANT]) return undefined;
  return dec.decode(m[META_TENANT]);
}

function aad(tenant: string, keyId: string): Uint8Array {
  return enc.encode(`strata-payload/v1\n${tenant}\n${keyId}`);
}
