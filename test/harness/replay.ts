/** Replaying recorded workflow histories against the current workflow code (the determinism guard). */
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { Worker } from '@temporalio/worker';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { inject } from 'vitest';

/**
 * Replays each history file of `dir` (under the workflow id `workflowIdOf` gives it, from
 * which its code derives child ids) against the run's workflow bundle; one result a file,
 * with the replay error when it failed.
 */
export async function replayHistories(
  dir: string,
  files: string[],
  workflowIdOf: (file: string) => string,
): Promise<{ id: string; error?: unknown }[]> {
  const histories = await Promise.all(
    files.map(async (f) => ({
      workflowId: workflowIdOf(f),
      history: historyFromJSON(JSON.parse(await readFile(path.join(dir, f), 'utf8'))),
    })),
  );
  const results: { id: string; error?: unknown }[] = [];
  for await (const r of Worker.runReplayHistories(
    { workflowBundle: { codePath: inject('workflowBundlePath') } },
    histories,
  ))
    results.push({ id: r.workflowId, error: r.error });
  return results;
}
