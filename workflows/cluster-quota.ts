/**
 * clusterQuota: one entity workflow per tenant (`quota/{tenant}/clusters`) that hands out
 * cluster slots. A workflow runs its update handlers one activation at a time, so the
 * check and the take below cannot interleave: two creates racing for the last slot get
 * one yes and one no (a count over visibility, which lags, could say yes to both).
 * Slots are not released by message: when the tenant looks full, the holders' cluster
 * workflows are described and the ones that have ended since they took their slot
 * (or never started within a grace period) are dropped.
 */
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { WorkerActivities } from '../activities/index.js';
import { acquireClusterSlot, clusterQuotaQuery, type ClusterQuotaInput, type QuotaHolder } from './cluster-messages.js';

/** A slot whose cluster never started is kept this long (the create that took it may still be starting it). */
const START_GRACE_MS = 2 * 60_000;

const { clusterSlotStatuses } = proxyActivities<Pick<WorkerActivities, 'clusterSlotStatuses'>>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', maximumAttempts: 5 },
});

export async function clusterQuota(input: ClusterQuotaInput): Promise<void> {
  let holders: QuotaHolder[] = input.holders ?? [];
  setHandler(clusterQuotaQuery, () => holders);
  setHandler(
    acquireClusterSlot,
    async ({ name, max, tier }) => {
      const take = () => {
        if (!holders.some((h) => h.name === name)) {
          if (holders.length >= max) return false;
          holders.push({ name, acquiredAt: Date.now() });
        }
        return true;
      };
      if (take()) return { holders: holders.map((h) => h.name) };
      const statuses = await clusterSlotStatuses({ tenant: input.tenant, names: holders.map((h) => h.name) });
      // Synchronous from here on: nothing else runs between the pruning and the take.
      const now = Date.now();
      holders = holders.filter((h) => {
        const s = statuses[h.name];
        if (!s || s.state === 'running') return true;
        if (s.state === 'closed') return s.closedAt < h.acquiredAt; // an earlier run of that name; this one is still starting
        return now - h.acquiredAt < START_GRACE_MS; // missing: not started yet
      });
      if (take()) return { holders: holders.map((h) => h.name) };
      throw ApplicationFailure.create({
        type: 'QuotaExceeded',
        nonRetryable: true,
        message: `tenant ${input.tenant} already runs ${holders.length} cluster(s), the most its ${tier ? `${tier} ` : ''}tier allows (${holders.map((h) => h.name).join(', ')}): delete one or move to a larger tier`,
      });
    },
    {
      validator: ({ name, max }) => {
        if (!name || !(max >= 0)) throw new Error('acquireClusterSlot needs a cluster name and a max');
      },
    },
  );
  await condition(() => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > 4000);
  await condition(allHandlersFinished);
  await continueAsNew<typeof clusterQuota>({ tenant: input.tenant, holders });
}
