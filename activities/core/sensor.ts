/**
 * A sensor's poll loop inside one heartbeating activity: the check runs every interval
 * until it reports done or the deadline passes. The workflow's history holds one activity
 * however many checks it takes (a day-long wait at 30 s is one activity, not 2,880 timers
 * and checks). The deadline is absolute and the check count rides on the heartbeat, so a
 * retry after a worker crash carries on where the last attempt stopped.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { toMs } from '../../schemas/duration.js';
import { SensorTiming, parseTask } from '../../schemas/kinds.js';
import type { TaskActivityInput } from '../../schemas/run.js';
import type { TaskEnvelope } from './task.js';

export async function pollUntilDone(
  check: (i: TaskActivityInput) => Promise<TaskEnvelope>,
  input: TaskActivityInput & { sensor: NonNullable<TaskActivityInput['sensor']> },
): Promise<TaskEnvelope> {
  const ctx = Context.current();
  const { waitTimeout, pollInterval } = parseTask(SensorTiming, input.task);
  const deadline = input.sensor.since + toMs(waitTimeout);
  const intervalMs = toMs(pollInterval);
  const beat: unknown = ctx.info.heartbeatDetails;
  const resumed =
    beat && typeof beat === 'object' && 'polls' in beat && typeof beat.polls === 'number' ? beat.polls : undefined;
  let polls = resumed ?? input.sensor.polls ?? 0;
  const beatEvery = Math.max(100, Math.floor((ctx.info.heartbeatTimeoutMs ?? 30_000) / 3));
  for (;;) {
    const r = await check({ task: input.task, run: input.run });
    polls++;
    if (r.output.done) return { output: { ...r.output, polls }, attempt: ctx.info.attempt };
    ctx.heartbeat({ polls });
    const left = deadline - Date.now();
    if (left <= 0)
      throw ApplicationFailure.create({
        type: 'SensorTimeout',
        nonRetryable: true,
        message: `${input.task.id}: gave up after ${polls} checks: ${typeof r.output.reason === 'string' ? r.output.reason : 'condition not met'}`,
        details: [{ attempt: 1 }],
      });
    // Sleep until the next check, heartbeating so a cancel or a dead worker is noticed in time.
    const until = Date.now() + Math.min(intervalMs, left);
    while (Date.now() < until) {
      if (ctx.cancellationSignal.aborted) throw new CancelledFailure('sensor cancelled');
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(beatEvery, until - Date.now()));
        ctx.cancellationSignal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            res();
          },
          { once: true },
        );
      });
      ctx.heartbeat({ polls });
    }
  }
}
