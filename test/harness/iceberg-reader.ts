/**
 * The independent Iceberg client of the tests: test/iceberg-reader (apache/iceberg-go),
 * built once per machine into the tool cache like MinIO, then run as a process.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findOrBuildGoProgram } from '../../workers/go-tool.js';
import type { TestStack } from './temporal.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'iceberg-reader');

export function icebergReader(): Promise<string> {
  return findOrBuildGoProgram({
    name: 'strata-iceberg-reader',
    label: 'the iceberg-go test reader',
    dir: DIR,
    buildTime: '5–20 minutes on 2 cores the first time',
  });
}

/** Runs the reader; resolves with stdout and stderr, rejects with both when it fails. */
export async function runIcebergReader(
  args: string[],
  env: Record<string, string>,
): Promise<{ stdout: string; stderr: string }> {
  const exe = await icebergReader();
  return new Promise((resolve, reject) => {
    const p = spawn(exe, args, { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0
        ? resolve({ stdout, stderr })
        : reject(new Error(`iceberg-reader ${args[0]} exited ${code}: ${stderr}`)),
    );
  });
}

/**
 * Runs the reader against a test stack's REST catalog at `uri` (its warehouse is the stack's
 * tenant), authenticated with `key`, with the harness's S3 credentials for a store without
 * credential vending.
 */
export function readStackIceberg(stack: TestStack, uri: string, key: string, args: string[]) {
  const s3 = stack.s3!;
  return runIcebergReader([...args, '-uri', uri, '-warehouse', stack.tenant], {
    STRATA_KEY: key,
    S3_ACCESS_KEY_ID: s3.accessKeyId!,
    S3_SECRET_ACCESS_KEY: s3.secretAccessKey!,
    S3_REGION: s3.region,
  });
}

/** The reader's rows (one JSON object a line). */
export const jsonLines = (s: string) =>
  s
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
