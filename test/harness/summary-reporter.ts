/**
 * Prints one plain closing line, "tests: N passed, N failed, N skipped", for CI logs. A test file
 * that failed with no failing test (it did not load, or a hook threw) counts as one failure.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, errors: ReadonlyArray<unknown>) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of modules) {
      let failedHere = 0;
      for (const t of m.children.allTests()) {
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed') failedHere++;
        else skipped++;
      }
      // A file that failed without a failing test (it did not load, or a hook threw) is a failure too.
      failed += failedHere || (m.state() === 'failed' ? 1 : 0);
    }
    failed += errors.length && !failed ? 1 : 0;
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  }
}
