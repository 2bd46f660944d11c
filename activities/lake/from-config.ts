/**
 * The lake a process uses, from its configuration: the root (STRATA_LAKE_ROOT: a folder,
 * file://… or s3://bucket/prefix; default {STRATA_DATA_DIR}/lake), S3 settings
 * (STRATA_S3_ENDPOINT, STRATA_S3_ACCESS_KEY_ID, STRATA_S3_SECRET_ACCESS_KEY,
 * STRATA_S3_REGION) and the catalog in the metastore (DATABASE_URL, else embedded PGlite
 * under {STRATA_DATA_DIR}/metastore — one process at a time: with PGlite, run the CLI's
 * `datasets` commands while the stack is stopped, or use Postgres).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { LakeDeps } from './engine.js';
import { openLake } from './open.js';
import { s3ConfigFromEnv, type S3Config } from '../s3/client.js';
import type { Config } from '../../schemas/config.js';
import { parseTenantLakes, parseTenantLocations } from '../../schemas/tenant.js';
import { openDb, type Db } from '../../store/db.js';

export interface ProcessLake {
  lake: LakeDeps;
  s3?: S3Config;
  /** The folder for plain (non-dataset) duckdb outputs. */
  localRoot: string;
  db: Db;
  close(): Promise<void>;
}

export async function lakeFromConfig(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<ProcessLake> {
  const dataDir = path.resolve(config.STRATA_DATA_DIR);
  const isUri = /^[a-z][a-z0-9+.-]*:\/\//i.test(config.lakeRoot);
  const localRoot = isUri
    ? config.lakeRoot.startsWith('file://')
      ? new URL(config.lakeRoot).pathname
      : path.join(dataDir, 'lake')
    : path.resolve(config.lakeRoot);
  if (!env.DATABASE_URL) await mkdir(dataDir, { recursive: true });
  const db = await openDb({
    url: env.DATABASE_URL,
    dataDir: env.DATABASE_URL ? undefined : path.join(dataDir, 'metastore'),
  });
  const s3 = s3ConfigFromEnv(env);
  const root = isUri ? config.lakeRoot : localRoot;
  const lake = await openLake({
    root,
    db,
    s3,
    cacheDir: path.join(dataDir, 'cache'),
    tenantLakes: parseTenantLakes(config.STRATA_TENANT_LAKES, root),
    tenantLocations: parseTenantLocations(config.STRATA_TENANT_LOCATIONS),
  });
  return { lake, s3, localRoot, db, close: () => db.close() };
}
