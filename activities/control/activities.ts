/** Control kinds: `fail` (to exercise trigger rules and retries) and `noop`. */
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { toMs } from '../../schemas/duration.js';
import { FailTask, NoopTask, parseTask } from '../../schemas/kinds.js';
import { abortableSleep, taskActivity } from '../core/task.js';

export function createControlActivities() {
  return {
    failTask: taskActivity(async ({ task }) => {
      const attempt = Context.current().info.attempt;
      const t = parseTask(FailTask, task);
      if (t.succeedOnAttempt !== undefined && attempt >= t.succeedOnAttempt) return { succeededOnAttempt: attempt };
      throw ApplicationFailure.create({ message: t.message, type: 'FailTask', nonRetryable: t.nonRetryable });
    }),
    noopTask: taskActivity(async ({ task }, signal) => {
      const { sleep } = parseTask(NoopTask, task);
      if (sleep !== undefined) await abortableSleep(toMs(sleep), signal);
      return {};
    }),
  };
}
