/**
 * scheduleWatch: notices a schedule missing its fire times and runs its `schedule_missed`
 * rules. Detection uses Temporal's own accounting of the schedule (ScheduleInfo): a fire
 * dropped because the previous run was still running under the overlap policy
 * (`numActionsSkippedOverlap`) or because the scheduler could not start it within the
 * catch-up window (`numActionsMissedCatchupWindow`, e.g. the server was down). Both counters
 * only grow, so each check compares them with the last values seen; a rise fires the rules
 * once, deduplicated by the counters' total. Comparing fire times with recent actions was
 * the alternative, but recent actions are capped and jitter shifts them; the counters are
 * exact. A paused schedule takes no actions and counts none: pausing is not a miss.
 * One watcher per schedule (`schedule/{tenant}/{pipeline}/{id}/watch`), started and
 * restarted by the API when the schedule's rules change, ended when it is deleted.
 */
import { continueAsNew, proxyActivities, sleep } from '@temporalio/workflow';
import type { WorkerActivities } from '../activities/index.js';
import type { ScheduleWatchInput } from '../schemas/notify.js';

export type { ScheduleWatchInput };

type WatchActivities = Pick<WorkerActivities, 'describeScheduleForNotify' | 'deliverNotification'>;

const CHECKS_PER_EXECUTION = 500;

export async function scheduleWatch(input: ScheduleWatchInput): Promise<void> {
  const retry = input.retry ?? { initialMs: 2000, maxAttempts: 8 };
  const acts = proxyActivities<WatchActivities>({
    startToCloseTimeout: '1m',
    retry: {
      initialInterval: retry.initialMs,
      backoffCoefficient: 2,
      maximumInterval: Math.max(retry.initialMs, 60_000),
      maximumAttempts: retry.maxAttempts,
    },
    summary: 'schedule watch',
  });
  let seen = input.seen;
  for (let i = 0; i < CHECKS_PER_EXECUTION; i++) {
    const now = await acts.describeScheduleForNotify({ tenant: input.tenant, scheduleId: input.scheduleId });
    if (!now) return; // the schedule is gone
    if (!seen) seen = { missed: now.missed, skipped: now.skipped };
    else if (now.missed > seen.missed || now.skipped > seen.skipped) {
      const missed = now.missed - seen.missed;
      const skipped = now.skipped - seen.skipped;
      const detail = [
        missed ? `${missed} fire time(s) not started within the catch-up window` : '',
        skipped ? `${skipped} fire time(s) skipped because the previous run was still running (overlap policy)` : '',
      ]
        .filter(Boolean)
        .join('; ');
      const key = `${input.scheduleId}#${now.missed + now.skipped}`;
      await Promise.allSettled(
        input.rules
          .filter((r) => r.on.includes('schedule_missed'))
          .map((r) =>
            acts.deliverNotification({
              run: {
                runId: key,
                workflowId: input.scheduleId,
                pipelineId: input.pipelineId,
                tenant: input.tenant,
                trigger: 'schedule',
                logicalDate: new Date().toISOString(),
              },
              rule: r.id,
              channel: r.channel,
              event: 'schedule_missed',
              facts: {
                status: now.paused ? 'paused' : 'active',
                failedTasks: [],
                schedule: { id: input.schedule, missed, skipped, detail },
              },
            }),
          ),
      );
      seen = { missed: now.missed, skipped: now.skipped };
    }
    await sleep(input.everyMs, { summary: 'next check' });
  }
  await continueAsNew<typeof scheduleWatch>({ ...input, seen });
}
