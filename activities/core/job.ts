/**
 * The adapter for external-job activities (submit, poll, logs, cancel): errors a retry
 * cannot fix become non-retryable failures with their type; the rest retry. With a metastore
 * it also keeps the ledger of submitted jobs (store/external-jobs.ts) that the orphan sweeper
 * walks: a submit records the job and its owning workflow, a poll that sees it finish or a
 * cancel that returns marks it ended.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { z } from 'zod';
import { ENGINE_ACTIVITY_PREFIX, type ExternalEngine, type JobRef } from '../../schemas/external.js';
import { errorMessage } from '../../schemas/errors.js';
import type { Db } from '../../store/db.js';
import { markExternalJobEnded, recordExternalJob } from '../../store/external-jobs.js';
import { toFailure } from './task.js';

export interface JobLedgerDeps {
  /** The metastore: where submitted jobs are recorded for the orphan sweeper. */
  db?: Db;
}

type Fn = (...args: unknown[]) => Promise<unknown>;

/**
 * The same activities, each function wrapped (`wrap` returns undefined to keep one as it is).
 * A Proxy keeps the object's type without restating it: every field the worker reads is the
 * wrapped function (made once per name), every other value is the object's own.
 */
function wrapActivities<T extends object>(acts: T, wrap: (name: string, fn: Fn) => Fn | undefined): T {
  const made = new Map<string, Fn | undefined>();
  return new Proxy(acts, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof key !== 'string' || typeof value !== 'function') return value;
      if (!made.has(key)) {
        const call: Fn = async (...args) => {
          const r: unknown = await Reflect.apply(value, target, args);
          return r;
        };
        made.set(key, wrap(key, call));
      }
      return made.get(key) ?? value;
    },
  });
}

export function jobActivities<T extends object>(acts: T): T {
  return wrapActivities(acts, (_name, fn) => async (...args: unknown[]) => {
    try {
      return await fn(...args);
    } catch (e) {
      if (e instanceof CancelledFailure || e instanceof ApplicationFailure) throw e;
      throw toFailure(e, Context.current().info.attempt);
    }
  });
}

const SubmitInput = z.object({ run: z.object({ tenant: z.string() }) });
const JobRefShape = z.object({
  engine: z.enum(['spark-k8s', 'emr', 'airbyte']),
  name: z.string(),
  scope: z.string(),
  id: z.string().optional(),
  adopted: z.boolean(),
}) satisfies z.ZodType<JobRef>;
const JobStatusShape = z.object({ state: z.string(), terminal: z.boolean() });
const CancelResult = z.object({ result: z.string() });

/**
 * An engine's job activities (`{prefix}Submit`, `…Poll`, `…Logs`, `…Cancel`), adapted as above
 * and, with a metastore, keeping the ledger of the jobs they submit.
 */
export function engineJobActivities<T extends object>(ledger: { engine: ExternalEngine; db?: Db }, acts: T): T {
  const { db } = ledger;
  if (!db) return jobActivities(acts);
  const prefix = ENGINE_ACTIVITY_PREFIX[ledger.engine];
  const ledgered = wrapActivities(acts, (name, fn) => {
    const after = ledgerStep(db, name, prefix);
    return (
      after &&
      (async (...args: unknown[]) => {
        const result = await fn(...args);
        await after(args, result);
        return result;
      })
    );
  });
  return jobActivities(ledgered);
}

/** What the ledger does after an engine activity succeeded, by the activity's name. */
function ledgerStep(db: Db, name: string, prefix: string) {
  if (name === `${prefix}Submit`)
    // Recorded before the submit returns: a failed write fails the attempt, and the retry finds
    // the job by its name and records it then, so no job the workflow learns of goes unrecorded.
    return async (args: unknown[], ref: unknown) => {
      const info = Context.current().info;
      const owner = info.workflowExecution?.workflowId;
      if (!owner) return; // not called by a workflow: no owner whose end could orphan it
      const tenant = SubmitInput.parse(args[0]).run.tenant;
      await recordExternalJob(db, { ref: JobRefShape.parse(ref), tenant, owner, taskQueue: info.taskQueue });
    };
  const end = async (ref: JobRef, state: string) => {
    // Best effort: a row left open is settled by the sweeper once its owner has closed.
    try {
      await markExternalJobEnded(db, ref, state, Context.current().info.activityType);
    } catch (e) {
      Context.current().log.warn('external job ledger: could not mark a job ended', {
        job: ref.name,
        error: errorMessage(e),
      });
    }
  };
  if (name === `${prefix}Poll`)
    return async (args: unknown[], status: unknown) => {
      const s = JobStatusShape.parse(status);
      if (s.terminal) await end(JobRefShape.parse(args[0]), s.state);
    };
  if (name === `${prefix}Cancel`)
    return async (args: unknown[], r: unknown) => {
      await end(JobRefShape.parse(args[0]), `cancelled: ${CancelResult.parse(r).result}`);
    };
  return undefined;
}
