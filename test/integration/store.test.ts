import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { openDb, type Db } from '../../store/db.js';
import { listMigrations, migrate } from '../../store/migrate.js';
import { Catalog } from '../../store/catalog.js';

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

  it('commits versions of one dataset from tasks at once: a number each, a retry finds its own, a rejected one is never current, lineage whole', async () => {
    const db = await open();
    opened.push(db);
    await migrate(db);
    const catalog = new Catalog(db);
    const id = { layer: 'silver' as const, namespace: 'default', name: 'concurrent' };
    const tasks = [1, 2, 3, 4, 5, 6, 7, 8];
    const rejected = 5;
    const producer = (i: number) => ({ tenant: 'acme', runId: 'run-1', pipelineId: 'p', taskId: `task${i}` });
    const version = (i: number) => ({
      id,
      location: `silver/default/concurrent/data/${i}`,
      files: [`silver/default/concurrent/data/${i}/part-00000.parquet`],
      schema: [{ name: `c${i}`, type: 'INTEGER', nullable: true }],
      rowCount: i * 10,
      bytes: i * 100,
      checks: [],
      promote: i !== rejected,
      inputs: [
        { layer: 'bronze' as const, namespace: 'default', name: 'orders', version: i },
        { layer: 'bronze' as const, namespace: 'default', name: 'customers', version: 1 },
      ],
    });
    const commitAll = () => Promise.all(tasks.map((i) => catalog.commit(producer(i), [version(i)])));
    const first = (await commitAll()).map((r) => r[0]);
    expect(first.map((v) => v.version).sort((a, b) => a - b)).toEqual(tasks);
    for (const [k, v] of first.entries()) {
      expect(v).toMatchObject({ taskId: `task${tasks[k]}`, rowCount: tasks[k] * 10, bytes: tasks[k] * 100 });
      expect(v.status).toBe(tasks[k] === rejected ? 'rejected' : 'committed');
      expect(v.promotedAt === undefined).toBe(tasks[k] === rejected);
      // What the commit returns is what a read gives (but for "current", which later commits move).
      const { current: _c, ...read } = (await catalog.version('acme', id, v.version))!;
      const { current: _d, ...returned } = v;
      expect(returned).toEqual(read);
    }
    // Every task retried (its first commit's answer lost): each finds its own version, none is added.
    const again = (await commitAll()).map((r) => r[0]);
    expect(again.map((v) => v.version)).toEqual(first.map((v) => v.version));
    expect((await catalog.versions('acme', id)).length).toBe(tasks.length);
    // Commits queue on the dataset: the last promoted one in that order holds the highest promoted number.
    const promoted = first.filter((v) => v.status === 'committed').map((v) => v.version);
    expect((await catalog.current('acme', id))?.version).toBe(Math.max(...promoted));
    // Lineage: both inputs of every version, the rejected one's too.
    const lineage = await db.query<{ from_name: string; from_version: number; to_version: number }>(
      `SELECT from_name, from_version, to_version FROM lake_lineage WHERE tenant='acme' AND to_name='concurrent'`,
    );
    expect(lineage.rows.length).toBe(2 * tasks.length);
    for (const v of first)
      expect(
        lineage.rows
          .filter((r) => r.to_version === v.version)
          .map((r) => `${r.from_name}@${r.from_version}`)
          .sort(),
      ).toEqual(['customers@1', `orders@${Number(v.taskId.slice(4))}`]);
    // Schema changes count from the current version, never from a rejected one.
    const cur = (await catalog.current('acme', id))!;
    const next = await catalog.commit(producer(9), [{ ...version(9), promote: false }]);
    expect(next[0].schemaChanges).toEqual([
      { column: 'c9', change: 'added', to: 'INTEGER' },
      { column: cur.schema[0].name, change: 'removed', from: 'INTEGER' },
    ]);
    const after = await catalog.commit(producer(10), [version(10)]);
    expect(after[0].version).toBe(tasks.length + 2);
    expect(after[0].schemaChanges).toEqual([
      { column: 'c10', change: 'added', to: 'INTEGER' },
      { column: cur.schema[0].name, change: 'removed', from: 'INTEGER' },
    ]);
    expect((await catalog.current('acme', id))?.version).toBe(tasks.length + 2);
  });
});
