/**
 * Table maintenance as workflows, each table with a history of its own.
 *
 * `tableMaintenance` (id `maintenance/{tenant}/{namespace}/{name}`): compaction, then
 * snapshot expiry, then orphan removal (Iceberg's order: compaction's replaced files are
 * freed by expiry once their snapshots age out, and what expiry leaves behind is an
 * orphan), one activity each, at the workflow's time. One runs at a time per table: a start
 * while one runs finds it.
 *
 * `tableMaintenanceSweep`: started by the `strata-table-maintenance` Schedule (every worker
 * ensures it, like the orphan sweeper's): pages through every tenant's tables and runs
 * `tableMaintenance` for each as a child, a few at a time; a table whose maintenance is
 * still running from the last sweep is left to it, one that fails is counted (its own
 * history says why) and never stops the sweep. Long sweeps continue as new with a cursor.
 * Deterministic: no I/O.
 */
import {
  continueAsNew,
  executeChild,
  ParentClosePolicy,
  proxyActivities,
  workflowInfo,
  WorkflowIdReusePolicy,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { createMaintenanceActivities, MaintenanceStepInput } from '../activities/maintenance/activities.js';
import {
  maintenanceWorkflowId,
  type MaintenanceOperation,
  type TableMaintenanceInput,
} from '../schemas/maintenance.js';

type Acts = ReturnType<typeof createMaintenanceActivities>;

const acts = proxyActivities<Pick<Acts, 'tableMaintenanceStep' | 'tableMaintenanceEnabled'>>({
  startToCloseTimeout: '6h',
  retry: {
    initialInterval: '10s',
    backoffCoefficient: 2,
    maximumAttempts: 3,
    nonRetryableErrorTypes: ['TableNotFound'],
  },
});
const lister = proxyActivities<Pick<Acts, 'listMaintenanceTables'>>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '5s', maximumAttempts: 5 },
});

/** Compaction first, expiry next, orphans last (see the module comment). */
const ORDER: MaintenanceOperation[] = ['compact', 'expire_snapshots', 'remove_orphans'];

export interface TableMaintenanceResult {
  table: string;
  skipped?: string;
  /** Each operation's report (bounded: at most 50 deleted keys listed). */
  results: Partial<Record<MaintenanceOperation, Record<string, unknown>>>;
}

export async function tableMaintenance(input: TableMaintenanceInput): Promise<TableMaintenanceResult> {
  const table = `${input.tenant}:${input.namespace.join('.')}.${input.name}`;
  const t = { tenant: input.tenant, namespace: input.namespace, name: input.name };
  if (input.scheduled && !(await acts.tableMaintenanceEnabled(t)))
    return { table, skipped: 'strata.maintenance.enabled is false', results: {} };
  const asked = input.operations;
  const ops = asked?.length ? ORDER.filter((o) => asked.includes(o)) : ORDER;
  const info = workflowInfo();
  const producer: MaintenanceStepInput['producer'] = {
    runId: `${info.workflowId}@${info.runId}`,
    pipelineId: 'strata:maintenance',
    taskId: 'compact',
  };
  const results: TableMaintenanceResult['results'] = {};
  for (const operation of ops) {
    const r = await acts.tableMaintenanceStep({ table: input, operation, now: Date.now(), producer });
    results[operation] =
      'deleted' in r && Array.isArray(r.deleted) ? { ...r, deleted: r.deleted.slice(0, 50) } : { ...r };
  }
  return { table, results };
}

export interface SweepInput {
  /** The cursor: the last table visited by an earlier execution. */
  after?: { tenant: string; namespace: string[]; name: string };
  totals?: SweepTotals;
  /** Tables maintained at once (default 4). */
  parallel?: number;
}
export interface SweepTotals {
  maintained: number;
  running: number;
  failed: number;
}

const PAGE = 100;

export async function tableMaintenanceSweep(input: SweepInput = {}): Promise<SweepTotals> {
  const totals: SweepTotals = input.totals ?? { maintained: 0, running: 0, failed: 0 };
  const parallel = Math.max(1, Math.min(16, input.parallel ?? 4));
  let after = input.after;
  for (;;) {
    const page = await lister.listMaintenanceTables({ after, limit: PAGE });
    for (let i = 0; i < page.length; i += parallel) {
      await Promise.all(
        page.slice(i, i + parallel).map(async (t) => {
          try {
            await executeChild(tableMaintenance, {
              workflowId: maintenanceWorkflowId(t),
              args: [{ ...t, scheduled: true }],
              parentClosePolicy: ParentClosePolicy.ABANDON,
              workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
            });
            totals.maintained++;
          } catch (e) {
            if (e instanceof WorkflowExecutionAlreadyStartedError) totals.running++;
            else totals.failed++;
          }
        }),
      );
    }
    if (page.length < PAGE) return totals;
    after = page[page.length - 1];
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > 4000)
      return continueAsNew<typeof tableMaintenanceSweep>({ after, totals, parallel });
  }
}
