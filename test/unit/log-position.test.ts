/**
 * Following a driver log, Strata may have to close the stream and read once more from the
 * last whole second (`sinceTime`) once the driver has ended: LogPosition decides which lines
 * of that second read are new, so none is lost or passed on twice.
 */
import { describe, expect, it } from 'vitest';
import { LogPosition } from '../../activities/spark-k8s/client.js';

const at = (t: string, text: string) => `2026-12-01T05:40:${t}Z ${text}`;

describe('LogPosition', () => {
  it('passes lines on with their timestamps removed and keeps the whole second to read on from', () => {
    const p = new LogPosition();
    expect(p.accept(at('01.5', 'a'))).toBe('a');
    expect(p.accept(at('02.000000001', 'b c'))).toBe('b c');
    expect(p.since).toBe('2026-12-01T05:40:02Z');
  });

  it('a second read from that second skips what was passed on, also lines sharing the last timestamp, and passes on the rest', () => {
    const p = new LogPosition();
    const first = [at('01.9', 'x'), at('02.25', 'a'), at('02.5', 'b'), at('02.5', 'c')];
    expect(first.map((l) => p.accept(l))).toEqual(['x', 'a', 'b', 'c']);
    p.rewind();
    // The second read starts at 05:40:02 and holds one more line of the same nanosecond, then later ones.
    const second = [at('02.25', 'a'), at('02.5', 'b'), at('02.5', 'c'), at('02.5', 'd'), at('03', 'e')];
    expect(second.map((l) => p.accept(l)).filter((t) => t !== undefined)).toEqual(['d', 'e']);
  });

  it('compares times as numbers, not strings (the kubelet trims trailing zeros of the fraction)', () => {
    const p = new LogPosition();
    expect(p.accept(at('02.5', 'late'))).toBe('late');
    p.rewind();
    expect(p.accept(at('02.45', 'earlier'))).toBeUndefined();
    expect(p.accept(at('02.500000001', 'after'))).toBe('after');
  });

  it('a line without a timestamp is passed on as it is', () => {
    expect(new LogPosition().accept('no time here')).toBe('no time here');
  });
});
