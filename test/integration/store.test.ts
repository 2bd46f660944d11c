import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { openDb, type Db } from '../../store/db.js';
import { listMigrations, migrate } from '../../store/migrate.js';

const opened: Db[] = [];
afterAll(async () => {
  for (const d of opened) await d.close();
});

// A database of its own: the run's shared one is migrated by the global setup already.
let freshUrl: string | undefined;
async function freshPostgres(): Promise<string> {
  if (freshUrl) return freshUrl;
  const dbs = inject('databases');
  const name = `${dbs.name}_store`;
  const admin = new pg.Client({ connectionString: dbs.postgresAdminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name}`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(dbs.postgresUrl);
  u.pathname = `/${name}`;
  freshUrl = u.toString();
  return freshUrl;
}

afterAll(async () => {
  if (!freshUrl) return;
  const dbs = inject('databases');
  const admin = new pg.Client({ connectionString: dbs.postgresAdminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${dbs.name}_store WITH (FORCE)`);
  await admin.end();
});

describe.each([
  ['postgres', async () => openDb({ url: await freshPostgres() })],
  ['pglite', () => openDb({})],
])('metastore on %s', (_name, open) => {
  it('applies every migration once, also when several migrators race', async () => {
    const a = await open();
    const b = _name === 'postgres' ? await open() : a;
    opened.push(a, ...(b === a ? [] : [b]));
    const all = (await listMigrations()).map((m) => m.version);
    const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
    expect([...ra, ...rb].sort((x, y) => x - y)).toEqual(all);
    expect(await migrate(a)).toEqual([]);
    const rows = await a.query<{ version: number }>('SELECT version FROM strata_migrations ORDER BY version');
    expect(rows.rows.map((r) => r.version)).toEqual(all);
  });

  it('rolls a failed transaction back whole', async () => {
    const db = await open();
    opened.push(db);
    await db.exec('CREATE TABLE IF NOT EXISTS tx_probe (n int PRIMARY KEY)');
    await db.query('DELETE FROM tx_probe');
    await expect(
      db.tx(async (t) => {
        await t.query('INSERT INTO tx_probe VALUES (1)');
        await t.query('INSERT INTO tx_probe VALUES (1)'); // duplicate key
      }),
    ).rejects.toThrow(/duplicate key/);
    expect((await db.query('SELECT count(*)::int AS n FROM tx_probe')).rows[0]).toEqual({ n: 0 });
  });
});
