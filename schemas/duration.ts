import { z } from 'zod';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** A duration as written in specs: milliseconds as a number, or "500ms", "30s", "5m", "2h", "1d". */
export const Duration = z.union([
  z.number().int().nonnegative(),
  z
    .string()
    .regex(DURATION_RE, 'write a duration like "500ms", "30s", "5m", "2h" or "1d", or a number of milliseconds'),
]);
export type Duration = z.infer<typeof Duration>;

export function toMs(d: Duration): number {
  if (typeof d === 'number') return d;
  const m = DURATION_RE.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
}
