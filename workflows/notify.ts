/**
 * notifyRun: delivers a run's notifications apart from the run. The run starts it as an
 * abandoned child (`{run id}/notify/end` when it finishes, `…/notify/sla` when it starts
 * with an SLA), so a slow or failing channel never blocks or fails the run, and the id
 * (never reused) means a replayed or retried run starts it once. Each delivery is one
 * activity with retries and backoff; the activity records its outcome in the metastore
 * under (run, rule, event) and does nothing for a row already delivered.
 * Deterministic: no I/O; the input names channels only, never a secret.
 */
import { patched, proxyActivities, sleep, workflowInfo } from '@temporalio/workflow';
import type { WorkerActivities } from '../activities/index.js';
import {
  endEvents,
  reconcileLookup,
  withReconciliations,
  type DeliveryInput,
  type NotifyInput,
} from '../schemas/notify.js';

/** The notifier's activities, typed by the worker's own registry. */
type NotifyActivities = Pick<
  WorkerActivities,
  'deliverNotification' | 'runStatusForNotify' | 'reconcileOutcomesForNotify'
>;

const DEFAULT_RETRY = { initialMs: 2000, maxAttempts: 8 };

export async function notifyRun(input: NotifyInput): Promise<{ delivered: number; failed: number }> {
  const retry = input.retry ?? DEFAULT_RETRY;
  const acts = proxyActivities<NotifyActivities>({
    startToCloseTimeout: '2m',
    retry: {
      initialInterval: retry.initialMs,
      backoffCoefficient: 2,
      maximumInterval: Math.max(retry.initialMs, 60_000),
      maximumAttempts: retry.maxAttempts,
    },
    summary: 'notify',
  });
  const deliveries: DeliveryInput[] = [];
  if (input.phase === 'sla') {
    const started = Date.parse(input.startedAt ?? workflowInfo().startTime.toISOString());
    const waitMs = Math.max(0, started + (input.slaMs ?? 0) - Date.now());
    await sleep(waitMs, { summary: 'until the SLA' });
    const now = await acts.runStatusForNotify({ runId: input.run.runId, tenant: input.run.tenant });
    if (!now || (now.status !== 'running' && now.status !== 'queued')) return { delivered: 0, failed: 0 };
    for (const rule of input.rules)
      if (rule.on.includes('sla_missed'))
        deliveries.push({
          run: input.run,
          rule: rule.id,
          channel: rule.channel,
          event: 'sla_missed',
          facts: { status: now.status, failedTasks: [], slaMs: input.slaMs, startedAt: input.startedAt },
        });
  } else if (input.outcome) {
    let o = input.outcome;
    // Reconciliations: what the run's comparisons found, from the metastore (mappings' own
    // rules, and `warn` comparisons that differ, which are quality warnings of the run).
    const lookup = reconcileLookup(input.rules);
    if (lookup && patched('notify-reconcile-v1'))
      o = withReconciliations(
        o,
        await acts.reconcileOutcomesForNotify({ runId: input.run.runId, tenant: input.run.tenant, ...lookup }),
      );
    for (const { rule, event, reconciliation } of endEvents(input.rules, o))
      deliveries.push({
        run: input.run,
        rule: rule.id,
        channel: rule.channel,
        event,
        facts: {
          status: o.status,
          ...(o.error ? { error: o.error } : {}),
          failedTasks: o.failures ?? [],
          ...(event === 'retry_exhausted' ? { exhausted: o.exhausted } : {}),
          ...(event === 'quality_warning' && !reconciliation ? { warned: o.warned } : {}),
          ...(reconciliation ? { reconciliation } : {}),
        },
      });
  }
  // Channels are independent: one that fails for good does not hold up the others.
  const results = await Promise.allSettled(deliveries.map((d) => acts.deliverNotification(d)));
  return {
    delivered: results.filter((r) => r.status === 'fulfilled' && r.value.status !== 'failed').length,
    failed: results.filter((r) => r.status === 'rejected' || r.value.status === 'failed').length,
  };
}
