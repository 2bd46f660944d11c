/**
 * CI reads the runner's last line, "tests: N passed, N failed". A test file that fails without a
 * failing test (it did not load, or a hook threw) must count as a failure there, not vanish.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { TestModule } from 'vitest/node';
import SummaryReporter from '../harness/summary-reporter.js';

type State = 'passed' | 'failed' | 'skipped';
/** A test module as the reporter reads it: its own state and its tests' results. */
const mod = (state: State, tests: State[]) =>
  ({
    state: () => state,
    children: { allTests: () => tests.map((s) => ({ result: () => ({ state: s }) }))[Symbol.iterator]() },
  }) as unknown as TestModule;

function summary(modules: TestModule[], errors: unknown[] = []): string {
  const out: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  new SummaryReporter().onTestRunEnd(modules, errors);
  vi.restoreAllMocks();
  return out.join('').trim();
}

afterEach(() => vi.restoreAllMocks());

describe('the summary line', () => {
  it('counts passed, failed and skipped tests', () => {
    expect(summary([mod('passed', ['passed', 'passed', 'skipped']), mod('failed', ['passed', 'failed'])])).toBe(
      'tests: 3 passed, 1 failed, 1 skipped',
    );
  });

  it('counts a file that failed without a failing test (it did not load) as a failure', () => {
    expect(summary([mod('passed', ['passed']), mod('failed', []), mod('failed', [])])).toBe(
      'tests: 1 passed, 2 failed',
    );
  });

  it('counts an error outside any test when nothing else failed', () => {
    expect(summary([mod('passed', ['passed'])], [new Error('unhandled')])).toBe('tests: 1 passed, 1 failed');
  });
});
