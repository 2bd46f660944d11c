import { describe, expect, it } from 'vitest';
import type { RunState } from '../../schemas/run.js';
import { packState, unpackState } from '../../workflows/carry.js';

describe('carried run state', () => {
  const state: RunState = {
    runId: 'pipeline/t/p/k',
    workflowId: 'pipeline/t/p/k',
    pipelineId: 'p',
    tenant: 't',
    trigger: 'manual',
    logicalDate: '2026-01-02T00:00:00.000Z',
    status: 'running',
    startedAt: '2026-01-02T00:00:01.000Z',
    continuations: 2,
    tasks: {
      a: {
        status: 'success',
        attempts: 2,
        startedAt: '2026-01-02T00:00:01.000Z',
        endedAt: '2026-01-02T00:00:02.500Z',
        output: { rowCount: 3, location: 'x' },
      },
      b: {
        status: 'failed',
        attempts: 1,
        startedAt: '2026-01-02T00:00:03.000Z',
        endedAt: '2026-01-02T00:00:04.000Z',
        error: 'boom',
        errorType: 'SqlError',
      },
      c: { status: 'pending', attempts: 0 },
      d: { status: 'success', attempts: 0, reusedFrom: 'old', output: { rowCount: 1 } },
      e: { status: 'excluded', attempts: 0, endedAt: '2026-01-02T00:00:01.000Z' },
      f: {
        status: 'success',
        attempts: 1,
        startedAt: '2026-01-02T00:00:01.000Z',
        endedAt: '2026-01-02T00:00:01.000Z',
        output: {},
      },
    },
  };

  it('round-trips every task state exactly', () => {
    expect(unpackState(JSON.parse(JSON.stringify(packState(state))))).toEqual(state);
  });

  it('is much smaller than the object form at 10,000 tasks', () => {
    const big: RunState = { ...state, tasks: {} };
    for (let i = 0; i < 10_000; i++)
      big.tasks[`task_${i}`] = {
        status: 'success',
        attempts: 1,
        startedAt: '2026-01-02T00:00:01.000Z',
        endedAt: '2026-01-02T00:00:02.000Z',
        output: {},
      };
    const packed = JSON.stringify(packState(big)).length;
    expect(packed).toBeLessThan(JSON.stringify(big).length / 2);
    expect(packed).toBeLessThan(600_000);
  });
});
