/**
 * A fast RFC 4180 reader for the common case (one-character delimiter, quotes escaped
 * by doubling, UTF-8). Lines without a quote are split directly; a line with a quote goes
 * through a small state machine that handles embedded delimiters, doubled quotes and
 * newlines. It exists because csv-parse reads ~8 MB/s here, which dominated large
 * reconciliations; test/unit/fast-csv.test.ts checks it record for record against
 * csv-parse on random awkward input. Other dialects still use csv-parse.
 */
import { createReadStream } from 'node:fs';

export class CsvShapeError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

/** Records parsed from one chunk of the file, with the physical line each ends on. */
export interface CsvBatch {
  records: (string | string[])[];
  lines: number[];
}

/** `at.line` is set to the physical line each yielded record ends on. */
export async function* fastCsvRecords(
  file: string,
  delimiter: string,
  quote: string,
  onBytes?: (n: number) => void,
  at: { line: number } = { line: 0 },
): AsyncGenerator<string[]> {
  for await (const b of fastCsvBatches(file, delimiter, quote, false, onBytes))
    for (let i = 0; i < b.records.length; i++) {
      at.line = b.lines[i];
      const r = b.records[i];
      // Not raw: every record comes split (a raw line would be a quote-free record).
      yield typeof r === 'string' ? r.split(delimiter) : r;
    }
}

/**
 * Records in batches, one per chunk read (a promise per chunk, not per record). With
 * `raw`, a record without any quote comes as its raw line (fields joined by the
 * delimiter, line end removed) instead of split: callers that need only a few fields,
 * or pass the record on, skip the split.
 */
export async function* fastCsvBatches(
  file: string,
  delimiter: string,
  quote: string,
  raw: boolean,
  onBytes?: (n: number) => void,
): AsyncGenerator<CsvBatch> {
  let buf = '';
  let line = 1;
  let first = true;
  for await (const data of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const chunk = typeof data === 'string' ? data : String(data);
    onBytes?.(Buffer.byteLength(chunk));
    buf += chunk;
    if (first) {
      if (buf.charCodeAt(0) === 0xfeff) buf = buf.slice(1);
      first = false;
    }
    const batch: CsvBatch = { records: [], lines: [] };
    let pos = 0;
    for (;;) {
      const r = parseRecord(buf, pos, delimiter, quote, false, raw);
      if (!r) break;
      line += r.newlines;
      pos = r.next;
      if (r.fields) {
        batch.records.push(r.fields);
        batch.lines.push(line - 1);
      }
    }
    buf = buf.slice(pos);
    if (batch.records.length) yield batch;
  }
  const batch: CsvBatch = { records: [], lines: [] };
  let pos = 0;
  while (pos < buf.length) {
    const r = parseRecord(buf, pos, delimiter, quote, true, raw);
    if (!r) {
      if (batch.records.length) yield batch; // the records before the broken one, then the error
      throw new CsvShapeError(`line ${line}: a quoted field is not closed`, line);
    }
    line += r.newlines;
    pos = r.next;
    if (r.fields) {
      batch.records.push(r.fields);
      batch.lines.push(line - 1);
    }
  }
  if (batch.records.length) yield batch;
}

interface Parsed {
  fields: string[] | string | null; // null: an empty line; a string: the raw line (raw mode, no quote)
  next: number;
  newlines: number;
}

function parseRecord(buf: string, start: number, d: string, q: string, final: boolean, raw = false): Parsed | null {
  let e = buf.indexOf('\n', start);
  if (e < 0) {
    if (!final) return null;
    e = buf.length;
  }
  const end = e > start && buf.charCodeAt(e - 1) === 13 ? e - 1 : e;
  const text = buf.slice(start, end); // look for a quote in this line only
  if (text.indexOf(q) < 0) {
    if (end === start) return { fields: null, next: e + 1, newlines: 1 };
    return { fields: raw ? text : text.split(d), next: e + 1, newlines: 1 };
  }
  // Slow path: a quote somewhere in this record.
  const fields: string[] = [];
  let i = start;
  let newlines = 0;
  for (;;) {
    if (buf[i] === q) {
      let val = '';
      let j = i + 1;
      for (;;) {
        const k = buf.indexOf(q, j);
        if (k < 0) return final ? null : null;
        val += buf.slice(j, k);
        if (buf[k + 1] === q) {
          val += q;
          j = k + 2;
          continue;
        }
        i = k + 1;
        break;
      }
      for (let x = 0; x < val.length; x++) if (val.charCodeAt(x) === 10) newlines++;
      // After a closing quote: a delimiter, the end of the record, or (lenient) more text.
      let tail = '';
      while (i < buf.length && buf[i] !== d && buf[i] !== '\n' && !(buf[i] === '\r' && buf[i + 1] === '\n'))
        tail += buf[i++];
      fields.push(val + tail);
    } else {
      let k = i;
      while (k < buf.length && buf[k] !== d && buf[k] !== '\n' && !(buf[k] === '\r' && buf[k + 1] === '\n')) k++;
      fields.push(buf.slice(i, k));
      i = k;
    }
    if (i >= buf.length) {
      if (!final) return null;
      return { fields, next: i, newlines: newlines + 1 };
    }
    if (buf[i] === d) {
      i++;
      continue;
    }
    // end of record
    if (buf[i] === '\r') i++;
    return { fields, next: i + 1, newlines: newlines + 1 };
  }
}
