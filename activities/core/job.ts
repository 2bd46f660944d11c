/**
 * The adapter for external-job activities (submit, poll, logs, cancel): errors a retry
 * cannot fix become non-retryable failures with their type; the rest retry.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { toFailure } from './task.js';

export function jobActivities<T extends object>(acts: T): T {
  const out: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const [name, fn] of Object.entries(acts) as [string, (...args: unknown[]) => Promise<unknown>][]) {
    out[name] = async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (e) {
        if (e instanceof CancelledFailure || e instanceof ApplicationFailure) throw e;
        throw toFailure(e, Context.current().info.attempt);
      }
    };
  }
  return out as T;
}
