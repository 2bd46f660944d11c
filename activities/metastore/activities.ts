/**
 * Keeps the runs index true: the pipeline workflow records each run at its start and
 * end. Without a metastore (a bare worker) this is a no-op. Writes are upserts, so a
 * retried or late write repairs the row instead of duplicating it.
 */
import type { Db } from '../../store/db.js';
import { recordRun as upsertRun, type RunRecord } from '../../store/runs.js';

export function createMetastoreActivities(db?: Db) {
  return {
    async recordRun(r: RunRecord): Promise<void> {
      if (!db) return;
      await upsertRun(db, r);
    },
  };
}
