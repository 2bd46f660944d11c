/**
 * The `strata-sweeper` Temporal Schedule: runs `orphanSweep` (workflows/sweeper.ts) every
 * interval. Every worker ensures it at start, so it exists once whatever the number of workers;
 * ensuring it again with the same settings changes nothing, with other settings updates it.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { toMs } from '../schemas/duration.js';

export const SWEEPER_SCHEDULE_ID = 'strata-sweeper';
export const DEFAULT_SWEEP_INTERVAL = '10m';

/** `off` turns the schedule off (deletes it); otherwise a duration ("10m", "1h"). */
export async function ensureSweeperSchedule(
  client: Client,
  o: { taskQueue: string; interval?: string; scheduleId?: string },
): Promise<'created' | 'updated' | 'unchanged' | 'deleted' | 'absent'> {
  const interval = o.interval ?? DEFAULT_SWEEP_INTERVAL;
  const scheduleId = o.scheduleId ?? SWEEPER_SCHEDULE_ID;
  const handle = client.schedule.getHandle(scheduleId);
  if (interval === 'off')
    return handle.delete().then(
      () => 'deleted' as const,
      () => 'absent' as const,
    );
  const every = toMs(interval);
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'orphanSweep',
    workflowId: scheduleId,
    taskQueue: o.taskQueue,
    args: [],
    staticSummary: 'Stops jobs and clusters whose owning workflow has closed',
  };
  try {
    await client.schedule.create({
      scheduleId,
      spec: { intervals: [{ every }] },
      action,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: every },
    });
    return 'created';
  } catch (e) {
    if (!(e instanceof ScheduleAlreadyRunning)) throw e;
  }
  const d = await handle.describe();
  const have = d.spec.intervals?.[0]?.every;
  const haveMs = (() => {
    try {
      return have === undefined ? undefined : toMs(have);
    } catch {
      return undefined;
    }
  })();
  const act = d.action as { taskQueue?: string; workflowType?: string };
  if (
    d.spec.intervals?.length === 1 &&
    haveMs === every &&
    act.taskQueue === o.taskQueue &&
    act.workflowType === 'orphanSweep'
  )
    return 'unchanged';
  await handle.update((prev) => ({ ...prev, spec: { intervals: [{ every }] }, action }));
  return 'updated';
}
