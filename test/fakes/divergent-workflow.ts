/** A pipelineRun with a different body: replaying real histories against it must fail. */
import { sleep } from '@temporalio/workflow';

export async function pipelineRun(): Promise<null> {
  await sleep(1);
  return null;
}
