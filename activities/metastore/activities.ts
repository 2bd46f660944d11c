/**
 * Keeps the runs index true: the pipeline workflow records each run at its start and
 * end, and its tasks' state as deltas while it runs. Without a metastore (a bare worker)
 * these are no-ops. Writes are upserts, so a retried or late write repairs the row
 * instead of duplicating it.
 */
import type { TaskDelta } from '../../schemas/run.js';
import type { Db } from '../../store/db.js';
import { recordRun as upsertRun, recordTaskDeltas } from '../../store/runs.js';
import { type RunRecord } from '../../schemas/run.js';

export function createMetastoreActivities(db?: Db) {
  return {
    async recordRun(r: RunRecord): Promise<void> {
      if (!db) return;
      await upsertRun(db, r);
    },
    async recordTasks(r: { runId: string; deltas: TaskDelta[] }): Promise<void> {
      if (!db) return;
      await recordTaskDeltas(db, r.runId, r.deltas);
    },
  };
}
