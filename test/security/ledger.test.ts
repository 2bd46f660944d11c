/**
 * The exactly-once ledger against the tenant SQL that runs in its transaction: once
 * `strata ledger-setup` has put it out of reach, a task's statements can neither forge a
 * "done" row for a later run, nor delete or change rows, nor call the ledger's functions
 * without the worker's key — on real Postgres and real MariaDB, with ordinary users.
 */
import mysql from 'mysql2/promise';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { ConnectionConfig } from '../../activities/sql/connections.js';
import { runMysql } from '../../activities/sql/mysql.js';
import { runPostgres } from '../../activities/sql/postgres.js';
import { runCli } from '../harness/processes.js';

const id = randomBytes(3).toString('hex');
const LEDGER_KEY = `ledger-key-${randomBytes(16).toString('hex')}`;
const sig = new AbortController().signal;
let pgAdmin: pg.Client;
let myAdmin: mysql.Connection;
let pgConn: ConnectionConfig;
let myConn: ConnectionConfig;
const withDb = (url: string, db: string, user?: string) => {
  const u = new URL(url);
  u.pathname = `/${db}`;
  if (user) u.username = user;
  return u.toString();
};

beforeAll(async () => {
  const dbs = inject('databases');
  // Postgres: an ordinary role owning a database of its own, as a tenant's would be.
  pgAdmin = new pg.Client({ connectionString: dbs.postgresAdminUrl });
  await pgAdmin.connect();
  await pgAdmin.query(`CREATE ROLE sec_led_${id} LOGIN`);
  await pgAdmin.query(`CREATE DATABASE sec_led_${id} OWNER sec_led_${id}`);
  pgConn = {
    name: 'books',
    engine: 'postgres',
    url: withDb(dbs.postgresAdminUrl, `sec_led_${id}`, `sec_led_${id}`),
    tenants: ['acme'],
  };
  // MariaDB: a user with every right on its own database, none elsewhere.
  myAdmin = await mysql.createConnection({ uri: dbs.mysqlAdminUrl });
  await myAdmin.query(`CREATE USER 'sec_led_${id}'@'%'`);
  await myAdmin.query(`CREATE DATABASE sec_led_${id}`);
  await myAdmin.query(`GRANT ALL ON sec_led_${id}.* TO 'sec_led_${id}'@'%'`);
  myConn = {
    name: 'shop',
    engine: 'mysql',
    url: withDb(dbs.mysqlAdminUrl, `sec_led_${id}`, `sec_led_${id}`),
    tenants: ['acme'],
  };
  for (const [c, admin] of [
    [pgConn, withDb(dbs.postgresAdminUrl, `sec_led_${id}`)],
    [myConn, dbs.mysqlAdminUrl],
  ] as const) {
    const r = await runCli(['ledger-setup', c.name, '--admin-url', admin], {
      [`STRATA_CONN_${c.name.toUpperCase()}`]: c.url,
      STRATA_LEDGER_KEY: LEDGER_KEY,
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`ledger of connection ${c.name} protected`);
  }
});

afterAll(async () => {
  await pgAdmin?.query(`DROP DATABASE IF EXISTS sec_led_${id} WITH (FORCE)`);
  await pgAdmin?.query(`DROP ROLE IF EXISTS sec_led_${id}`);
  await pgAdmin?.end();
  await myAdmin?.query(`DROP DATABASE IF EXISTS sec_led_${id}`);
  await myAdmin?.query(`DROP DATABASE IF EXISTS strata_ledger_sec_led_${id}`);
  await myAdmin?.query(`DROP USER IF EXISTS 'sec_led_${id}'@'%'`);
  await myAdmin?.end();
});

const engines = () =>
  [
    {
      name: 'postgres',
      conn: pgConn,
      run: runPostgres,
      ledger: async () =>
        (await pgAdmin2())
          .query('SELECT workflow_id, task_id, row_count::int AS n FROM strata_ledger.entries ORDER BY 1, 2')
          .then((r) => r.rows),
    },
    {
      name: 'mariadb',
      conn: myConn,
      run: runMysql,
      ledger: async () =>
        (
          await myAdmin.query(
            `SELECT workflow_id, task_id, row_count AS n FROM strata_ledger_sec_led_${id}.entries ORDER BY 1, 2`,
          )
        )[0],
    },
  ] as const;

let pgLedgerAdmin: pg.Client | undefined;
async function pgAdmin2(): Promise<pg.Client> {
  if (!pgLedgerAdmin) {
    pgLedgerAdmin = new pg.Client({ connectionString: withDb(inject('databases').postgresAdminUrl, `sec_led_${id}`) });
    await pgLedgerAdmin.connect();
  }
  return pgLedgerAdmin;
}
afterAll(async () => pgLedgerAdmin?.end());

describe.each(['postgres', 'mariadb'])('%s: a protected ledger', (engine) => {
  const e = () => engines().find((x) => x.name === engine)!;
  const L = () => (engine === 'postgres' ? 'strata_ledger' : `strata_ledger_sec_led_${id}`);

  it('applies a task once per (run, task), and tells a retry it was applied', async () => {
    const { conn, run } = e();
    await run(conn, { workflowId: `wf-${engine}`, taskId: 'setup' }, 'CREATE TABLE accounts (id int)', sig, LEDGER_KEY);
    const key = { workflowId: `wf-${engine}`, taskId: 'load' };
    expect(await run(conn, key, 'INSERT INTO accounts VALUES (1), (2)', sig, LEDGER_KEY)).toEqual({
      rowCount: 2,
      alreadyApplied: false,
    });
    expect(await run(conn, key, 'INSERT INTO accounts VALUES (1), (2)', sig, LEDGER_KEY)).toEqual({
      rowCount: 2,
      alreadyApplied: true,
    });
    expect(
      (await run(conn, { workflowId: `wf-${engine}`, taskId: 'count' }, 'SELECT * FROM accounts', sig, LEDGER_KEY))
        .rowCount,
    ).toBe(2);
  });

  it('refuses tenant SQL that deletes, changes or forges ledger rows, or calls the functions without the key — and the ledger stays as it was', async () => {
    const { conn, run, ledger } = e();
    const before = (await ledger()) as { workflow_id: string; task_id: string; n: number }[];
    expect(before.length).toBeGreaterThan(0);
    const attacks = [
      `DELETE FROM ${L()}.entries`,
      `UPDATE ${L()}.entries SET row_count = 99`,
      `INSERT INTO ${L()}.entries (workflow_id, task_id) VALUES ('pipeline/acme/next-run', 'load')`,
      `SELECT ${L()}.claim('pipeline/acme/next-run', 'load', 'guess')`,
      `SELECT ${L()}.finish('wf-x', 'load', 5, 'guess')`,
      `DROP TABLE ${L()}.entries`,
      `SELECT * FROM ${L()}.${engine === 'postgres' ? 'keys' : '`keys`'}`,
    ];
    for (const [i, sql] of attacks.entries()) {
      await expect(
        run(conn, { workflowId: `wf-attack-${engine}`, taskId: `a${i}` }, sql, sig, LEDGER_KEY),
        sql,
      ).rejects.toThrow(/denied|permission|wrong key|must be owner/i);
    }
    const after = (await ledger()) as typeof before;
    // Every row that was there is there unchanged, and nothing forged appeared.
    expect(after.filter((r) => before.some((b) => b.workflow_id === r.workflow_id && b.task_id === r.task_id))).toEqual(
      before,
    );
    expect(
      after.filter(
        (r) =>
          !r.workflow_id.startsWith(`wf-attack-${engine}`) &&
          !before.some((b) => b.workflow_id === r.workflow_id && b.task_id === r.task_id),
      ),
    ).toEqual([]);
    // On Postgres a refused task leaves not even its own claim (one transaction); MySQL commits
    // before any DDL statement, so there only the attacker's own claim of its DROP may remain.
    if (engine === 'postgres') expect(after).toEqual(before);
  });

  it('a worker without the key is told how to fix it, and applies nothing', async () => {
    const { conn, run, ledger } = e();
    const before = await ledger();
    await expect(
      run(conn, { workflowId: `wf-nokey-${engine}`, taskId: 't' }, 'INSERT INTO accounts VALUES (3)', sig, undefined),
    ).rejects.toThrow(/has a protected ledger, but this worker has no ledger key: set STRATA_LEDGER_KEY/);
    expect(await ledger()).toEqual(before);
  });
});

it('ledger-setup refuses a connection user that could write the ledger anyway', async () => {
  const dbs = inject('databases');
  const r = await runCli(['ledger-setup', 'warehouse', '--admin-url', dbs.postgresAdminUrl], {
    STRATA_CONN_WAREHOUSE: dbs.postgresUrl,
    STRATA_LEDGER_KEY: LEDGER_KEY,
  });
  expect(r.code).not.toBe(0);
  expect(r.out).toMatch(/connects as postgres, the connection's own user|is a superuser, whom no privilege stops/);
});
