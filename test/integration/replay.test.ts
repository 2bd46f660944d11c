/**
 * Determinism guard: every recorded history in test/histories/ must replay against the
 * current workflow code. A failure here means a workflow change needs patched().
 */
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { Worker } from '@temporalio/worker';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { replayHistories } from '../harness/replay.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'histories');

it('replays every recorded history without nondeterminism', async () => {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json') && f !== 'index.json').sort();
  expect(files.length).toBeGreaterThanOrEqual(5);
  // The workflow id each history ran under, where its code derives ids from it (children); else the file name.
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as Record<string, string>;
  expect(files).toEqual(
    expect.arrayContaining([
      'notify-v4.json',
      'notify-v4-inline.json',
      // notify-cancelled-v1 (the run) and notify-reconcile-v1 (its end notifier).
      'notify-cancelled.json',
      'notify-cancelled-inline.json',
      'notify-cancelled-notifier.json',
      'notify-cancelled-inline-notifier.json',
    ]),
  );
  const results = await replayHistories(dir, files, (f) => index[f] ?? f);
  expect(results.filter((r) => r.error).map((r) => `${r.id}: ${String(r.error)}`)).toEqual([]);
  expect(results).toHaveLength(files.length);
});

it('detects a workflow that no longer matches its history', async () => {
  // The same histories against a different workflow body must fail: the guard can fail.
  const f = (await readdir(dir)).find((x) => x.startsWith('success-parallel'))!;
  const history = historyFromJSON(JSON.parse(await readFile(path.join(dir, f), 'utf8')));
  const { bundleWorkflowCode } = await import('@temporalio/worker');
  const src = path.resolve(dir, '..', 'fakes', 'divergent-workflow.ts');
  const bundle = await bundleWorkflowCode({
    workflowsPath: src,
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
  });
  await expect(Worker.runReplayHistory({ workflowBundle: bundle }, history)).rejects.toThrow();
});
