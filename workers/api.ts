/** `npm run api`: the HTTP API alone, against Temporal and the metastore from the environment. */
import { Client, Connection } from '@temporalio/client';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { airbyteClientFromEnv } from '../activities/airbyte/client.js';
import { loadConfig, type Config } from '../schemas/config.js';
import { openDb, type Db } from '../store/db.js';
import { migrate } from '../store/migrate.js';
import { buildApi } from '../api/app.js';
import { dataConverterFrom, UNENCRYPTED_WARNING } from '../client/data-converter.js';

/** The metastore named by DATABASE_URL, else PGlite under the data folder; migrated. */
export async function openMetastore(config: Config): Promise<Db> {
  const db = await openDb({
    url: config.DATABASE_URL,
    dataDir: config.DATABASE_URL ? undefined : path.resolve(config.STRATA_DATA_DIR, 'metastore'),
  });
  await migrate(db);
  return db;
}

async function main() {
  const config = loadConfig();
  // Airbyte for /api/v1/ingestion, when AIRBYTE_URL is set (the same variables as the worker's).
  const airbyte = airbyteClientFromEnv(process.env);
  // The metastore and the lake catalog over it (DATABASE_URL, else embedded PGlite).
  const { lakeFromConfig } = await import('../activities/lake/from-config.js');
  const lake = await lakeFromConfig(config);
  const db = lake.db;
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const dataConverter = dataConverterFrom(config);
  if (!dataConverter.payloadCodecs?.length) console.error(`strata api: ${UNENCRYPTED_WARNING}`);
  const { sparkClientFromEnv } = await import('../activities/spark-k8s/client.js');
  // The query API runs statements here: the same named connections as the worker's (STRATA_CONN_*).
  const { connectionsFromEnv } = await import('../activities/sql/connections.js');
  const { app } = await buildApi({
    db,
    lake: lake.lake,
    s3: lake.s3,
    connections: connectionsFromEnv(),
    spark: sparkClientFromEnv(),
    client: new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter }),
    config,
    airbyte,
  });
  const url = await app.listen({ host: config.STRATA_API_HOST, port: config.STRATA_API_PORT });
  console.log(`strata api on ${url} (docs at ${url}/docs)`);
  const stop = async () => {
    await app.close();
    await connection.close();
    await db.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
