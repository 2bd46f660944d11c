/**
 * The data converter every Strata Temporal client and worker uses: the default payload
 * converter, then the tenant payload codec (client/codec.ts) when keys are configured.
 * Keys come from STRATA_PAYLOAD_KEYS, else from the local stack's key file
 * (`{STRATA_DATA_DIR}/payload-keys`, which `npm start` makes), else there are none and
 * payloads travel unencrypted (processes say so when they start).
 */
import type { DataConverter, LoadedDataConverter, Payload } from '@temporalio/common';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parsePayloadKeys, PLATFORM_TENANT, type PayloadKeys } from '../schemas/payload-keys.js';
import { TenantPayloadCodec } from './codec.js';

export const LOCAL_KEYS_FILE = 'payload-keys';

export interface PayloadKeySource {
  STRATA_PAYLOAD_KEYS?: string;
  STRATA_DATA_DIR?: string;
}

export function payloadKeysFrom(src: PayloadKeySource = process.env): PayloadKeys | undefined {
  if (src.STRATA_PAYLOAD_KEYS?.trim()) return parsePayloadKeys(src.STRATA_PAYLOAD_KEYS);
  const file = path.resolve(src.STRATA_DATA_DIR || '.strata', LOCAL_KEYS_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return parsePayloadKeys(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

export function strataDataConverter(keys: PayloadKeys | undefined): DataConverter {
  return keys ? { payloadCodecs: [new TenantPayloadCodec(keys)] } : {};
}

export function dataConverterFrom(src: PayloadKeySource = process.env): DataConverter {
  return strataDataConverter(payloadKeysFrom(src));
}

/** One payload read from raw history or a describe(), the way the SDK reads it: codecs (last first), then the payload converter. */
export async function decodePayload<T>(dc: LoadedDataConverter, payload: Payload): Promise<T> {
  let p = payload;
  for (const c of [...dc.payloadCodecs].reverse()) [p] = await c.decode([p]);
  return dc.payloadConverter.fromPayload<T>(p);
}

/** The tenant codec inside a data converter, if it has one. */
export function tenantCodecOf(dc: DataConverter | undefined): TenantPayloadCodec | undefined {
  return dc?.payloadCodecs?.find((c): c is TenantPayloadCodec => c instanceof TenantPayloadCodec);
}

/** One line for a process's start-up output when payloads will not be encrypted. */
export const UNENCRYPTED_WARNING =
  'payloads are NOT encrypted: set STRATA_PAYLOAD_KEYS (see the README, "Payload encryption")';

/** A fresh STRATA_PAYLOAD_KEYS value with one platform key (tenants get keys derived from it). */
export function generatePayloadKeys(id = 'local1'): string {
  return `${PLATFORM_TENANT}:${id}=${randomBytes(32).toString('base64')}`;
}

/** The local stack's key file: made once with a fresh platform key (owner-only), then reused. */
export async function ensureLocalPayloadKeys(dataDir: string): Promise<string> {
  const file = path.join(dataDir, LOCAL_KEYS_FILE);
  if (!existsSync(file)) await writeFile(file, `${generatePayloadKeys()}\n`, { mode: 0o600, flag: 'wx' });
  return file;
}
