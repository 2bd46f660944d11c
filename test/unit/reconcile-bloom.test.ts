/**
 * method: bloom against the truth over many seeded datasets: every difference it reports
 * is real, and the share it misses is the filters' false-positive rate — measured, and held
 * to the declared rate within a statistical bound (deterministic seeds, so the figures are
 * the same on every run).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../../activities/reconcile/client.js';
import { ReconcileOptions, type ReconcileResult } from '../../schemas/reconcile.js';
import { generatePair, type Truth } from '../fakes/reconcile-data.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'strata-bloom-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const run = (l: string, r: string, o: Partial<ReconcileOptions>) =>
  reconcile({ uri: l }, { uri: r }, ReconcileOptions.parse(o), {
    lakeRoot: dir,
    workDir: path.join(dir, `work-${Math.random()}`),
  });

describe('reconcile method bloom', () => {
  for (const declared of [0.01, 0.05])
    it(`misses differences at no more than the declared rate ${declared} (12 seeds)`, async () => {
      let real = 0;
      let missed = 0;
      let expected = 0;
      let rates = 0;
      for (let seed = 1; seed <= 12; seed++) {
        const l = path.join(dir, `b${seed}-l.csv`);
        const r = path.join(dir, `b${seed}-r.csv`);
        // Many differences (about 45% of rows), so the misses are counted in thousands.
        const t: Truth = await generatePair(l, r, { rows: 20_000, rate: 0.15, seed, awkward: seed % 2 === 0 });
        const b: ReconcileResult = await run(l, r, { key: ['id'], method: 'bloom', falsePositiveRate: declared });
        expect(b.method).toBe('bloom');
        expect(b.exact).toBe(false);
        expect(b.counts.left).toBe(t.left);
        expect(b.counts.right).toBe(t.right);
        // What it reports is real: never more differences on a side than there are.
        expect(b.counts.changed + b.counts.onlyLeft).toBeLessThanOrEqual(t.changed + t.onlyLeft);
        expect(b.counts.onlyRight).toBeLessThanOrEqual(t.onlyRight);
        const truthDiff = t.changed + t.onlyLeft + t.onlyRight;
        real += truthDiff;
        missed += truthDiff - (b.counts.changed + b.counts.onlyLeft + b.counts.onlyRight);
        expected += b.approximate!.expectedMissed;
        rates += b.approximate!.falsePositiveRate;
        expect(b.approximate!.falsePositiveRate).toBeLessThanOrEqual(declared);
        expect(b.approximate!.declaredRate).toBe(declared);
        for (const s of b.samples.onlyLeft) expect(Number(s.key.id)).toBeLessThan(20_000); // a real left row
      }
      const measured = missed / real;
      // Each real difference is missed independently at (at most) the declared rate: a
      // binomial count; 4 standard deviations above it fails (p < 1e-4).
      const sd = Math.sqrt((declared * (1 - declared)) / real);
      console.log(
        `[bloom] declared ${declared}: ${real} real differences, ${missed} missed (rate ${measured.toFixed(5)}),` +
          ` expected missed ${expected.toFixed(1)}, filters' mean rate ${(rates / 12).toFixed(5)}`,
      );
      expect(real).toBeGreaterThan(50_000);
      expect(measured).toBeLessThanOrEqual(declared + 4 * sd);
      // …and it is a filter, not an exact pass: it does miss, at about the rate it states.
      expect(missed).toBeGreaterThan(0);
      expect(Math.abs(missed - expected)).toBeLessThanOrEqual(4 * Math.sqrt(expected) + 5);
    });

  it('auto is exact, bloom refuses tolerance, and an identical pair has no differences', async () => {
    const l = path.join(dir, 'same-l.csv');
    const r = path.join(dir, 'same-r.csv');
    const t = await generatePair(l, r, { rows: 5_000, rate: 0.01, seed: 3 });
    const auto = await run(l, r, { key: ['id'] });
    expect(auto).toMatchObject({ exact: true, counts: { changed: t.changed } });
    expect(auto.approximate).toBeUndefined();
    await expect(run(l, r, { key: ['id'], method: 'bloom', tolerance: 0.01 })).rejects.toThrow(/remove tolerance/);
    const same = await run(l, l, { key: ['id'], method: 'bloom' });
    expect(same.counts).toMatchObject({ matched: t.left, changed: 0, onlyLeft: 0, onlyRight: 0 });
    expect(same.approximate!.expectedMissed).toBe(0);
    // With trim, rows go through Strata's own readers and are hashed in JavaScript: same guarantees.
    const trimmed = await run(l, r, { key: ['id'], method: 'bloom', trim: true });
    expect(trimmed.approximate!.notComputed).toContain('samples.changed');
    expect(trimmed.counts.changed + trimmed.counts.onlyLeft).toBeLessThanOrEqual(t.changed + t.onlyLeft);
    expect(trimmed.counts.changed + trimmed.counts.onlyLeft).toBeGreaterThan(0.9 * (t.changed + t.onlyLeft));
    // Whole rows as keys (no key): only-left and only-right, never changed.
    const whole = await run(l, r, { method: 'bloom' });
    expect(whole.counts.changed).toBe(0);
    expect(whole.counts.onlyLeft).toBeLessThanOrEqual(t.changed + t.onlyLeft);
  });
});
