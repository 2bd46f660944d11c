/**
 * orphanSweep: one sweep for jobs and clusters whose owning workflow closed without stopping
 * them (a Temporal terminate runs no cleanup). Started by the `strata-sweeper` Schedule that
 * every worker ensures at start (client/sweeper.ts); the activity does the work.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { WorkerActivities } from '../activities/index.js';
import type { SweepReport } from '../activities/sweeper/activities.js';

const acts = proxyActivities<Pick<WorkerActivities, 'sweepOrphans'>>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '5s', maximumAttempts: 3 },
});

/** The report, with at most 100 stopped resources listed (all are counted, logged and in the metastore). */
export async function orphanSweep(): Promise<SweepReport & { stoppedCount: number }> {
  const r = await acts.sweepOrphans();
  return {
    ...r,
    stoppedCount: r.stopped.length,
    stopped: r.stopped.slice(0, 100),
    errors: r.errors.slice(0, 20),
    released: r.released.slice(0, 100),
  };
}
