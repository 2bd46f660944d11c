/**
 * Table maintenance as task kinds (`table.compact`, `table.expire_snapshots`,
 * `table.remove_orphans`) and the inputs of the `tableMaintenance` workflows. The same
 * operations run on every table by default (the `strata-table-maintenance` schedule);
 * these let a pipeline run them where it wants, with its own policy values.
 */
import { z } from 'zod';
import { Duration } from './duration.js';
import { DATASET_NAME_RE, Namespace } from './lake.js';

export const MAINTENANCE_OPERATIONS = ['compact', 'expire_snapshots', 'remove_orphans'] as const;
export type MaintenanceOperation = (typeof MAINTENANCE_OPERATIONS)[number];

const TableField = z
  .string()
  .regex(DATASET_NAME_RE, 'write the table as layer.name (e.g. silver.orders); set "namespace" for another namespace');

const common = {
  table: TableField,
  namespace: Namespace.optional(),
  /** Only say what would change. */
  dryRun: z.boolean().default(false),
};

export const CompactFields = {
  ...common,
  /** Files of about this many bytes (default: the table's write.target-file-size-bytes, else 512 MiB). */
  targetFileSize: z
    .number()
    .int()
    .min(1024 * 1024, 'at least 1048576 bytes (1 MiB)')
    .optional(),
  /** Compact a partition once it has this many small files (default 5). */
  minInputFiles: z.number().int().min(2).optional(),
};

export const ExpireSnapshotsFields = {
  ...common,
  /** Keep snapshots this long after they stopped being current (default: the table's policy, else 120h). */
  maxSnapshotAge: Duration.optional(),
  /** Always keep this many of each branch's latest snapshots (default 1). */
  minSnapshots: z.number().int().min(1).optional(),
};

export const RemoveOrphansFields = {
  ...common,
  /** Only files older than this (default: the table's policy, else 3d); never below the worker's floor. */
  olderThan: Duration.optional(),
};

/** The kinds' fields as schemas, for parseTask. */
export const CompactTask = z.object(CompactFields);
export const ExpireSnapshotsTask = z.object(ExpireSnapshotsFields);
export const RemoveOrphansTask = z.object(RemoveOrphansFields);

/** One table's maintenance run (workflow `tableMaintenance`). */
export interface TableMaintenanceInput {
  tenant: string;
  namespace: string[];
  name: string;
  /** Default: all three, in the order compact, expire_snapshots, remove_orphans. */
  operations?: MaintenanceOperation[];
  dryRun?: boolean;
  /** Only for the scheduled sweep: tables with `strata.maintenance.enabled=false` are left out. */
  scheduled?: boolean;
}

/** The id of one table's maintenance workflow: one at a time per table. */
export function maintenanceWorkflowId(t: { tenant: string; namespace: string[]; name: string }): string {
  return `maintenance/${t.tenant}/${t.namespace.join('.')}/${t.name}`;
}

export const MAINTENANCE_SCHEDULE_ID = 'strata-table-maintenance';
