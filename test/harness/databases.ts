/** A fresh Postgres and MariaDB database per test run, dropped at the end. */
import mysql from 'mysql2/promise';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import type { Connections } from '../../activities/sql/connections.js';

export interface TestDatabases {
  postgresUrl: string;
  mysqlUrl: string;
  postgresAdminUrl: string;
  mysqlAdminUrl: string;
  name: string;
}

const PG_ADMIN = process.env.STRATA_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const MYSQL_ADMIN = process.env.STRATA_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

export async function createDatabases(): Promise<TestDatabases> {
  const name = `strata_test_${randomBytes(4).toString('hex')}`;
  const pc = new pg.Client({ connectionString: PG_ADMIN });
  await pc.connect().catch((e) => {
    throw new Error(`tests need Postgres at ${PG_ADMIN} (set STRATA_TEST_PG_URL): ${e.message}`);
  });
  await pc.query(`CREATE DATABASE ${name}`);
  await pc.end();
  const mc = await mysql.createConnection({ uri: MYSQL_ADMIN }).catch((e) => {
    throw new Error(`tests need MariaDB/MySQL at ${MYSQL_ADMIN} (set STRATA_TEST_MYSQL_URL): ${e.message}`);
  });
  await mc.query(`CREATE DATABASE ${name}`);
  await mc.end();
  return {
    name,
    postgresUrl: withDb(PG_ADMIN, name),
    mysqlUrl: withDb(MYSQL_ADMIN, name),
    postgresAdminUrl: PG_ADMIN,
    mysqlAdminUrl: MYSQL_ADMIN,
  };
}

export async function dropDatabases(d: TestDatabases) {
  const pc = new pg.Client({ connectionString: d.postgresAdminUrl });
  await pc.connect();
  await pc.query(`DROP DATABASE IF EXISTS ${d.name} WITH (FORCE)`);
  await pc.end();
  const mc = await mysql.createConnection({ uri: d.mysqlAdminUrl });
  await mc.query(`DROP DATABASE IF EXISTS ${d.name}`);
  await mc.end();
}

/** A test's own clients on a test stack's connections `warehouse` (Postgres) and `mart` (MySQL). */
export interface Warehouses {
  pg: pg.Client;
  mysql: mysql.Connection;
  close(): Promise<void>;
}

export async function connectWarehouses(c: Connections): Promise<Warehouses> {
  const pgc = new pg.Client({ connectionString: c.warehouse.url });
  await pgc.connect();
  const my = await mysql.createConnection({ uri: c.mart.url }).catch(async (e) => {
    await pgc.end();
    throw e;
  });
  return {
    pg: pgc,
    mysql: my,
    close: async () => {
      await pgc.end();
      await my.end();
    },
  };
}
