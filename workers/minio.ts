/**
 * The S3-compatible server for local stacks and tests: MinIO, built from its Go module
 * into the same cache as the Temporal CLI (no binary can be downloaded here). Order:
 * $STRATA_MINIO, `minio` on PATH, the cache, then `go install`. MinIO publishes no semver
 * tags, so the module is pinned by its pseudo-version (master of 2026-02-12).
 */
import { freePort } from './dev-server.js';
import { findOrBuildGoTool } from './go-tool.js';
import { startLocalServer } from './local-server.js';

export const MINIO_MODULE = 'github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c';

export function findOrBuildMinio(log?: (msg: string) => void): Promise<string> {
  return findOrBuildGoTool(
    {
      name: 'minio',
      label: 'MinIO (the S3-compatible server for tests)',
      module: MINIO_MODULE,
      envVar: 'STRATA_MINIO',
      buildTime: '3–10 minutes on 2 cores',
    },
    log,
  );
}

export interface S3Server {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  stop(): Promise<void>;
}

/** Starts MinIO on a free loopback port over dataDir, with generated credentials. */
export async function startMinio(opts: {
  dataDir: string;
  accessKeyId: string;
  secretAccessKey: string;
  log?: (m: string) => void;
}): Promise<S3Server> {
  const exe = await findOrBuildMinio(opts.log);
  const [port, consolePort] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${port}`;
  const server = await startLocalServer({
    name: 'minio',
    exe,
    args: [
      'server',
      '--quiet',
      '--address',
      `127.0.0.1:${port}`,
      '--console-address',
      `127.0.0.1:${consolePort}`,
      opts.dataDir,
    ],
    env: {
      ...process.env,
      MINIO_ROOT_USER: opts.accessKeyId,
      MINIO_ROOT_PASSWORD: opts.secretAccessKey,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
    readyUrl: `${endpoint}/minio/health/ready`,
  });
  return {
    endpoint,
    accessKeyId: opts.accessKeyId,
    secretAccessKey: opts.secretAccessKey,
    region: 'us-east-1',
    stop: () => server.stop(),
  };
}
