/**
 * The metastore connection: real Postgres when DATABASE_URL is set, embedded PGlite
 * (Postgres compiled to WebAssembly, persisting to a folder) otherwise, so the local
 * stack needs no server. Both speak the same SQL; queries use $1-style parameters.
 */
import pg from 'pg';
import { z } from 'zod';

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Db {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<T>>;
  /** Runs several statements (no parameters), e.g. a migration file. */
  exec(sql: string): Promise<void>;
  /** Runs fn in one transaction; it commits if fn resolves and rolls back if it throws. */
  tx<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  readonly kind: 'postgres' | 'pglite';
}

/** A query's rows, each checked against `row` (a zod schema): what the caller reads is what came back. */
export async function queryRows<T>(db: Db, row: z.ZodType<T>, sql: string, params?: unknown[]): Promise<T[]> {
  const r = await db.query<unknown>(sql, params);
  return z.array(row).parse(r.rows);
}

export async function openDb(opts: { url?: string; dataDir?: string }): Promise<Db> {
  if (opts.url) return openPostgres(opts.url);
  return openPglite(opts.dataDir);
}

function pgDb(run: pg.Pool | pg.PoolClient, pool: pg.Pool): Db {
  const self: Db = {
    kind: 'postgres',
    async query<T>(sql: string, params?: unknown[]) {
      const r = await run.query(sql, params as unknown[]);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    },
    async exec(sql: string) {
      await run.query(sql);
    },
    async tx<T>(fn: (db: Db) => Promise<T>): Promise<T> {
      if (run !== pool) return fn(self); // already inside a transaction
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const out = await fn(pgDb(client, pool));
        await client.query('COMMIT');
        return out;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => {});
        throw e;
      } finally {
        client.release();
      }
    },
    async close() {
      if (run === pool) await pool.end();
    },
  };
  return self;
}

async function openPostgres(url: string): Promise<Db> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => {}); // idle client errors surface on the next query
  const c = await pool.connect().catch((e: unknown) => {
    throw new Error(`cannot connect to the metastore (DATABASE_URL): ${e instanceof Error ? e.message : String(e)}`);
  });
  c.release();
  return pgDb(pool, pool);
}

async function openPglite(dataDir?: string): Promise<Db> {
  const { PGlite } = await import('@electric-sql/pglite');
  const lite = new PGlite(dataDir);
  await lite.waitReady;
  // PGlite is one connection: serialise transactions so they never interleave.
  let chain: Promise<unknown> = Promise.resolve();
  type Q = { query: typeof lite.query; exec: typeof lite.exec };
  const wrap = (q: Q, inTx: boolean): Db => ({
    kind: 'pglite',
    async query<T>(sql: string, params?: unknown[]) {
      const r = await q.query<T>(sql, params as unknown[]);
      return { rows: r.rows, rowCount: r.fields.length ? r.rows.length : (r.affectedRows ?? 0) };
    },
    async exec(sql: string) {
      await q.exec(sql);
    },
    async tx<T>(fn: (db: Db) => Promise<T>): Promise<T> {
      if (inTx) return fn(wrap(q, true));
      const next = chain.then(() => lite.transaction((t) => fn(wrap(t as unknown as Q, true))));
      chain = next.catch(() => {});
      return next;
    },
    async close() {
      await lite.close();
    },
  });
  return wrap(lite, false);
}
