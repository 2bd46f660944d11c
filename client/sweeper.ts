/**
 * The `strata-sweeper` Temporal Schedule: runs `orphanSweep` (workflows/sweeper.ts) every
 * interval. Every worker ensures it at start, so it exists once whatever the number of workers;
 * ensuring it again with the same settings changes nothing, with other settings updates it.
 */
import type { Client } from '@temporalio/client';
import { ensureIntervalSchedule, type ScheduleOutcome } from './platform-schedule.js';

export const SWEEPER_SCHEDULE_ID = 'strata-sweeper';
export const DEFAULT_SWEEP_INTERVAL = '10m';

/** `off` turns the schedule off (deletes it); otherwise a duration ("10m", "1h"). */
export async function ensureSweeperSchedule(
  client: Client,
  o: { taskQueue: string; interval?: string; scheduleId?: string },
): Promise<ScheduleOutcome> {
  return ensureIntervalSchedule(client, {
    scheduleId: o.scheduleId ?? SWEEPER_SCHEDULE_ID,
    interval: o.interval ?? DEFAULT_SWEEP_INTERVAL,
    taskQueue: o.taskQueue,
    workflowType: 'orphanSweep',
    args: [],
    staticSummary: 'Stops jobs and clusters whose owning workflow has closed',
  });
}
