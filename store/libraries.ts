/**
 * UDF libraries in the metastore: immutable versions (their bytes live in the tenant's lake
 * under `libraries/{name}/{version}/{file}`), the functions each declares, and which
 * registered pipelines pin them.
 */
import type { PipelineSpec, Problem } from '../schemas/pipeline.js';
import type { LibraryUse } from '../schemas/external.js';
import type { Db } from './db.js';

export type LibraryKind = 'jar' | 'python' | 'duckdb';

export interface LibraryFunction {
  name: string;
  class: string;
  returnType?: string;
}

export interface LibraryVersion {
  name: string;
  version: string;
  kind: LibraryKind;
  file: string;
  sha256: string;
  sizeBytes: number;
  createdAt: Date;
  functions: LibraryFunction[];
}

/** Where a version's file lives in the tenant's lake. */
export const libraryKey = (name: string, version: string, file: string) => `libraries/${name}/${version}/${file}`;

interface Row {
  name: string;
  version: string;
  kind: LibraryKind;
  file: string;
  sha256: string;
  size_bytes: string | number;
  created_at: Date;
}

async function withFunctions(db: Db, tenant: string, rows: Row[]): Promise<LibraryVersion[]> {
  if (!rows.length) return [];
  const fns = await db.query<{
    name: string;
    version: string;
    function: string;
    class: string;
    return_type: string | null;
  }>(
    'SELECT name, version, function, class, return_type FROM library_functions WHERE tenant = $1 AND name = ANY($2) ORDER BY function',
    [tenant, [...new Set(rows.map((r) => r.name))]],
  );
  return rows.map((r) => ({
    name: r.name,
    version: r.version,
    kind: r.kind,
    file: r.file,
    sha256: r.sha256,
    sizeBytes: Number(r.size_bytes),
    createdAt: r.created_at,
    functions: fns.rows
      .filter((f) => f.name === r.name && f.version === r.version)
      .map((f) => ({ name: f.function, class: f.class, ...(f.return_type ? { returnType: f.return_type } : {}) })),
  }));
}

const COLS = 'name, version, kind, file, sha256, size_bytes, created_at';

export async function getLibraryVersion(
  db: Db,
  tenant: string,
  name: string,
  version: string,
): Promise<LibraryVersion | undefined> {
  const r = await db.query<Row>(
    `SELECT ${COLS} FROM library_versions WHERE tenant = $1 AND name = $2 AND version = $3`,
    [tenant, name, version],
  );
  return (await withFunctions(db, tenant, r.rows))[0];
}

/** Every version of one library (newest first), or of all the tenant's libraries. */
export async function listLibraryVersions(db: Db, tenant: string, name?: string): Promise<LibraryVersion[]> {
  const r = name
    ? await db.query<Row>(
        `SELECT ${COLS} FROM library_versions WHERE tenant = $1 AND name = $2 ORDER BY created_at DESC, version DESC`,
        [tenant, name],
      )
    : await db.query<Row>(
        `SELECT ${COLS} FROM library_versions WHERE tenant = $1 ORDER BY name, created_at DESC, version DESC`,
        [tenant],
      );
  return withFunctions(db, tenant, r.rows);
}

/** Records a new version and its functions (call it in a transaction holding the version's lock). */
export async function insertLibraryVersion(
  db: Db,
  tenant: string,
  v: Omit<LibraryVersion, 'createdAt'>,
  keyId?: string,
): Promise<void> {
  await db.query(
    'INSERT INTO library_versions (tenant, name, version, kind, file, sha256, size_bytes, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
    [tenant, v.name, v.version, v.kind, v.file, v.sha256, v.sizeBytes, keyId ?? null],
  );
  for (const f of v.functions)
    await db.query(
      'INSERT INTO library_functions (tenant, name, version, function, class, return_type) VALUES ($1, $2, $3, $4, $5, $6)',
      [tenant, v.name, v.version, f.name, f.class, f.returnType ?? null],
    );
}

export async function deleteLibraryVersion(db: Db, tenant: string, name: string, version: string): Promise<boolean> {
  return (
    (
      await db.query('DELETE FROM library_versions WHERE tenant = $1 AND name = $2 AND version = $3', [
        tenant,
        name,
        version,
      ])
    ).rowCount > 0
  );
}

/** The libraries a spec's tasks pin, with where (tasks[i].libraries[j]). */
export function libraryUses(
  spec: Pick<PipelineSpec, 'tasks'>,
): { task: number; index: number; taskId: string; kind: string; engine?: string; use: LibraryUse }[] {
  const out: { task: number; index: number; taskId: string; kind: string; engine?: string; use: LibraryUse }[] = [];
  spec.tasks.forEach((t, i) => {
    const libs = (t as { libraries?: unknown }).libraries;
    if (Array.isArray(libs))
      libs.forEach((use, j) =>
        out.push({
          task: i,
          index: j,
          taskId: t.id,
          kind: t.kind,
          ...(typeof t.engine === 'string' ? { engine: t.engine } : {}),
          use: use as LibraryUse,
        }),
      );
  });
  return out;
}

/**
 * What is wrong with the libraries a spec pins, for its tenant: an unknown library or
 * version (another tenant's is unknown), a function the version does not declare, a Python
 * library on a task that is not pyspark.
 */
export async function libraryProblems(db: Db, tenant: string, spec: Pick<PipelineSpec, 'tasks'>): Promise<Problem[]> {
  const uses = libraryUses(spec);
  if (!uses.length) return [];
  const problems: Problem[] = [];
  const cache = new Map<string, Promise<LibraryVersion | undefined>>();
  for (const u of uses) {
    const k = `${u.use.name}\u0000${u.use.version}`;
    if (!cache.has(k)) cache.set(k, getLibraryVersion(db, tenant, u.use.name, u.use.version));
    const v = await cache.get(k)!;
    const path = `tasks[${u.task}].libraries[${u.index}]`;
    if (!v) {
      const versions = (await listLibraryVersions(db, tenant, u.use.name)).map((x) => x.version);
      problems.push({
        path,
        message: versions.length
          ? `library "${u.use.name}" has no version "${u.use.version}": use one of ${versions.slice(0, 20).join(', ')}`
          : `no library "${u.use.name}": upload it with POST /api/v1/libraries, or correct the name`,
      });
      continue;
    }
    const duckTask = u.kind === 'sql' && (u.engine ?? 'duckdb') === 'duckdb';
    if (v.kind === 'duckdb' && !duckTask)
      problems.push({
        path,
        message: `library "${v.name}" ${v.version} is a DuckDB macro library: only sql tasks on engine duckdb can use it`,
      });
    if (v.kind !== 'duckdb' && duckTask)
      problems.push({
        path,
        message: `library "${v.name}" ${v.version} is a ${v.kind === 'jar' ? 'JAR' : 'Python package'}: a duckdb task uses DuckDB macro libraries only`,
      });
    if (v.kind === 'python' && u.kind !== 'pyspark')
      problems.push({
        path,
        message: `library "${v.name}" ${v.version} is a Python package: only pyspark tasks can use it`,
      });
    const declared = new Set(v.functions.map((f) => f.name));
    u.use.functions.forEach((f, i) => {
      if (!declared.has(f))
        problems.push({
          path: `${path}.functions[${i}]`,
          message: `library "${v.name}" ${v.version} declares no function "${f}": use one of ${[...declared].join(', ') || '(it declares none)'}`,
        });
    });
  }
  return problems;
}

/** The current versions of the tenant's pipelines that pin a library version (pipeline ids). */
export async function pipelinesPinning(db: Db, tenant: string, name: string, version: string): Promise<string[]> {
  const r = await db.query<{ id: string; spec: PipelineSpec }>(
    `SELECT p.id, v.spec FROM pipelines p JOIN pipeline_versions v ON v.tenant = p.tenant AND v.pipeline_id = p.id AND v.version = p.current_version
      WHERE p.tenant = $1 AND v.spec::text LIKE '%"libraries"%'`,
    [tenant],
  );
  return r.rows
    .filter((row) =>
      libraryUses((typeof row.spec === 'string' ? JSON.parse(row.spec) : row.spec) as Pick<PipelineSpec, 'tasks'>).some(
        (u) => u.use.name === name && String(u.use.version) === version,
      ),
    )
    .map((row) => row.id);
}
