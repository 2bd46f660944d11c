/**
 * A task's failure as the run reads it: the activity adapter re-wraps what a task threw with
 * its attempt, keeping the failure's details and cause; describeFailure unwraps it again.
 */
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { toFailure } from '../../activities/core/task.js';
import { NonRetryableError } from '../../schemas/errors.js';

describe('re-wrapped task failures', () => {
  it('keep an application failure’s type, details (merged with the attempt) and cause', () => {
    const cause = ApplicationFailure.create({ message: 'the step failed', type: 'StepFailed' });
    const thrown = ApplicationFailure.create({
      message: 'job failed',
      type: 'JobFailed',
      nonRetryable: true,
      details: [{ output: { states: ['RUNNING', 'FAILED'] } }, 'second detail'],
      cause,
    });
    const f = toFailure(thrown, 3);
    expect(f).toMatchObject({ message: 'job failed', type: 'JobFailed', nonRetryable: true });
    expect(f.details).toEqual([{ output: { states: ['RUNNING', 'FAILED'] }, attempt: 3 }, 'second detail']);
    expect(f.cause).toBe(cause);
  });

  it('put the attempt first when the first detail is not an object, keeping every detail', () => {
    const f = toFailure(ApplicationFailure.create({ message: 'x', details: ['text', 2] }), 2);
    expect(f.details).toEqual([{ attempt: 2 }, 'text', 2]);
  });

  it('turn a NonRetryableError into a non-retryable failure of its type, without the library cause', () => {
    const inner = new Error('connect ECONNREFUSED postgres://user:secret@db/x');
    const f = toFailure(new NonRetryableError('table missing', 'SqlError', { cause: inner }), 1);
    expect(f).toMatchObject({
      message: 'table missing',
      type: 'SqlError',
      nonRetryable: true,
      details: [{ attempt: 1 }],
    });
    expect(f.cause).toBeUndefined();
  });
});
