/**
 * The full lists of differences as a dataset (`differences: layer.name`): every changed
 * key with each differing column's two values, every one-sided row, every duplicated key.
 * During the comparison each compared partition writes its own JSON-lines file (so a
 * resumed comparison keeps what it had); at the end DuckDB turns them into one Parquet
 * version, committed to the tenant's catalog like any task output — so `datasets show`,
 * previews and the query API reach it (and `Accept: text/csv` downloads it).
 *
 * Columns: kind (changed, only_left, only_right, duplicate_left, duplicate_right), key
 * (JSON object of the key columns), column, left_value, right_value (changed), row (JSON
 * object of the row: one-sided), row_count (duplicated: rows of the key on that side).
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseDatasetName, type DatasetId, type DatasetVersionRef } from '../../schemas/lake.js';
import type { DatasetVersion, Producer } from '../../store/catalog.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { writeVersion, type LakeDeps } from '../lake/engine.js';
import { forTenant } from '../lake/open.js';
import { quoteLiteral } from '../sql/quote.js';
import type { DiffRecord } from './compare.js';

export interface DiffWriter {
  write: (d: DiffRecord) => void;
  close: () => Promise<void>;
}

/** One difference as a line of the lists the dataset is published from. */
export function diffLine(d: DiffRecord): string {
  return (
    JSON.stringify({
      kind: d.kind,
      key: JSON.stringify(d.key),
      column: d.column ?? null,
      left_value: d.left ?? null,
      right_value: d.right ?? null,
      row: d.row ? JSON.stringify(d.row) : null,
      row_count: d.count ?? null,
    }) + '\n'
  );
}

/** A writer for partition `p`'s differences: kept in memory (a partition is small) and written at close. */
export function diffWriter(dir: string, p: number): DiffWriter {
  const lines: string[] = [];
  return {
    write: (d) => {
      lines.push(diffLine(d));
    },
    close: async () => {
      await mkdir(dir, { recursive: true });
      const file = path.join(dir, `diff-${p}.jsonl`);
      const out = createWriteStream(`${file}.part`);
      for (let i = 0; i < lines.length; i += 1000) {
        if (!out.write(lines.slice(i, i + 1000).join(''))) await new Promise<void>((r) => out.once('drain', () => r()));
      }
      await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
      const { rename } = await import('node:fs/promises');
      await rename(`${file}.part`, file);
      lines.length = 0;
    },
  };
}

/** The dataset a `differences` option names (layer.name), or a message saying what to write. */
export function differencesId(name: string, namespace = 'default'): DatasetId {
  const d = parseDatasetName(name);
  if (!d)
    throw new NonRetryableError(
      `differences: "${name}" is not a dataset name: write layer.name (bronze, silver or gold, then a lower-case name)`,
      'BadInput',
    );
  return { ...d, namespace };
}

const COLUMNS = `{'kind': 'VARCHAR', 'key': 'VARCHAR', 'column': 'VARCHAR', 'left_value': 'VARCHAR', 'right_value': 'VARCHAR', 'row': 'VARCHAR', 'row_count': 'BIGINT'}`;

/** Writes the lists in `dir` as a version of `id` and commits it (once per run and task). */
export async function publishDifferences(
  lake: LakeDeps,
  producer: Producer,
  id: DatasetId,
  dir: string,
  attemptTag: string,
  inputs: DatasetVersionRef[] = [],
): Promise<DatasetVersion> {
  const scoped = forTenant(lake, producer.tenant);
  const done = await scoped.catalog.findCommit(producer, id);
  if (done) return done;
  const files = existsSync(dir)
    ? (await readdir(dir)).filter((f) => /^diff-\d+\.jsonl$/.test(f)).map((f) => path.join(dir, f))
    : [];
  const source = files.length
    ? `read_json([${files.map(quoteLiteral).join(', ')}], format = 'newline_delimited', columns = ${COLUMNS})`
    : `(SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS key, NULL::VARCHAR AS "column", NULL::VARCHAR AS left_value, NULL::VARCHAR AS right_value, NULL::VARCHAR AS "row", NULL::BIGINT AS row_count WHERE false)`;
  const inst = await DuckDBInstance.create(':memory:', {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
  });
  const conn = await inst.connect();
  try {
    const tmp = path.join(dir, 'duck-tmp');
    await mkdir(tmp, { recursive: true });
    await conn.run(`SET temp_directory = ${quoteLiteral(tmp)}`);
    await conn.run(`SET memory_limit = '128MB'`);
    const w = await writeVersion(scoped, {
      conn,
      id,
      producer,
      select: `SELECT kind, key, "column", left_value, right_value, "row", row_count FROM ${source} ORDER BY kind, key, "column"`,
      attemptTag,
      inputs,
    });
    const [v] = await scoped.catalog.commit(producer, [{ ...w, inputs }]);
    return v;
  } finally {
    conn.closeSync();
    inst.closeSync();
    await rm(dir, { recursive: true, force: true });
  }
}
