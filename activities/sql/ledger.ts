/**
 * The exactly-once ledger, out of tenant SQL's reach. A task's statements commit in one
 * transaction with a ledger row keyed by (workflow id, task id); the tenant's statements
 * run in that same transaction as the connection's user. So that they cannot write the
 * ledger, it lives in a schema (Postgres) or database (MySQL) the connection's user has no
 * rights on, and is written only through two SECURITY DEFINER functions, `claim` and
 * `finish`, that also demand a key: the worker's ledger key for this connection. Tenant SQL
 * never sees the key (it is a bound parameter of an earlier statement), so it can neither
 * forge a "done" row for a later run nor delete or change the rows that exist.
 *
 * `strata ledger-setup CONNECTION --admin-url …` installs it (as an administrator whose
 * rights the connection's user lacks). A connection without it keeps the ledger in a table
 * the connection's user owns, and its task outputs say `ledger: "unprotected"`.
 */
import { createHmac } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { z } from 'zod';
import { NonRetryableError } from '../../schemas/errors.js';
import { quoteIdent } from './quote.js';

export const LEDGER_SCHEMA = 'strata_ledger';

/** The key a connection's ledger functions demand: HMAC(STRATA_LEDGER_KEY, connection name). */
export function ledgerSecret(masterKey: string, connection: string): string {
  return createHmac('sha256', masterKey).update(`strata-ledger:${connection.toLowerCase()}`).digest('hex');
}

export function ledgerKeyFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const k = env.STRATA_LEDGER_KEY;
  if (k !== undefined && k.length < 32)
    throw new Error('STRATA_LEDGER_KEY must be at least 32 characters (a random secret; keep it with the worker only)');
  return k || undefined;
}

export type Claim = { claimed: true } | { claimed: false; rowCount: number };

export function parseClaim(v: string): Claim {
  if (v === 'claimed') return { claimed: true };
  const m = /^done:(\d+)$/.exec(v);
  if (!m) throw new Error(`unexpected answer from the ledger: ${v}`);
  return { claimed: false, rowCount: Number(m[1]) };
}

const needKey = (name: string, key?: string): string => {
  if (!key)
    throw new NonRetryableError(
      `connection "${name}" has a protected ledger, but this worker has no ledger key: set STRATA_LEDGER_KEY (the one used by strata ledger-setup)`,
      'ConfigError',
    );
  return key;
};

// ---- Postgres

export async function pgLedgerProtected(c: pg.Client): Promise<boolean> {
  const r = await c.query<{ p: boolean }>(
    `SELECT to_regprocedure('${LEDGER_SCHEMA}.claim(text,text,text)') IS NOT NULL AS p`,
  );
  return !!r.rows[0]?.p;
}

export async function pgClaim(
  c: pg.Client,
  name: string,
  masterKey: string | undefined,
  wf: string,
  task: string,
): Promise<Claim> {
  const r = await c.query<{ v: string }>(`SELECT ${LEDGER_SCHEMA}.claim($1, $2, $3) AS v`, [
    wf,
    task,
    ledgerSecret(needKey(name, masterKey), name),
  ]);
  return parseClaim(r.rows[0].v);
}

export async function pgFinish(
  c: pg.Client,
  name: string,
  masterKey: string | undefined,
  wf: string,
  task: string,
  rowCount: number,
): Promise<void> {
  await c.query(`SELECT ${LEDGER_SCHEMA}.finish($1, $2, $3, $4)`, [
    wf,
    task,
    rowCount,
    ledgerSecret(needKey(name, masterKey), name),
  ]);
}

/** Installs the protected ledger on a Postgres database; returns the connection user it was granted to. */
export async function setupPgLedger(o: { adminUrl: string; connectionUrl: string; secret: string }): Promise<string> {
  const user = await pgUser(o.connectionUrl);
  const admin = new pg.Client({ connectionString: o.adminUrl });
  await admin.connect();
  try {
    const me = (await admin.query<{ u: string }>('SELECT current_user AS u')).rows[0].u;
    if (me === user)
      throw new Error(
        `the admin URL connects as ${user}, the connection's own user: use an administrator the connection's user is not`,
      );
    const ident = quoteIdent;
    const S = LEDGER_SCHEMA;
    await admin.query('BEGIN');
    await admin.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
    await admin.query(
      `CREATE TABLE IF NOT EXISTS ${S}.entries (workflow_id text NOT NULL, task_id text NOT NULL, row_count bigint, committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (workflow_id, task_id))`,
    );
    await admin.query(`CREATE TABLE IF NOT EXISTS ${S}.keys (hash text NOT NULL)`);
    await admin.query(`DELETE FROM ${S}.keys`);
    await admin.query(`INSERT INTO ${S}.keys (hash) VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'))`, [
      o.secret,
    ]);
    const check = `IF NOT EXISTS (SELECT 1 FROM ${S}.keys WHERE hash = encode(sha256(convert_to(secret, 'UTF8')), 'hex')) THEN RAISE EXCEPTION 'strata ledger: wrong key'; END IF;`;
    await admin.query(`CREATE OR REPLACE FUNCTION ${S}.claim(wf text, task text, secret text) RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
      DECLARE n bigint;
      BEGIN
        ${check}
        INSERT INTO ${S}.entries (workflow_id, task_id) VALUES (wf, task) ON CONFLICT DO NOTHING;
        IF FOUND THEN RETURN 'claimed'; END IF;
        SELECT row_count INTO n FROM ${S}.entries WHERE workflow_id = wf AND task_id = task;
        RETURN 'done:' || coalesce(n, 0);
      END $f$`);
    await admin.query(`CREATE OR REPLACE FUNCTION ${S}.finish(wf text, task text, n bigint, secret text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
      BEGIN
        ${check}
        UPDATE ${S}.entries SET row_count = n WHERE workflow_id = wf AND task_id = task;
        IF NOT FOUND THEN RAISE EXCEPTION 'strata ledger: no claim for %/%', wf, task; END IF;
      END $f$`);
    await admin.query(`REVOKE ALL ON SCHEMA ${S} FROM PUBLIC`);
    await admin.query(`REVOKE ALL ON ALL TABLES IN SCHEMA ${S} FROM PUBLIC`);
    await admin.query(
      `REVOKE ALL ON FUNCTION ${S}.claim(text,text,text), ${S}.finish(text,text,bigint,text) FROM PUBLIC`,
    );
    await admin.query(`GRANT USAGE ON SCHEMA ${S} TO ${ident(user)}`);
    await admin.query(
      `GRANT EXECUTE ON FUNCTION ${S}.claim(text,text,text), ${S}.finish(text,text,bigint,text) TO ${ident(user)}`,
    );
    await admin.query('COMMIT');
  } catch (e) {
    await admin.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    await admin.end();
  }
  await probe(o.connectionUrl, 'postgres', LEDGER_SCHEMA);
  return user;
}

/** The connection's user must not be able to write the ledger directly: tried, and must be refused. */
async function probe(url: string, engine: 'postgres' | 'mysql', schema: string): Promise<void> {
  const sql = `DELETE FROM ${schema}.entries WHERE 1 = 0`;
  let wrote = true;
  if (engine === 'postgres') {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(sql).catch(() => (wrote = false));
    await c.end();
  } else {
    const c = await mysql.createConnection({ uri: url.replace(/^mariadb:/, 'mysql:') });
    await c.query(sql).catch(() => (wrote = false));
    await c.end();
  }
  if (wrote)
    throw new Error(
      `the connection's user can still write ${schema}.entries itself (it has broad privileges): give the connection a user with rights on its own tables only, then run the setup again`,
    );
}

async function pgUser(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ u: string; s: boolean }>(
      'SELECT current_user AS u, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS s',
    );
    if (r.rows[0].s)
      throw new Error(
        `the connection's user ${r.rows[0].u} is a superuser, whom no privilege stops: give the connection an ordinary user`,
      );
    return r.rows[0].u;
  } finally {
    await c.end();
  }
}

// ---- MySQL / MariaDB: databases are server-wide, so each connection database has a ledger database of its own.

/** A MySQL query's rows, each checked against the shape the caller expects (the driver's types only assume one). */
export async function myRows<T>(c: mysql.Connection, row: z.ZodType<T>, sql: string, params?: unknown[]): Promise<T[]> {
  const [rows] = await c.query(sql, params);
  const r = z.array(row).safeParse(rows);
  if (!r.success)
    throw new Error(`MySQL answered "${sql.slice(0, 60)}" with unexpected rows: ${z.prettifyError(r.error)}`);
  return r.data;
}

/** A COUNT(*): a number, or its digits when the driver keeps big numbers as text. */
const Count = z.union([z.number(), z.string()]).transform(Number);

/** The ledger database of a MySQL database: `strata_ledger_{db}` (hashed when too long for a name). */
export function myLedgerDb(db: string): string {
  const plain = `${LEDGER_SCHEMA}_${db.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
  return plain.length <= 64
    ? plain
    : `${LEDGER_SCHEMA}_${createHmac('sha256', 'db').update(db).digest('hex').slice(0, 24)}`;
}

/** The connection's ledger database, when it has a protected ledger. */
export async function myLedgerProtected(c: mysql.Connection): Promise<string | undefined> {
  const [cur] = await myRows(c, z.object({ db: z.string().nullable() }), 'SELECT DATABASE() AS db');
  if (!cur?.db) return undefined;
  const ldb = myLedgerDb(cur.db);
  const rows = await myRows(
    c,
    z.object({ n: Count }),
    `SELECT COUNT(*) AS n FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME = 'claim'`,
    [ldb],
  );
  return (rows[0]?.n ?? 0) > 0 ? ldb : undefined;
}

export async function myClaim(
  c: mysql.Connection,
  ldb: string,
  name: string,
  masterKey: string | undefined,
  wf: string,
  task: string,
): Promise<Claim> {
  const [row] = await myRows(c, z.object({ v: z.unknown() }), `SELECT \`${ldb}\`.claim(?, ?, ?) AS v`, [
    wf,
    task,
    ledgerSecret(needKey(name, masterKey), name),
  ]);
  return parseClaim(String(row?.v));
}

export async function myFinish(
  c: mysql.Connection,
  ldb: string,
  name: string,
  masterKey: string | undefined,
  wf: string,
  task: string,
  rowCount: number,
): Promise<void> {
  await c.query(`SELECT \`${ldb}\`.finish(?, ?, ?, ?)`, [
    wf,
    task,
    rowCount,
    ledgerSecret(needKey(name, masterKey), name),
  ]);
}

export async function setupMysqlLedger(o: {
  adminUrl: string;
  connectionUrl: string;
  secret: string;
}): Promise<string> {
  const uri = (u: string) => u.replace(/^mariadb:/, 'mysql:');
  const tc = await mysql.createConnection({ uri: uri(o.connectionUrl) });
  const [who] = await myRows(
    tc,
    z.object({ u: z.string(), db: z.string().nullable() }),
    'SELECT CURRENT_USER() AS u, DATABASE() AS db',
  ).finally(() => tc.end());
  if (!who) throw new Error("the connection's server answered no current user");
  if (!who.db) throw new Error("the connection's URL names no database: add /DATABASE to it");
  const at = who.u.lastIndexOf('@');
  const account = `'${who.u.slice(0, at).replaceAll("'", "''")}'@'${who.u.slice(at + 1).replaceAll("'", "''")}'`;
  const a = await mysql.createConnection({ uri: uri(o.adminUrl), multipleStatements: false });
  try {
    const [me] = await myRows(a, z.object({ u: z.string() }), 'SELECT CURRENT_USER() AS u');
    if (me?.u === who.u)
      throw new Error(
        `the admin URL connects as ${who.u}, the connection's own user: use an administrator the connection's user is not`,
      );
    const S = `\`${myLedgerDb(who.db)}\``;
    await a.query(`CREATE DATABASE IF NOT EXISTS ${S}`);
    await a.query(
      `CREATE TABLE IF NOT EXISTS ${S}.entries (workflow_id VARCHAR(255) NOT NULL, task_id VARCHAR(128) NOT NULL, row_count BIGINT NULL, committed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (workflow_id, task_id)) ENGINE=InnoDB`,
    );
    await a.query(`CREATE TABLE IF NOT EXISTS ${S}.\`keys\` (hash CHAR(64) NOT NULL) ENGINE=InnoDB`);
    await a.query(`DELETE FROM ${S}.\`keys\``);
    await a.query(`INSERT INTO ${S}.\`keys\` (hash) VALUES (SHA2(?, 256))`, [o.secret]);
    const check = `IF (SELECT COUNT(*) FROM ${S}.\`keys\` WHERE hash = SHA2(secret, 256)) = 0 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'strata ledger: wrong key'; END IF;`;
    await a.query(`DROP FUNCTION IF EXISTS ${S}.claim`);
    await a.query(`CREATE FUNCTION ${S}.claim(wf VARCHAR(255), task VARCHAR(128), secret VARCHAR(128)) RETURNS VARCHAR(64) MODIFIES SQL DATA SQL SECURITY DEFINER
      BEGIN
        DECLARE n BIGINT;
        ${check}
        INSERT IGNORE INTO ${S}.entries (workflow_id, task_id) VALUES (wf, task);
        IF ROW_COUNT() = 1 THEN RETURN 'claimed'; END IF;
        SELECT row_count INTO n FROM ${S}.entries WHERE workflow_id = wf AND task_id = task;
        RETURN CONCAT('done:', IFNULL(n, 0));
      END`);
    await a.query(`DROP FUNCTION IF EXISTS ${S}.finish`);
    await a.query(`CREATE FUNCTION ${S}.finish(wf VARCHAR(255), task VARCHAR(128), n BIGINT, secret VARCHAR(128)) RETURNS INT MODIFIES SQL DATA SQL SECURITY DEFINER
      BEGIN
        ${check}
        UPDATE ${S}.entries SET row_count = n WHERE workflow_id = wf AND task_id = task;
        IF ROW_COUNT() = 0 AND (SELECT COUNT(*) FROM ${S}.entries WHERE workflow_id = wf AND task_id = task) = 0 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'strata ledger: no claim'; END IF;
        RETURN 1;
      END`);
    await a.query(`GRANT EXECUTE ON FUNCTION ${S}.claim TO ${account}`);
    await a.query(`GRANT EXECUTE ON FUNCTION ${S}.finish TO ${account}`);
  } finally {
    await a.end();
  }
  await probe(o.connectionUrl, 'mysql', `\`${myLedgerDb(who.db)}\``);
  return who.u;
}
