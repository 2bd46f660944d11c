/**
 * Generates a pair of CSV datasets with planted differences of every kind and the exact
 * truth about them: rows only on the left, only on the right, changed rows (with the
 * columns changed), duplicate keys, reordered rows, and awkward values (quoted fields
 * with delimiters and newlines, unicode). Seeded, so every run is the same.
 */
import { createWriteStream } from 'node:fs';
import { rng } from '../../examples/generate.js';

export { rng };

export const COLUMNS = ['id', 'name', 'city', 'amount', 'qty', 'status', 'note', 'ts'];
const NAMES = ['Ada', 'Bjørn', 'Zoë', 'Mónica', '李雷', "O'Brien", 'Smith, John', 'Quote "Q"', 'Line\nBreak', 'Émile'];
const CITIES = ['Paris', 'Zürich', 'São Paulo', 'Kraków', '東京', 'New York'];
const STATUS = ['new', 'paid', 'shipped', 'returned'];

export interface Truth {
  left: number;
  right: number;
  matched: number;
  changed: number;
  onlyLeft: number;
  onlyRight: number;
  columnMismatches: Record<string, number>;
  duplicateKeysLeft: number;
  duplicateRowsLeft: number;
  duplicateKeysRight: number;
  duplicateRowsRight: number;
}

/** The counts a reconciliation of the pair must report: what the generator knows it made. */
export const truthCounts = (t: Truth) => ({
  left: t.left,
  right: t.right,
  matched: t.matched,
  changed: t.changed,
  onlyLeft: t.onlyLeft,
  onlyRight: t.onlyRight,
});

export function csvField(v: string | null): string {
  if (v === null) return '';
  return /[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}
const line = (r: (string | null)[]) => r.map(csvField).join(',') + '\n';

export interface GenOptions {
  rows: number;
  seed?: number;
  /** Fraction of rows in each difference kind. */
  rate?: number;
  duplicates?: boolean;
  awkward?: boolean;
}

function baseRow(i: number, rand: () => number, awkward: boolean): string[] {
  return [
    String(i),
    awkward ? NAMES[Math.floor(rand() * NAMES.length)] : `name${i % 1000}`,
    awkward ? CITIES[Math.floor(rand() * CITIES.length)] : `city${i % 50}`,
    (Math.floor(rand() * 1_000_000) / 100).toFixed(2),
    String(Math.floor(rand() * 100)),
    STATUS[Math.floor(rand() * STATUS.length)],
    rand() < 0.1 ? '' : `n${Math.floor(rand() * 1e6)}`,
    `2026-01-${String(1 + (i % 28)).padStart(2, '0')}T00:00:00Z`,
  ];
}

/** Writes left.csv and right.csv and returns the truth. */
export async function generatePair(leftFile: string, rightFile: string, o: GenOptions): Promise<Truth> {
  const rand = rng(o.seed ?? 42);
  const rate = o.rate ?? 0.001;
  const truth: Truth = {
    left: 0,
    right: 0,
    matched: 0,
    changed: 0,
    onlyLeft: 0,
    onlyRight: 0,
    columnMismatches: {},
    duplicateKeysLeft: 0,
    duplicateRowsLeft: 0,
    duplicateKeysRight: 0,
    duplicateRowsRight: 0,
  };
  const L = createWriteStream(leftFile);
  const R = createWriteStream(rightFile);
  const w = async (s: ReturnType<typeof createWriteStream>, text: string) => {
    if (!s.write(text)) await new Promise<void>((r) => s.once('drain', () => r()));
  };
  await w(L, line(COLUMNS));
  await w(R, line(COLUMNS));
  // Right side rows are written in blocks shuffled against the left (reordering).
  let block: string[] = [];
  const flushBlock = async () => {
    for (let i = block.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [block[i], block[j]] = [block[j], block[i]];
    }
    await w(R, block.join(''));
    block = [];
  };
  let nextNew = o.rows;
  for (let i = 0; i < o.rows; i++) {
    const row = baseRow(i, rand, o.awkward ?? false);
    const x = rand();
    await w(L, line(row));
    truth.left++;
    if (x < rate) {
      truth.onlyLeft++; // missing on the right
    } else if (x < 2 * rate) {
      const changedRow = [...row];
      const col = 3 + Math.floor(rand() * 3); // amount, qty or status
      changedRow[col] =
        col === 3
          ? (Number(row[3]) + 1).toFixed(2)
          : col === 4
            ? String(Number(row[4]) + 1)
            : row[5] === 'new'
              ? 'paid'
              : 'new';
      truth.changed++;
      truth.columnMismatches[COLUMNS[col]] = (truth.columnMismatches[COLUMNS[col]] ?? 0) + 1;
      block.push(line(changedRow));
      truth.right++;
    } else if (x < 3 * rate) {
      block.push(line(row));
      truth.right++;
      truth.matched++;
      block.push(line(baseRow(nextNew++, rand, o.awkward ?? false))); // extra on the right
      truth.right++;
      truth.onlyRight++;
    } else if (o.duplicates && x < 4 * rate) {
      await w(L, line(row)); // the same key twice on the left
      truth.left++;
      truth.duplicateKeysLeft++;
      truth.duplicateRowsLeft++;
      truth.onlyLeft++;
      block.push(line(row));
      truth.right++;
      truth.matched++;
    } else if (o.duplicates && x < 5 * rate) {
      block.push(line(row), line(row)); // twice on the right
      truth.right += 2;
      truth.duplicateKeysRight++;
      truth.duplicateRowsRight++;
      truth.matched++;
      truth.onlyRight++;
    } else {
      block.push(line(row));
      truth.right++;
      truth.matched++;
    }
    if (block.length >= 1000) await flushBlock();
  }
  await flushBlock();
  await Promise.all([new Promise((r) => L.end(r)), new Promise((r) => R.end(r))]);
  return truth;
}
