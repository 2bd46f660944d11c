/**
 * How a task's failure reads in the run: the one place that unwraps what Temporal wraps
 * (an activity failure inside a child workflow failure) down to the failure the task raised,
 * keeping its message, type, attempt and the output its engine reported.
 */
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure, TimeoutFailure } from '@temporalio/workflow';
import { isTaskOutput, type TaskOutput } from '../schemas/run.js';

/** A failed task's message, type and attempts, and what its engine reported (an external job's states and log tail). */
export function describeFailure(err: unknown): {
  message: string;
  type?: string;
  attempt: number;
  output?: TaskOutput;
} {
  let attempt = 1;
  let cause: unknown = err;
  // A child workflow's failure wraps the activity failure that caused it.
  while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause)
    cause = cause.cause;
  if (cause instanceof ApplicationFailure) {
    // Task failures carry { attempt, output? } as their first detail (activities/core/task.ts).
    const d: unknown = cause.details?.[0];
    let output: TaskOutput | undefined;
    if (d && typeof d === 'object') {
      if ('attempt' in d && typeof d.attempt === 'number' && d.attempt > 0) attempt = d.attempt;
      if ('output' in d && isTaskOutput(d.output)) output = d.output;
    }
    return { message: cause.message, type: cause.type ?? undefined, attempt, ...(output ? { output } : {}) };
  }
  if (cause instanceof TimeoutFailure) return { message: `timed out (${cause.timeoutType})`, type: 'Timeout', attempt };
  return { message: cause instanceof Error ? cause.message : String(cause), attempt };
}
