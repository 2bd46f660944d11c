/**
 * ingest.file: landing files (CSV, JSON lines, Parquet) into a bronze dataset with a
 * declared schema. Everything is read as text first, then each column is cast with
 * TRY_CAST; a row whose value does not parse, or is missing where the column is not
 * nullable, goes to the quarantine dataset with the reason(s) and its source file and line.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { ColumnDecl } from '../../schemas/lake.js';
import { NonRetryableError } from '../../schemas/errors.js';
import type { ObjectStore } from '../s3/client.js';
import { quoteLiteral } from '../sql/quote.js';
import { ident } from '../quality/checks.js';

const SQL_TYPES: Record<string, string> = {
  string: 'VARCHAR',
  int: 'INTEGER',
  bigint: 'BIGINT',
  double: 'DOUBLE',
  decimal: 'DECIMAL',
  boolean: 'BOOLEAN',
  date: 'DATE',
  timestamp: 'TIMESTAMP',
};

export function sqlType(d: ColumnDecl): { sql: string; type: string; nullable: boolean } {
  const o = typeof d === 'string' ? { type: d, nullable: true } : d;
  const sql =
    o.type === 'decimal'
      ? `DECIMAL(${('precision' in o && o.precision) || 18}, ${('scale' in o && o.scale) ?? 2})`
      : SQL_TYPES[o.type];
  return { sql, type: o.type, nullable: o.nullable ?? true };
}

/** Lists the landing files a source names: a key, a prefix ending in "/", or a glob. */
export async function landingFiles(store: ObjectStore, source: string): Promise<string[]> {
  let keys: string[];
  if (source.includes('*')) {
    const prefix = source.slice(0, source.indexOf('*'));
    const re = new RegExp(
      `^${source
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*')}$`,
    );
    keys = (await store.list(prefix)).map((o) => o.key).filter((k) => re.test(k));
  } else if (source.endsWith('/')) {
    keys = (await store.list(source)).map((o) => o.key);
  } else {
    keys = (await store.head(source)) ? [source] : [];
  }
  // Markers (_SUCCESS) and hidden files are not data.
  keys = keys.filter((k) => !/(^|\/)[_.][^/]*$/.test(k));
  if (!keys.length)
    throw new NonRetryableError(
      `no landing files at ${store.uri(source)}: check "source" (a key, a prefix ending in "/", or a glob like landing/orders/*.csv)`,
      'SourceError',
    );
  return keys;
}

/** Stages raw text rows as table __raw(cols…, _source_file, _line, _json_ok). */
export async function stageRaw(
  conn: DuckDBConnection,
  files: string[],
  format: 'csv' | 'jsonl' | 'parquet',
  columns: string[],
  csv?: { delimiter?: string; header?: boolean },
): Promise<void> {
  const list = `[${files.map(quoteLiteral).join(', ')}]`;
  const colsVarchar = columns.map((c) => `CAST(${ident(c)} AS VARCHAR) AS ${ident(c)}`).join(', ');
  if (format === 'csv') {
    const header = csv?.header ?? true;
    const delim = csv?.delimiter ?? ',';
    // Sniffing every file (or union_by_name) costs seconds per hundred files; instead
    // read each file's header line and read files that share a header in one scan.
    const groups = new Map<string, { names: string[]; group: string[] }>();
    for (const f of files) {
      const names = header ? await headerOf(f, delim) : columns;
      const k = JSON.stringify(names);
      const g = groups.get(k);
      if (g) g.group.push(f);
      else groups.set(k, { names, group: [f] });
    }
    const parts: string[] = [];
    for (const { names, group } of groups.values()) {
      const missing = columns.filter((c) => !names.includes(c));
      if (missing.length)
        throw new NonRetryableError(
          `landing CSV ${path.basename(group[0])} has no column(s) ${missing.join(', ')} (it has ${names.join(', ')}): fix "columns" or the file`,
          'SchemaError',
        );
      const cols = `{${names.map((n, i) => `${quoteLiteral(n || `column${i}`)}: 'VARCHAR'`).join(', ')}}`;
      const src = `read_csv([${group.map(quoteLiteral).join(', ')}], columns = ${cols}, header = ${header}, auto_detect = false, delim = ${quoteLiteral(delim)}, quote = '"', escape = '"', null_padding = true, strict_mode = false, filename = true)`;
      parts.push(
        `SELECT ${colsVarchar}, filename AS _source_file, row_number() OVER (PARTITION BY filename) + ${header ? 1 : 0} AS _line, true AS _json_ok FROM ${src}`,
      );
    }
    await conn.run(`CREATE OR REPLACE TEMP TABLE __raw AS ${parts.join(' UNION ALL ')}`);
  } else if (format === 'jsonl') {
    // One text column per line, so a line that is not JSON is quarantined, not dropped.
    const src = `read_csv(${list}, columns = {'line': 'VARCHAR'}, delim = '\x01', quote = '', escape = '', header = false, filename = true, auto_detect = false)`;
    const extract = columns
      .map(
        (c) =>
          `CASE WHEN json_valid(line) THEN json_extract_string(line, ${quoteLiteral(`$.${c}`)}) END AS ${ident(c)}`,
      )
      .join(', ');
    await conn.run(
      `CREATE OR REPLACE TEMP TABLE __raw AS SELECT ${extract}, filename AS _source_file, row_number() OVER (PARTITION BY filename) AS _line, json_valid(line) AS _json_ok FROM ${src} WHERE trim(line) <> ''`,
    );
  } else {
    await conn.run(
      `CREATE OR REPLACE TEMP TABLE __raw AS SELECT ${colsVarchar}, filename AS _source_file, file_row_number + 1 AS _line, true AS _json_ok FROM read_parquet(${list}, filename = true, file_row_number = true, union_by_name = true)`,
    );
  }
}

/** SELECTs over __raw: typed good rows and quarantined rows with reasons. */
export function splitSql(
  columns: Record<string, ColumnDecl>,
  fileNames: Map<string, string>,
): { good: string; bad: string } {
  const fileExpr = `CASE _source_file ${[...fileNames].map(([local, key]) => `WHEN ${quoteLiteral(local)} THEN ${quoteLiteral(key)}`).join(' ')} ELSE _source_file END`;
  const reasons: string[] = [];
  const typed: string[] = [];
  for (const [name, decl] of Object.entries(columns)) {
    const t = sqlType(decl);
    const c = ident(name);
    const blank = `(${c} IS NULL OR trim(${c}) = '')`;
    const value = t.type === 'string' ? c : `NULLIF(trim(${c}), '')`;
    const integral =
      t.type === 'int' || t.type === 'bigint' ? ` OR NOT regexp_full_match(trim(${c}), '[-+]?[0-9]+')` : '';
    typed.push(`TRY_CAST(${value} AS ${t.sql}) AS ${c}`);
    reasons.push(
      `CASE WHEN ${blank} THEN ${t.nullable ? 'NULL' : quoteLiteral(`${name}: missing (not nullable)`)} WHEN TRY_CAST(${value} AS ${t.sql}) IS NULL${integral} THEN ${quoteLiteral(`${name}: `)} || ${c} || ${quoteLiteral(` is not a valid ${t.type}`)} END`,
    );
  }
  const reason = `CASE WHEN NOT _json_ok THEN 'line is not valid JSON' ELSE NULLIF(concat_ws('; ', ${reasons.join(', ')}), '') END`;
  const staged = `(SELECT *, ${reason} AS _reason FROM __raw)`;
  return {
    good: `SELECT ${typed.join(', ')}, ${fileExpr} AS _source_file FROM ${staged} WHERE _reason IS NULL`,
    bad: `SELECT ${Object.keys(columns).map(ident).join(', ')}, _reason, ${fileExpr} AS _source_file, _line FROM ${staged} WHERE _reason IS NOT NULL`,
  };
}

/** The header line of a CSV file, split on the delimiter (quotes stripped). */
async function headerOf(file: string, delim: string): Promise<string[]> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf
      .subarray(0, bytesRead)
      .toString('utf8')
      .replace(/^\uFEFF/, '');
    const line = text.split(/\r?\n/, 1)[0] ?? '';
    return line.split(delim).map((h) => h.trim().replace(/^"(.*)"$/, '$1'));
  } finally {
    await fh.close();
  }
}
