/**
 * DuckDB macro libraries: SQL text of `CREATE MACRO` / `CREATE MACRO … AS TABLE` statements
 * (`FUNCTION` is DuckDB's synonym) and nothing else. Checked with DuckDB itself: each
 * statement must parse as a CREATE (DuckDB's statement type), and running it in a locked
 * sandbox must add only macros to the catalog — a table, view, schema, type, sequence or
 * secret names the statement and is refused. A task's libraries are registered the same
 * way inside the task's own locked sandbox before its SQL runs, so a macro body is bound by
 * the task's grant: a body that reads another tenant's files fails when it is called.
 */
import { StatementType, type DuckDBConnection } from '@duckdb/node-api';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { taskLibraryUses } from '../../schemas/external.js';
import { getLibraryVersion, libraryKey } from '../../store/libraries.js';
import { NonRetryableError, errorMessage } from '../../schemas/errors.js';
import type { LakeDeps } from '../lake/engine.js';
import { forTenant } from '../lake/open.js';
import { openDuck, statementTypeName } from './sandbox.js';

export interface Macro {
  name: string;
  /** `macro` (a scalar macro) or `table_macro` (`AS TABLE`). */
  type: 'macro' | 'table_macro';
}

export class MacroLibraryError extends Error {
  override name = 'MacroLibraryError';
}

async function objectCount(conn: DuckDBConnection): Promise<number> {
  const q = `SELECT (SELECT count(*) FROM duckdb_tables()) + (SELECT count(*) FROM duckdb_views() WHERE NOT internal)
    + (SELECT count(*) FROM duckdb_sequences()) + (SELECT count(*) FROM duckdb_indexes())
    + (SELECT count(*) FROM duckdb_types() WHERE NOT internal) + (SELECT count(*) FROM duckdb_schemas() WHERE NOT internal) AS n`;
  return Number((await conn.runAndReadAll(q)).getRows()[0][0]);
}

async function userFunctions(conn: DuckDBConnection): Promise<Map<string, string>> {
  const rows = (
    await conn.runAndReadAll(
      `SELECT DISTINCT function_name, function_type FROM duckdb_functions() WHERE NOT internal AND schema_name <> 'pg_catalog'`,
    )
  ).getRows();
  return new Map(rows.map((r) => [`${String(r[0])}\u0000${String(r[1])}`, String(r[1])]));
}

const isMacroType = (t: string): t is Macro['type'] => t === 'macro' || t === 'table_macro';

/**
 * Runs a macro library's statements one by one on `conn`, refusing (MacroLibraryError) any
 * statement that is not a CREATE or that creates anything but macros. Answers the macros made.
 */
export async function applyMacroLibrary(conn: DuckDBConnection, sql: string): Promise<Macro[]> {
  let extracted;
  try {
    extracted = await conn.extractStatements(sql);
  } catch (e) {
    throw new MacroLibraryError(
      `the SQL does not parse: ${errorMessage(e).replace(/^Failed to extract statements: /, '')}`,
    );
  }
  if (extracted.count === 0)
    throw new MacroLibraryError('the library holds no statement: write CREATE MACRO statements');
  const made: Macro[] = [];
  for (let i = 0; i < extracted.count; i++) {
    const at = `statement ${i + 1}`;
    let st;
    try {
      st = await extracted.prepare(i);
    } catch (e) {
      throw new MacroLibraryError(`${at}: ${errorMessage(e)}`);
    }
    if (st.statementType !== StatementType.CREATE)
      throw new MacroLibraryError(
        `${at} is a ${statementTypeName(st.statementType)}: a DuckDB macro library holds only CREATE MACRO statements`,
      );
    const [objects, fns] = [await objectCount(conn), await userFunctions(conn)];
    try {
      await st.run();
    } catch (e) {
      throw new MacroLibraryError(`${at}: ${errorMessage(e)}`);
    }
    const after = await userFunctions(conn);
    const added = [...after].filter(([k]) => !fns.has(k));
    if ((await objectCount(conn)) !== objects || added.some(([, t]) => !isMacroType(t)))
      throw new MacroLibraryError(
        `${at} creates something other than a macro (a table, view, schema, type or sequence): a DuckDB macro library holds only CREATE MACRO statements`,
      );
    // Anything else a CREATE can make in memory (a secret, a second definition of a macro) is refused too.
    if (!added.length)
      throw new MacroLibraryError(
        `${at} creates no new macro: a DuckDB macro library holds only CREATE MACRO statements, each defining its own name`,
      );
    for (const [k, t] of added) if (isMacroType(t)) made.push({ name: k.split('\u0000')[0], type: t });
  }
  return made;
}

/** Checks an uploaded library in a sandbox that can reach no file at all; answers its macros. */
export async function checkMacroLibrary(sql: string): Promise<Macro[]> {
  const duck = await openDuck();
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'strata-macros-'));
  try {
    await duck.lock({ files: [], dirs: [], scratch });
    return await applyMacroLibrary(duck.conn, sql);
  } finally {
    await duck.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Registers a task's macro libraries in its (already locked) sandbox; a refusal fails the task for good. */
export async function registerMacros(
  conn: DuckDBConnection,
  libraries: { name: string; version: string; sql: string }[],
) {
  for (const l of libraries)
    try {
      await applyMacroLibrary(conn, l.sql);
    } catch (e) {
      throw new NonRetryableError(`library "${l.name}" ${l.version}: ${errorMessage(e)}`, 'SqlError');
    }
}

/**
 * The DuckDB macro libraries a task pins, read for its run: each version from the metastore
 * (the tenant's own), its SQL from the tenant's lake, checked against the recorded SHA-256.
 */
export async function taskMacroLibraries(
  lake: LakeDeps | undefined,
  tenant: string,
  task: Record<string, unknown> & { id: string },
): Promise<{ name: string; version: string; sql: string }[]> {
  const uses = taskLibraryUses(task);
  if (!uses.length) return [];
  if (!lake)
    throw new NonRetryableError(
      `task ${task.id} uses libraries, but this worker has no metastore: set DATABASE_URL and STRATA_LAKE_ROOT on the worker`,
      'ConfigError',
    );
  const store = forTenant(lake, tenant).store;
  const out: { name: string; version: string; sql: string }[] = [];
  for (const [i, use] of uses.entries()) {
    const v = await getLibraryVersion(lake.catalog.db, tenant, use.name, String(use.version));
    if (!v || v.kind !== 'duckdb')
      throw new NonRetryableError(
        `task ${task.id}: libraries[${i}]: no DuckDB macro library "${use.name}" version "${use.version}" (deleted since the pipeline was registered?): upload it again or pin another version`,
        'LibraryNotFound',
      );
    const bytes = await store.getBytes(libraryKey(v.name, v.version, v.file));
    if (createHash('sha256').update(bytes).digest('hex') !== v.sha256)
      throw new NonRetryableError(
        `task ${task.id}: libraries[${i}]: library "${v.name}" ${v.version} in the lake does not match its SHA-256: upload it as a new version`,
        'LibraryNotFound',
      );
    out.push({ name: v.name, version: v.version, sql: bytes.toString('utf8') });
  }
  return out;
}
