/**
 * `npm run setup`: builds the external binaries Strata runs locally (the Temporal CLI,
 * and MinIO — the S3-compatible server the tests use) into the cache outside the
 * checkout. `npm start` and `npm test` do this on their own when needed; this just does
 * it up front, with progress.
 */
import { findOrBuildMinio } from './minio.js';
import { findOrBuildTemporalCli } from './temporal-cli.js';

const temporal = await findOrBuildTemporalCli((m) => console.log(m));
console.log(`Temporal CLI: ${temporal}`);
const minio = await findOrBuildMinio((m) => console.log(m));
console.log(`MinIO: ${minio}`);
