/**
 * The one adapter every task activity goes through: it reports the attempt that ran,
 * turns errors a retry cannot fix into non-retryable failures, passes cancellation
 * through, and keeps the activity alive with heartbeats while the work runs.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { NonRetryableError } from '../../schemas/errors.js';
import type { TaskActivityInput, TaskEnvelope, TaskOutput } from '../../schemas/run.js';

export type { TaskEnvelope };

/** Records heartbeat details (resume state, progress); periodic heartbeats resend the latest. */
export type Heartbeat = (details: unknown) => void;

export type TaskFn = (input: TaskActivityInput, signal: AbortSignal, heartbeat: Heartbeat) => Promise<TaskOutput>;

export function taskActivity(fn: TaskFn): (input: TaskActivityInput) => Promise<TaskEnvelope> {
  return async (input) => {
    const ctx = Context.current();
    const attempt = ctx.info.attempt;
    let latest: unknown = ctx.info.heartbeatDetails;
    const stop = startHeartbeats(ctx, () => latest);
    const heartbeat: Heartbeat = (d) => {
      latest = d;
      ctx.heartbeat(d);
    };
    try {
      const output = await fn(input, ctx.cancellationSignal, heartbeat);
      return { output, attempt };
    } catch (e) {
      if (e instanceof CancelledFailure) throw e;
      if (ctx.cancellationSignal.aborted) throw new CancelledFailure('task cancelled');
      throw toFailure(e, attempt);
    } finally {
      stop();
    }
  };
}

export function toFailure(e: unknown, attempt: number): ApplicationFailure {
  if (e instanceof ApplicationFailure)
    return ApplicationFailure.create({
      message: e.message,
      type: e.type ?? undefined,
      nonRetryable: e.nonRetryable ?? false,
      details: [{ attempt }],
    });
  const err = e instanceof Error ? e : new Error(String(e));
  return ApplicationFailure.create({
    message: err.message,
    type: err instanceof NonRetryableError ? err.type : err.name || 'Error',
    nonRetryable: err instanceof NonRetryableError,
    details: [{ attempt }],
  });
}

/** Heartbeats at a third of the heartbeat timeout; the worker throttles further. */
function startHeartbeats(ctx: Context, details: () => unknown): () => void {
  const timeout = ctx.info.heartbeatTimeoutMs;
  if (!timeout) return () => {};
  const t = setInterval(() => ctx.heartbeat(details()), Math.max(100, Math.floor(timeout / 3)));
  return () => clearInterval(t);
}

/** Sleeps, or rejects as soon as the signal aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new CancelledFailure('cancelled'));
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new CancelledFailure('cancelled'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
