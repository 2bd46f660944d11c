/**
 * Temporal adapters for table maintenance (activities/iceberg/maintenance.ts): the steps of
 * the `tableMaintenance` workflow, the table listing of the scheduled sweep, and the three
 * task kinds. Every table is resolved in the tenant the run or workflow belongs to, over
 * that tenant's own store: a name never reaches another tenant's warehouse.
 */
import { Context } from '@temporalio/activity';
import { NonRetryableError } from '../../schemas/errors.js';
import { toMs } from '../../schemas/duration.js';
import {
  CompactTask,
  ExpireSnapshotsTask,
  RemoveOrphansTask,
  type MaintenanceOperation,
  type TableMaintenanceInput,
} from '../../schemas/maintenance.js';
import { parseTask } from '../../schemas/kinds.js';
import type { Duration } from '../../schemas/duration.js';
import { parseDatasetName } from '../../schemas/lake.js';
import type { Producer } from '../../store/catalog.js';
import { maintenanceTables, type TableName } from '../../store/maintenance.js';
import { IcebergStore } from '../../store/iceberg.js';
import { taskActivity } from '../core/task.js';
import { icebergIdent } from '../iceberg/writer.js';
import {
  compactTable,
  expireSnapshots,
  MaintenanceError,
  removeOrphans,
  type MaintenanceDeps,
  type TableRef,
} from '../iceberg/maintenance.js';
import type { MaintenancePolicy } from '../iceberg/policy.js';
import { policyOf } from '../iceberg/policy.js';
import { tableMetadata } from '../iceberg/metadata.js';
import type { LakeDeps } from '../lake/engine.js';
import { forTenant } from '../lake/open.js';

export interface MaintenanceActivityDeps {
  lake?: LakeDeps;
  /** The youngest an unreferenced file may be and still be removed, whatever a table says (default 1 h). */
  orphanFloorMs?: number;
}

export const DEFAULT_ORPHAN_FLOOR_MS = 3_600_000;

/** One step of a table's maintenance. */
export interface MaintenanceStepInput {
  table: TableMaintenanceInput;
  operation: MaintenanceOperation;
  /** The workflow's time (deterministic): the age of snapshots and files is measured from it. */
  now: number;
  /** Who a compaction's dataset version is recorded as produced by. */
  producer: Omit<Producer, 'tenant'>;
}

export function createMaintenanceActivities(deps: MaintenanceActivityDeps) {
  const need = (tenant: string): MaintenanceDeps => {
    if (!deps.lake)
      throw new NonRetryableError(
        'this worker has no lake catalog configured (metastore): start it with DATABASE_URL set',
        'ConfigError',
      );
    const lake = forTenant(deps.lake, tenant);
    return { db: lake.catalog.db, store: lake.store, cacheDir: lake.cacheDir };
  };
  const floor = deps.orphanFloorMs ?? DEFAULT_ORPHAN_FLOOR_MS;

  const step = async (
    m: MaintenanceDeps,
    t: TableRef,
    op: MaintenanceOperation,
    o: { now: number; dryRun?: boolean; overrides?: Partial<MaintenancePolicy>; producer: Omit<Producer, 'tenant'> },
  ) => {
    try {
      if (op === 'compact') return await compactTable(m, t, o);
      if (op === 'expire_snapshots') return await expireSnapshots(m, t, o);
      return await removeOrphans(m, t, { ...o, floorMs: floor });
    } catch (e) {
      if (e instanceof MaintenanceError) throw new NonRetryableError(e.message, 'TableNotFound');
      throw e;
    }
  };

  /** A task's table: `layer.name` in the run's tenant (namespace from the task). */
  const taskTable = (tenant: string, t: { table: string; namespace?: string }): TableRef => {
    const d = parseDatasetName(t.table);
    if (!d)
      throw new NonRetryableError(`table ${t.table}: expected layer.name (bronze, silver or gold)`, 'ConfigError');
    const ident = icebergIdent({ layer: d.layer, namespace: t.namespace ?? 'default', name: d.name });
    return { tenant, namespace: ident.namespace, name: ident.name };
  };
  const dur = (d: Duration | undefined) => (d === undefined ? undefined : toMs(d));
  const task = (op: MaintenanceOperation) =>
    taskActivity(async (input) => {
      const m = need(input.run.tenant);
      const t =
        op === 'compact'
          ? parseTask(CompactTask, input.task)
          : op === 'expire_snapshots'
            ? parseTask(ExpireSnapshotsTask, input.task)
            : parseTask(RemoveOrphansTask, input.task);
      const overrides: Partial<MaintenancePolicy> = Object.fromEntries(
        Object.entries({
          targetFileSizeBytes: 'targetFileSize' in t ? t.targetFileSize : undefined,
          minInputFiles: 'minInputFiles' in t ? t.minInputFiles : undefined,
          maxSnapshotAgeMs: 'maxSnapshotAge' in t ? dur(t.maxSnapshotAge) : undefined,
          minSnapshotsToKeep: 'minSnapshots' in t ? t.minSnapshots : undefined,
          orphanOlderThanMs: 'olderThan' in t ? dur(t.olderThan) : undefined,
        }).filter(([, v]) => v !== undefined),
      );
      const r = await step(m, taskTable(input.run.tenant, t), op, {
        now: Date.now(),
        dryRun: t.dryRun,
        overrides,
        producer: { runId: input.run.workflowId, pipelineId: input.run.pipelineId, taskId: t.id },
      });
      return { ...r, operation: op };
    });

  return {
    /** A page of every tenant's tables, after `after` (the sweep's cursor). */
    async listMaintenanceTables(o: { after?: TableName; limit: number }): Promise<TableName[]> {
      if (!deps.lake) return [];
      const key = (t: TableName) => `${t.tenant}\u0000${t.namespace.join('\u001f')}\u0000${t.name}`;
      const all = (await maintenanceTables(deps.lake.catalog.db)).sort((a, b) => (key(a) < key(b) ? -1 : 1));
      const after = o.after ? key(o.after) : '';
      return all.filter((t) => key(t) > after).slice(0, o.limit);
    },

    /** Whether the scheduled sweep should visit a table (its policy may turn maintenance off). */
    async tableMaintenanceEnabled(t: TableRef): Promise<boolean> {
      if (!deps.lake) return false;
      const row = await new IcebergStore(deps.lake.catalog.db).table(t.tenant, t.namespace, t.name);
      return !!row && policyOf(tableMetadata(row.metadata).properties).policy.enabled;
    },

    async tableMaintenanceStep(i: MaintenanceStepInput) {
      Context.current().heartbeat();
      const t: TableRef = { tenant: i.table.tenant, namespace: i.table.namespace, name: i.table.name };
      return step(need(t.tenant), t, i.operation, { now: i.now, dryRun: i.table.dryRun, producer: i.producer });
    },

    compactTask: task('compact'),
    expireSnapshotsTask: task('expire_snapshots'),
    removeOrphansTask: task('remove_orphans'),
  };
}
