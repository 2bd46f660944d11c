/**
 * Row readers for reconciliation: CSV through csv-parse (quotes, embedded delimiters and
 * newlines, BOM, encodings) and Parquet through DuckDB, both streamed, values as strings
 * (null for SQL NULL). Errors name the file and line.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { parse } from 'csv-parse';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { CsvOptions, DatasetRef } from '../../schemas/reconcile.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { normaliseLocation } from '../s3/location.js';
import { quoteIdent, quoteLiteral } from '../sql/quote.js';
import { CsvShapeError, fastCsvBatches, fastCsvRecords } from './fast-csv.js';

export type Row = (string | null)[];

export interface RowSource {
  file: string;
  header: string[];
  size: number;
  rows(): AsyncIterable<Row>;
  /** Bytes read so far (CSV), for progress. */
  bytesRead(): number;
  /**
   * Fast CSV only: records in batches, each as its raw line (fields joined by `delimiter`)
   * when it has no quote, else as a row; same checks as rows().
   */
  lines?(): AsyncIterable<(string | Row)[]>;
  delimiter?: string;
  /** Rows, when the file says so without being read (Parquet). */
  rowCount?: number;
  /** How the file is read, for engines that read it themselves (the DuckDB path). */
  format: 'csv' | 'parquet';
  csv?: CsvOptions;
}

/**
 * The local file an input names: a path inside the tenant's folder (`root`), or a file://
 * URI / absolute path inside it or one of the tenant's allowed file:// locations. Nothing
 * else: a spec cannot point a comparison at the worker's own files.
 */
export function resolveUri(uri: string, root: string, allowed: readonly string[] = []): string {
  const base = path.resolve(root);
  const inside = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);
  if (!uri.startsWith('file://') && !uri.startsWith('/')) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(uri))
      throw new NonRetryableError(
        `unsupported dataset URI "${uri}": use a path in your lake folder or a file:// URI`,
        'ConfigError',
      );
    const p = path.resolve(base, uri);
    if (!inside(p, base))
      throw new NonRetryableError(`"${uri}" is outside your lake folder: use a path inside it`, 'LocationError');
    return p;
  }
  const n = normaliseLocation(uri);
  if (!n.startsWith('file://'))
    throw new NonRetryableError(
      `unsupported dataset URI "${uri}": use a path in your lake folder or a file:// URI`,
      'ConfigError',
    );
  // Normalised locations are decoded paths behind "file://" (not re-encoded URIs).
  const p = n.slice('file://'.length);
  if (inside(p, base)) return p;
  for (const a of allowed) if (a.startsWith('file://') && inside(p, a.slice('file://'.length))) return p;
  throw new NonRetryableError(
    `"${uri}" is outside your lake folder and your allowed locations: use a path inside the lake, or ask the platform operator to allow the folder (STRATA_TENANT_LOCATIONS)`,
    'LocationError',
  );
}

export async function openSource(ref: DatasetRef, root: string, allowed: readonly string[] = []): Promise<RowSource> {
  const file = resolveUri(ref.uri, root, allowed);
  const st = await stat(file).catch(() => {
    throw new NonRetryableError(`dataset not found: ${ref.uri}`, 'NotFound');
  });
  const format = ref.format ?? (file.endsWith('.parquet') ? 'parquet' : 'csv');
  if (format === 'parquet') return openParquet(file, st.size);
  const csv: CsvOptions = { delimiter: ',', quote: '"', escape: '"', header: true, encoding: 'utf8', ...ref.csv };
  return { ...(await openCsv(file, st.size, csv)), format: 'csv', csv };
}

async function openCsv(file: string, size: number, o: CsvOptions): Promise<Omit<RowSource, 'format'>> {
  const fast =
    o.delimiter.length === 1 &&
    o.quote.length === 1 &&
    o.escape === o.quote &&
    (o.encoding === 'utf8' || o.encoding === 'utf-8');
  return fast ? openFastCsv(file, size, o) : openCsvParse(file, size, o);
}

async function openFastCsv(file: string, size: number, o: CsvOptions): Promise<Omit<RowSource, 'format'>> {
  let header: string[] = [];
  for await (const rec of fastCsvRecords(file, o.delimiter, o.quote)) {
    header = o.header ? rec : rec.map((_, i) => String(i + 1));
    break;
  }
  let read = 0;
  return {
    file,
    header,
    size,
    bytesRead: () => read,
    async *rows() {
      read = 0;
      let n = 0;
      const at = { line: 0 };
      try {
        for await (const rec of fastCsvRecords(file, o.delimiter, o.quote, (b) => (read += b), at)) {
          if (n++ === 0 && o.header) continue;
          if (rec.length !== header.length) throw ragged(file, at.line, header.length);
          yield rec;
        }
      } catch (e) {
        if (e instanceof CsvShapeError) throw new NonRetryableError(`${path.basename(file)}: ${e.message}`, 'BadInput');
        throw e;
      }
    },
    delimiter: o.delimiter,
    async *lines() {
      read = 0;
      let first = o.header;
      const d = o.delimiter;
      try {
        for await (const b of fastCsvBatches(file, d, o.quote, true, (n) => (read += n))) {
          for (let i = 0; i < b.records.length; i++) {
            const rec = b.records[i];
            let fields = rec.length;
            if (typeof rec === 'string') {
              fields = 1;
              for (let x = rec.indexOf(d); x >= 0; x = rec.indexOf(d, x + 1)) fields++;
            }
            if (fields !== header.length && !(first && i === 0)) throw ragged(file, b.lines[i], header.length);
          }
          if (first) {
            first = false;
            b.records.shift();
          }
          yield b.records;
        }
      } catch (e) {
        if (e instanceof CsvShapeError) throw new NonRetryableError(`${path.basename(file)}: ${e.message}`, 'BadInput');
        throw e;
      }
    },
  };
}

/** A record as csv-parse gives it (no `columns` option): an array of strings. */
function isStringRecord(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

const ragged = (file: string, line: number, width: number) =>
  new NonRetryableError(
    `${path.basename(file)}: line ${line}: row has a different number of columns than the header (${width})`,
    'BadInput',
  );

async function openCsvParse(file: string, size: number, o: CsvOptions): Promise<Omit<RowSource, 'format'>> {
  let read = 0;
  const stream = () => {
    const s = createReadStream(file, { highWaterMark: 1 << 20 });
    s.on('data', (b) => (read += b.length));
    return s.pipe(
      parse({
        delimiter: o.delimiter,
        quote: o.quote || false,
        escape: o.escape || undefined,
        encoding: o.encoding === 'utf-8' ? 'utf8' : o.encoding,
        bom: true,
        relax_column_count: false,
        skip_empty_lines: true,
        info: false,
      }),
    );
  };
  // Read the header (or the first row's width) once.
  let header: string[] = [];
  const first = stream();
  for await (const rec of first) {
    if (!isStringRecord(rec)) throw new Error(`${path.basename(file)}: the CSV parser gave a record that is not text`);
    header = o.header ? rec : rec.map((_, i) => String(i + 1));
    break;
  }
  first.destroy();
  read = 0;
  return {
    file,
    header,
    size,
    bytesRead: () => read,
    async *rows() {
      let line = 0;
      try {
        for await (const rec of stream()) {
          if (!isStringRecord(rec))
            throw new Error(`${path.basename(file)}: the CSV parser gave a record that is not text`);
          line++;
          if (line === 1 && o.header) continue;
          yield rec;
        }
      } catch (e) {
        const code = e instanceof Error && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
        if (e instanceof Error && code?.startsWith('CSV_'))
          throw new NonRetryableError(
            `${path.basename(file)}: ${code.startsWith('CSV_RECORD_INCONSISTENT') ? `line ${'lines' in e ? String(e.lines) : '?'}: row has a different number of columns than the header (${header.length})` : e.message}`,
            'BadInput',
          );
        throw e;
      }
    },
  };
}

async function openParquet(file: string, size: number): Promise<RowSource> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  const cols = (await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${quoteLiteral(file)})`))
    .getRows()
    .map((r) => String(r[0]));
  const rowCount = Number(
    (
      await conn.runAndReadAll(`SELECT sum(num_rows) FROM parquet_file_metadata(${quoteLiteral(file)})`)
    ).getRows()[0][0],
  );
  conn.closeSync();
  db.closeSync();
  let done = 0;
  return {
    file,
    format: 'parquet',
    header: cols,
    size,
    rowCount,
    bytesRead: () => done,
    async *rows() {
      const inst = await DuckDBInstance.create(':memory:');
      const c = await inst.connect();
      try {
        const select = cols.map((n) => `CAST(${quoteIdent(n)} AS VARCHAR)`).join(', ');
        const res = await c.stream(`SELECT ${select} FROM read_parquet(${quoteLiteral(file)})`);
        for (;;) {
          const chunk = await res.fetchChunk();
          if (!chunk || chunk.rowCount === 0) break;
          for (const r of chunk.getRows()) yield r.map((v) => (v === null ? null : String(v)));
        }
        done = size;
      } finally {
        c.closeSync();
        inst.closeSync();
      }
    },
  };
}
