/**
 * The benchmark's workflows: Strata's pipelineRun and the hand-written minimal
 * workflows it is compared with, calling the same no-op activity.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { TaskActivityInput } from '../schemas/run.js';
export { pipelineRun } from '../workflows/pipeline.js';

const { noopTask } = proxyActivities<{ noopTask(i: TaskActivityInput): Promise<unknown> }>({
  startToCloseTimeout: '1m',
});
const input = (id: string): TaskActivityInput => ({
  task: { id, kind: 'noop' },
  run: {
    runId: 'bare',
    workflowId: 'bare',
    pipelineId: 'bare',
    tenant: 'bench',
    trigger: 'bench',
    logicalDate: '2026-01-01T00:00:00Z',
  },
});

export async function bareChain(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await noopTask(input(`t${i}`));
}

export async function bareFan(n: number): Promise<void> {
  await noopTask(input('start'));
  await Promise.all(Array.from({ length: n }, (_, i) => noopTask(input(`f${i}`))));
  await noopTask(input('end'));
}
