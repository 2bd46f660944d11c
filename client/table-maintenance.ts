/**
 * Table maintenance from the client side: the `strata-table-maintenance` Temporal Schedule
 * (every worker ensures it at start, like `strata-sweeper`) that runs `tableMaintenanceSweep`
 * over every table, and starting one table's `tableMaintenance` now (the CLI's
 * `strata tables maintain`).
 */
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { ensureIntervalSchedule, type ScheduleOutcome } from './platform-schedule.js';
import { MAINTENANCE_SCHEDULE_ID, maintenanceWorkflowId, type TableMaintenanceInput } from '../schemas/maintenance.js';
import type { TableMaintenanceResult } from '../workflows/table-maintenance.js';

export const DEFAULT_MAINTENANCE_INTERVAL = '1h';

/** `off` deletes the schedule; otherwise a duration ("1h", "6h"). Ensuring it again with the same settings changes nothing. */
export async function ensureMaintenanceSchedule(
  client: Client,
  o: { taskQueue: string; interval?: string; scheduleId?: string },
): Promise<ScheduleOutcome> {
  return ensureIntervalSchedule(client, {
    scheduleId: o.scheduleId ?? MAINTENANCE_SCHEDULE_ID,
    interval: o.interval ?? DEFAULT_MAINTENANCE_INTERVAL,
    taskQueue: o.taskQueue,
    workflowType: 'tableMaintenanceSweep',
    args: [{}],
    staticSummary: 'Compaction, snapshot expiry and orphan removal on every table',
  });
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
