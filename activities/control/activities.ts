/** Control kinds: `fail` (to exercise trigger rules and retries) and `noop`. */
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { toMs, type Duration } from '../../schemas/duration.js';
import { abortableSleep, taskActivity } from '../core/task.js';

export function createControlActivities() {
  return {
    failTask: taskActivity(async ({ task }) => {
      const attempt = Context.current().info.attempt;
      const succeedOn = task.succeedOnAttempt as number | undefined;
      if (succeedOn !== undefined && attempt >= succeedOn) return { succeededOnAttempt: attempt };
      throw ApplicationFailure.create({
        message: typeof task.message === 'string' ? task.message : 'failed on purpose',
        type: 'FailTask',
        nonRetryable: Boolean(task.nonRetryable),
      });
    }),
    noopTask: taskActivity(async ({ task }, signal) => {
      if (task.sleep !== undefined) await abortableSleep(toMs(task.sleep as Duration), signal);
      return {};
    }),
  };
}
