import { parse } from 'csv-parse/sync';
import fc from 'fast-check';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fastCsvRecords } from '../../activities/reconcile/fast-csv.js';
import { tempDir } from '../harness/tmp.js';

async function readAll(file: string, d = ',', q = '"') {
  const out: string[][] = [];
  for await (const r of fastCsvRecords(file, d, q)) out.push(r);
  return out;
}

const field = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom('', 'a,b', 'say "hi"', 'two\nlines', 'crlf\r\nin', '東京', 'Zoë', ' spaced ', '""', ','),
);
const quoteIfNeeded = (v: string) => (/[",\r\n]/.test(v) || v === '' ? `"${v.replaceAll('"', '""')}"` : v);

describe('fast CSV reader', () => {
  it('reads exactly what csv-parse reads, record for record, on random awkward input', async () => {
    const dir = await tempDir('strata-csv-');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(field, { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 40 }),
        fc.constantFrom('\n', '\r\n'),
        fc.boolean(),
        async (rows, eol, trailing) => {
          const text = rows.map((r) => r.map(quoteIfNeeded).join(',')).join(eol) + (trailing ? eol : '');
          const file = path.join(dir, `f${n++}.csv`);
          await writeFile(file, text);
          const expected = parse(text, { bom: true, skip_empty_lines: true, relax_column_count: true });
          expect(await readAll(file)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('reads records that span read chunks, a BOM, and other delimiters', async () => {
    const dir = await tempDir('strata-csv-');
    const big =
      '\ufeffid;text\n' +
      Array.from({ length: 50_000 }, (_, i) => `${i};"row ${i}; with ""quotes""\nand a newline"`).join('\n') +
      '\n';
    const file = path.join(dir, 'big.csv');
    await writeFile(file, big);
    const rows = await readAll(file, ';');
    expect(rows).toEqual(parse(big, { bom: true, delimiter: ';' }));
    expect(rows[0]).toEqual(['id', 'text']);
    expect(rows).toHaveLength(50_001);
  });

  it('rejects an unclosed quote', async () => {
    const dir = await tempDir('strata-csv-');
    const file = path.join(dir, 'bad.csv');
    await writeFile(file, 'a,b\n1,"open\n');
    await expect(readAll(file)).rejects.toThrow(/quoted field is not closed/);
  });
});
