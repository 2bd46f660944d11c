/** Builds the lake dependencies a worker needs: the object store, the catalog (migrated) and the lineage sink. */
import os from 'node:os';
import path from 'node:path';
import { Catalog } from '../../store/catalog.js';
import type { Db } from '../../store/db.js';
import { migrate } from '../../store/migrate.js';
import { lineageSinkFromEnv, type LineageSink } from '../catalog/openlineage.js';
import { openStore, type S3Config } from '../s3/client.js';
import type { LakeDeps } from './engine.js';

export async function openLake(o: { root: string; db: Db; s3?: S3Config; cacheDir?: string; lineage?: LineageSink; faults?: LakeDeps['faults'] }): Promise<LakeDeps> {
  await migrate(o.db);
  return {
    store: openStore(o.root, o.s3),
    catalog: new Catalog(o.db),
    cacheDir: o.cacheDir ?? path.join(os.tmpdir(), 'strata-lake-cache'),
    lineage: o.lineage ?? lineageSinkFromEnv(),
    faults: o.faults,
  };
}
