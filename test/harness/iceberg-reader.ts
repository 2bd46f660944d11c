/**
 * The independent Iceberg client of the tests: test/iceberg-reader (apache/iceberg-go),
 * built once per machine into the tool cache like MinIO, then run as a process.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findOrBuildGoProgram } from '../../workers/go-tool.js';

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
