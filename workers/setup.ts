/**
 * `npm run setup`: builds the external binaries Strata runs locally (the Temporal CLI,
 * MinIO — the S3-compatible server the tests use —, mailpit (the SMTP server of the e-mail
 * notification tests) and the Kubernetes test cluster: kube-apiserver, kube-controller-manager,
 * kine and kwok) into the cache outside the checkout. `npm start` and `npm test` do this on
 * their own when needed; this just does it up front, with progress.
 */
import { findOrBuildMailpit } from './mailpit.js';
import { findOrBuildKubeBinaries } from './kube-tools.js';
import { findOrBuildMinio } from './minio.js';
import { findOrBuildTemporalCli } from './temporal-cli.js';

const temporal = await findOrBuildTemporalCli((m) => console.log(m));
console.log(`Temporal CLI: ${temporal}`);
const minio = await findOrBuildMinio((m) => console.log(m));
console.log(`MinIO: ${minio}`);
const mailpit = await findOrBuildMailpit((m) => console.log(m));
console.log(`mailpit: ${mailpit}`);
const kube = await findOrBuildKubeBinaries((m) => console.log(m));
console.log(`Kubernetes test cluster: ${Object.values(kube).join(', ')}`);
