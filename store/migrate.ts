/**
 * Versioned SQL migrations: `store/migrations/NNN_name.sql`, applied in order, each in
 * its own transaction, recorded in strata_migrations. Safe to run on every start and
 * from several processes at once (an advisory lock serialises them on Postgres).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.js';

export const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
const LOCK_ID = 7_311_042;

export async function listMigrations(dir = MIGRATIONS_DIR): Promise<{ version: number; name: string; file: string }[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const seen = new Set<number>();
  return files.map((f) => {
    const version = Number(f.slice(0, 3));
    if (seen.has(version)) throw new Error(`two migrations share version ${version}: renumber ${f}`);
    seen.add(version);
    return { version, name: f.slice(4, -4), file: path.join(dir, f) };
  });
}

export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<number[]> {
  await db.tx(async (t) => {
    if (t.kind === 'postgres') await t.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
    // Only when missing: a role that may not change the schema (the deployed worker's) still runs this.
    const exists = await t.query<{ r: string | null }>(`SELECT to_regclass('strata_migrations')::text AS r`);
    if (!exists.rows[0]?.r)
      await t.exec(
        `CREATE TABLE IF NOT EXISTS strata_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
  });
  const applied: number[] = [];
  for (const m of await listMigrations(dir)) {
    const sql = await readFile(m.file, 'utf8');
    const done = await db.tx(async (t) => {
      if (t.kind === 'postgres') await t.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
      const have = await t.query('SELECT 1 FROM strata_migrations WHERE version = $1', [m.version]);
      if (have.rowCount > 0) return false;
      await t.exec(sql);
      await t.query('INSERT INTO strata_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}
