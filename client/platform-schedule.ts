/**
 * The platform's own interval schedules (the orphan sweeper, table maintenance): every worker
 * ensures them at start, so each exists once whatever the number of workers. Ensuring one
 * again with the same settings changes nothing; with other settings it is updated; `off`
 * deletes it. One run at a time (overlap skip), a missed interval caught up once.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { toMs } from '../schemas/duration.js';

export type ScheduleOutcome = 'created' | 'updated' | 'unchanged' | 'deleted' | 'absent';

export async function ensureIntervalSchedule(
  client: Client,
  o: {
    scheduleId: string;
    /** `off`, or a duration ("10m", "1h"). */
    interval: string;
    taskQueue: string;
    workflowType: string;
    args: unknown[];
    staticSummary: string;
  },
): Promise<ScheduleOutcome> {
  const handle = client.schedule.getHandle(o.scheduleId);
  if (o.interval === 'off')
    return handle.delete().then(
      () => 'deleted' as const,
      () => 'absent' as const,
    );
  const every = toMs(o.interval);
  const action = {
    type: 'startWorkflow' as const,
    workflowType: o.workflowType,
    workflowId: o.scheduleId,
    taskQueue: o.taskQueue,
    args: o.args,
    staticSummary: o.staticSummary,
  };
  try {
    await client.schedule.create({
      scheduleId: o.scheduleId,
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
  const same = (() => {
    try {
      return have !== undefined && toMs(have) === every;
    } catch {
      return false;
    }
  })();
  const act = d.action;
  if (
    d.spec.intervals?.length === 1 &&
    same &&
    act.type === 'startWorkflow' &&
    act.taskQueue === o.taskQueue &&
    act.workflowType === o.workflowType
  )
    return 'unchanged';
  await handle.update((prev) => ({ ...prev, spec: { intervals: [{ every }] }, action }));
  return 'updated';
}
