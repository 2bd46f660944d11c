/**
 * Determinism guard for the external-job and cluster workflows: recorded histories in
 * test/histories/external/ (with their real workflow ids, from which child ids derive)
 * must replay against the current code. Re-record: npx tsx test/histories/record-external.ts
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { replayHistories } from '../harness/replay.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'histories', 'external');

it('replays recorded pipeline, externalJob, clusterLifecycle and clusterQuota histories without nondeterminism', async () => {
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as Record<string, string>;
  const files = Object.keys(index).sort();
  expect(files).toEqual(
    expect.arrayContaining([
      'external-jobs.json',
      'external-jobs-bronze.json',
      'external-jobs-cancelled-forever.json',
      'cluster-idle.json',
      'cluster-idle-1.json',
      'cluster-quota.json',
    ]),
  );
  const results = await replayHistories(dir, files, (f) => index[f]);
  expect(results.filter((r) => r.error).map((r) => `${r.id}: ${String(r.error)}`)).toEqual([]);
  expect(results).toHaveLength(files.length);
});
