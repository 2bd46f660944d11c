/**
 * The notifier's activities. `deliverNotification` claims the (run, rule, event) row, sends
 * once, and records each attempt's outcome: a delivered row is never sent again (a replayed
 * notifier or a retried activity), and a channel that keeps failing ends `failed` after the
 * last attempt instead of failing the notifier. What a channel is comes from the worker's
 * configuration for the run's tenant, never from the input.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ScheduleNotFoundError } from '@temporalio/client';
import type { DeliveryInput } from '../../schemas/notify.js';
import type { Db } from '../../store/db.js';
import { claimDelivery, recordAttempt } from '../../store/notifications.js';
import { runReconciliations } from '../../store/reconciliations.js';
import { NOTIFY_LIMITS, type ReconcileOutcome } from '../../schemas/notify.js';
import { getRunById } from '../../store/runs.js';
import { channelFor, unknownChannelMessage, type Channels } from './channels.js';
import { send, type Links } from './client.js';

export interface NotifyDeps {
  db?: Db;
  notifyChannels?: Channels;
  /** Where links in notifications point: the API's public base (run pages) and the Temporal UI. */
  publicUrl?: string;
  uiUrl?: string;
  namespace?: string;
}

export function runLinks(deps: NotifyDeps, run: DeliveryInput['run']): Links {
  const api = (deps.publicUrl ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const ui = (deps.uiUrl ?? 'http://127.0.0.1:8233').replace(/\/+$/, '');
  if (run.workflowId.startsWith('schedule/')) {
    const sid = run.workflowId.split('/').slice(3).join('/');
    return {
      run: `${api}/api/v1/pipelines/${encodeURIComponent(run.pipelineId)}/schedules/${encodeURIComponent(sid)}`,
      temporal: `${ui}/namespaces/${deps.namespace ?? 'default'}/schedules/${encodeURIComponent(run.workflowId)}`,
    };
  }
  return {
    run: `${api}/runs/${encodeURIComponent(run.runId)}`,
    temporal: `${ui}/namespaces/${deps.namespace ?? 'default'}/workflows/${encodeURIComponent(run.workflowId)}`,
  };
}

export function createNotifyActivities(deps: NotifyDeps) {
  const channels = deps.notifyChannels ?? {};
  const needDb = (): Db => {
    if (!deps.db) throw ApplicationFailure.nonRetryable('this worker has no metastore: notifications need one');
    return deps.db;
  };
  return {
    async deliverNotification(d: DeliveryInput): Promise<{ status: 'delivered' | 'failed' | 'skipped' }> {
      const db = needDb();
      const info = Context.current().info;
      const key = { runId: d.run.runId, rule: d.rule, event: d.event };
      const c = channelFor(channels, d.channel, d.run.tenant);
      const row = await claimDelivery(db, {
        ...key,
        tenant: d.run.tenant,
        pipelineId: d.run.pipelineId,
        channel: d.channel,
        channelType: c?.type ?? 'unknown',
      });
      if (row.status === 'delivered') return { status: 'skipped' };
      if (row.status === 'failed') return { status: 'failed' };
      if (!c) {
        // Registration refuses unknown channels; this is a spec run directly or a channel since removed.
        const error = unknownChannelMessage(channels, d.channel, d.run.tenant);
        await recordAttempt(db, key, { ok: false, attempt: info.attempt, error, final: true });
        return { status: 'failed' };
      }
      const r = await send(c, d, runLinks(deps, d.run));
      const last = !r.retryable || info.attempt >= (info.retryPolicy?.maximumAttempts ?? Infinity);
      await recordAttempt(db, key, {
        ok: r.ok,
        attempt: info.attempt,
        error: r.error,
        responseStatus: r.responseStatus,
        final: !r.ok && last,
      });
      if (r.ok) return { status: 'delivered' };
      if (last) return { status: 'failed' };
      // Retried with backoff by Temporal; the message names the channel, never its address.
      throw ApplicationFailure.retryable(r.error ?? `channel ${c.name} failed`, 'NotifyDeliveryFailed');
    },

    /** Temporal's counters of a schedule's dropped fires (undefined once it is deleted). */
    async describeScheduleForNotify(a: {
      tenant: string;
      scheduleId: string;
    }): Promise<{ missed: number; skipped: number; paused: boolean } | undefined> {
      // Only the tenant's own schedules: the id names its tenant (schedule/{tenant}/…).
      if (!a.scheduleId.startsWith(`schedule/${a.tenant}/`))
        throw ApplicationFailure.nonRetryable(`schedule ${a.scheduleId} is not one of tenant ${a.tenant}'s`);
      try {
        const d = await Context.current().client.schedule.getHandle(a.scheduleId).describe();
        return {
          missed: d.info.numActionsMissedCatchupWindow,
          skipped: d.info.numActionsSkippedOverlap,
          paused: d.state.paused,
        };
      } catch (e) {
        if (e instanceof ScheduleNotFoundError) return undefined;
        throw e;
      }
    },

    /** What the run's comparisons found (its own tenant's run only), for mapping rules and quality warnings. */
    async reconcileOutcomesForNotify(a: {
      runId: string;
      tenant: string;
      tasks: string[];
      warned: boolean;
    }): Promise<ReconcileOutcome[]> {
      return runReconciliations(needDb(), a.tenant, a.runId, {
        tasks: a.tasks.slice(0, NOTIFY_LIMITS.mappingRules),
        warned: a.warned,
        limit: NOTIFY_LIMITS.listed,
      });
    },

    /** The run's status in the runs index (its own tenant's only), for the SLA check. */
    async runStatusForNotify(a: { runId: string; tenant: string }): Promise<{ status: string } | undefined> {
      const r = await getRunById(needDb(), a.runId);
      return r && r.tenant === a.tenant ? { status: r.status } : undefined;
    },
  };
}
