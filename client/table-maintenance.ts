/**
 * Table maintenance from the client side: the `strata-table-maintenance` Temporal Schedule
 * (every worker ensures it at start, like `strata-sweeper`) that runs `tableMaintenanceSweep`
 * over every table, and starting one table's `tableMaintenance` now (the CLI's
 * `strata tables maintain`).
 */
import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  WorkflowExecutionAlreadyStartedError,
  type Client,
} from '@temporalio/client';
import { toMs } from '../schemas/duration.js';
import { MAINTENANCE_SCHEDULE_ID, maintenanceWorkflowId, type TableMaintenanceInput } from '../schemas/maintenance.js';
import type { TableMaintenanceResult } from '../workflows/table-maintenance.js';

export const DEFAULT_MAINTENANCE_INTERVAL = '1h';

/** `off` deletes the schedule; otherwise a duration ("1h", "6h"). Ensuring it again with the same settings changes nothing. */
export async function ensureMaintenanceSchedule(
  client: Client,
  o: { taskQueue: string; interval?: string; scheduleId?: string },
): Promise<'created' | 'updated' | 'unchanged' | 'deleted' | 'absent'> {
  const interval = o.interval ?? DEFAULT_MAINTENANCE_INTERVAL;
  const scheduleId = o.scheduleId ?? MAINTENANCE_SCHEDULE_ID;
  const handle = client.schedule.getHandle(scheduleId);
  if (interval === 'off')
    return handle.delete().then(
      () => 'deleted' as const,
      () => 'absent' as const,
    );
  const every = toMs(interval);
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'tableMaintenanceSweep',
    workflowId: scheduleId,
    taskQueue: o.taskQueue,
    args: [{}],
    staticSummary: 'Compaction, snapshot expiry and orphan removal on every table',
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
  const act = d.action as { taskQueue?: string; workflowType?: string };
  const same = (() => {
    try {
      return have !== undefined && toMs(have) === every;
    } catch {
      return false;
    }
  })();
  if (
    d.spec.intervals?.length === 1 &&
    same &&
    act.taskQueue === o.taskQueue &&
    act.workflowType === action.workflowType
  )
    return 'unchanged';
  await handle.update((prev) => ({ ...prev, spec: { intervals: [{ every }] }, action }));
  return 'updated';
}

/**
 * Runs one table's maintenance now and waits for it; when one is already running for the
 * table, waits for that one instead (one at a time per table).
 */
export async function maintainTableNow(
  client: Client,
  o: { taskQueue: string; input: TableMaintenanceInput },
): Promise<TableMaintenanceResult & { workflowId: string; joined: boolean }> {
  const workflowId = maintenanceWorkflowId(o.input);
  try {
    const h = await client.workflow.start('tableMaintenance', {
      workflowId,
      taskQueue: o.taskQueue,
      args: [o.input],
      staticSummary: `maintenance of ${o.input.namespace.join('.')}.${o.input.name}`,
    });
    return { ...((await h.result()) as TableMaintenanceResult), workflowId, joined: false };
  } catch (e) {
    if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
    const r = (await client.workflow.getHandle(workflowId).result()) as TableMaintenanceResult;
    return { ...r, workflowId, joined: true };
  }
}
