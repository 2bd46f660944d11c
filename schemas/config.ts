import { z } from 'zod';
import { parseTenantTiers } from './external.js';
import { parseAirbyteWorkspaces } from './ingestion.js';
import { parseTierLists } from './spark-policy.js';
import { parseTenantLakes, parseTenantLocations } from './tenant.js';
import { parsePayloadKeys } from './payload-keys.js';

/** An optional variable whose value one parser checks (its error, without the variable's name, is the message). */
function parsedBy(name: string, parse: (v: string | undefined) => unknown) {
  return z
    .string()
    .optional()
    .superRefine((v, ctx) => {
      try {
        parse(v);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(`${name}: `, '') });
      }
    });
}

/** The process configuration: one schema over the environment. */
export const ConfigSchema = z.object({
  TEMPORAL_ADDRESS: z
    .string()
    .regex(/^[^:\s]+:\d+$/, 'write host:port, e.g. 127.0.0.1:7233')
    .default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_UI_URL: z.url('write the Web UI base URL, e.g. http://127.0.0.1:8233').default('http://127.0.0.1:8233'),
  /** The API's address as people reach it: links to run pages in notifications. */
  STRATA_PUBLIC_URL: z.url('write the API base URL people open, e.g. https://strata.example.com').optional(),
  STRATA_TASK_QUEUE: z.string().min(1).default('strata'),
  STRATA_DATA_DIR: z.string().min(1).default('.strata'),
  STRATA_LAKE_ROOT: z.string().min(1).optional(),
  STRATA_TENANT: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,62}$/, 'lower-case letters, digits and "-"')
    .default('default'),
  STRATA_HEARTBEAT_TIMEOUT_MS: z.coerce.number().int().positive().optional(),
  /** Postgres metastore; without it the local stack uses embedded PGlite under the data dir. */
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'write a postgres:// URL')
    .optional(),
  /** An admin key accepted without being in the metastore (to create the first keys). */
  STRATA_BOOTSTRAP_ADMIN_KEY: z.string().min(16, 'use at least 16 characters').optional(),
  STRATA_BOOTSTRAP_TENANT: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,62}$/, 'lower-case letters, digits and "-"')
    .default('default'),
  STRATA_API_HOST: z.string().default('127.0.0.1'),
  STRATA_API_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** The worker's /health and /ready for Kubernetes probes (on every interface); unset: none. */
  STRATA_WORKER_HEALTH_PORT: z.coerce.number().int().min(1, 'write a port from 1 to 65535').max(65535).optional(),
  /** Tier per tenant (`acme=team,big=enterprise`); caps clusters and job sizes. Others are on `free`. */
  STRATA_TENANT_TIERS: parsedBy('STRATA_TENANT_TIERS', parseTenantTiers),
  /** The Spark image jobs and Spark Connect clusters run by default (every tier may use it). */
  STRATA_SPARK_IMAGE: z.string().min(1).optional(),
  /** Images each tier may use besides the default (`team=registry/spark:3.5*|…`; "*" ends a prefix). */
  STRATA_SPARK_IMAGES: parsedBy('STRATA_SPARK_IMAGES', (v) => parseTierLists('STRATA_SPARK_IMAGES', v)),
  /** The Airbyte workspace of each tenant (`acme=<workspace uuid>,globex=<uuid>`) for /api/v1/ingestion. */
  STRATA_AIRBYTE_WORKSPACES: parsedBy('STRATA_AIRBYTE_WORKSPACES', parseAirbyteWorkspaces),
  /** Unlocks the protected exactly-once ledgers on tenant databases (strata ledger-setup); worker only. */
  STRATA_LEDGER_KEY: z.string().min(32, 'use a random secret of at least 32 characters').optional(),
  /** Per-task limits of tenant SQL on DuckDB (worker): memory, threads, temp spill. */
  STRATA_SQL_MEMORY_LIMIT: z
    .string()
    .regex(/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i, 'write a size like 1GB or 512MiB')
    .optional(),
  STRATA_SQL_THREADS: z.coerce.number().int().min(1).max(256).optional(),
  /** `0`: a fresh DuckDB instance per plain SQL task instead of one shared, locked instance per tenant (worker). */
  STRATA_SQL_SHARED_INSTANCE: z.enum(['0', '1'], 'write 0 or 1').optional(),
  STRATA_SQL_TEMP_LIMIT: z
    .string()
    .regex(/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i, 'write a size like 4GB')
    .optional(),
  /** Iceberg catalog credential vending per warehouse (`*=sts,legacy=none`): `sts` (AssumeRole, a policy scoped to the table) or `none`. */
  STRATA_ICEBERG_VENDING: parsedBy('STRATA_ICEBERG_VENDING', parseIcebergVending),
  /** The Iceberg REST catalog's URI as external jobs reach it (worker; default `{STRATA_PUBLIC_URL}/iceberg`). */
  STRATA_ICEBERG_URI: z.url('write the catalog URI jobs reach, e.g. https://strata.example.com/iceberg').optional(),
  /** Tenants whose lake is a root of its own (`acme=s3://acme-lake/prod`); others live under `{lake}/{tenant}/`. */
  STRATA_TENANT_LAKES: parsedBy('STRATA_TENANT_LAKES', (v) => parseTenantLakes(v)),
  /** Locations outside the lake a tenant's tasks may read and write (`acme=s3://partner/acme/|file:///srv/acme/`). */
  STRATA_TENANT_LOCATIONS: parsedBy('STRATA_TENANT_LOCATIONS', parseTenantLocations),
  /** Payload encryption keys per tenant (`acme:k2=<base64>,acme:k1=…,_platform:p1=…`); see schemas/payload-keys.ts. */
  STRATA_PAYLOAD_KEYS: parsedBy('STRATA_PAYLOAD_KEYS', parsePayloadKeys),
  /** A bearer token for /metrics; without it /metrics serves only metrics that name no tenant or pipeline. */
  STRATA_METRICS_TOKEN: z.string().min(16, 'use at least 16 characters').optional(),
  /** `1`: runs started here run noop and fail tasks as local activities (API, CLI, schedules). */
  STRATA_LOCAL_SHORT_TASKS: z.enum(['0', '1'], 'write 0 or 1').optional(),
  /** How often the orphan sweeper runs (worker; a Temporal Schedule), or `off`. */
  STRATA_SWEEP_INTERVAL: z
    .string()
    .regex(/^(off|\d+(\.\d+)?(ms|s|m|h|d))$/, 'write a duration like "10m" or "1h", or "off"')
    .default('10m'),
  /** How often every table's maintenance runs (worker; the strata-table-maintenance Schedule), or `off`. */
  STRATA_MAINTENANCE_INTERVAL: z
    .string()
    .regex(/^(off|\d+(\.\d+)?(ms|s|m|h|d))$/, 'write a duration like "1h" or "6h", or "off"')
    .default('1h'),
  /** The youngest an unreferenced file may be and still be removed as an orphan, whatever a table's policy says (worker). */
  STRATA_MAINTENANCE_MIN_ORPHAN_AGE: z
    .string()
    .regex(/^\d+(\.\d+)?(ms|s|m|h|d)$/, 'write a duration like "1h" or "30m"')
    .default('1h'),
});
export type Config = z.infer<typeof ConfigSchema> & { lakeRoot: string };

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const r = ConfigSchema.safeParse(env);
  if (!r.success) {
    const secret = (k: string) => /KEY|URL|PASSWORD|SECRET|TOKEN/.test(k);
    const lines = r.error.issues.map((i) => {
      const k = String(i.path[0]);
      return `  ${k}: ${i.message}${secret(k) ? '' : ` (got ${JSON.stringify(env[k])})`}`;
    });
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  return { ...r.data, lakeRoot: r.data.STRATA_LAKE_ROOT ?? `${r.data.STRATA_DATA_DIR}/lake` };
}

/** `*=sts,legacy=none` (or just `sts`): how each warehouse's loads get storage credentials. Default none. */
export function parseIcebergVending(v: string | undefined): Record<string, 'sts' | 'none'> {
  const out = Object.create(null) as Record<string, 'sts' | 'none'>;
  for (const part of (v ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const [k, m] = part.includes('=') ? part.split('=', 2).map((x) => x.trim()) : ['*', part];
    if (m !== 'sts' && m !== 'none')
      throw new Error(`STRATA_ICEBERG_VENDING: "${part}": write tenant=sts or tenant=none (or * for every warehouse)`);
    out[k] = m;
  }
  return out;
}
