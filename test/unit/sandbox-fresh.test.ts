/**
 * openDuck hands out an instance made ahead of need (the spare): it must be as fresh as one
 * made on demand — nothing another task created, none of another grant's locked settings.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDuck } from '../../activities/sql/sandbox.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'strata-fresh-duck-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const setting = async (d: Awaited<ReturnType<typeof openDuck>>, name: string) =>
  String((await d.conn.runAndReadAll(`SELECT current_setting('${name}')`)).getRows()[0][0]);

describe('openDuck', () => {
  it('hands out an instance where nothing ran: no table and no locked setting of the previous task', async () => {
    for (let i = 0; i < 3; i++) {
      const d = await openDuck();
      try {
        expect(Number((await d.conn.runAndReadAll(`SELECT count(*) FROM duckdb_tables()`)).getRows()[0][0])).toBe(0);
        expect(await setting(d, 'enable_external_access')).toBe('true');
        expect(await setting(d, 'lock_configuration')).toBe('false');
        await d.conn.run(`CREATE TABLE leftover_${i} AS SELECT 1 AS v`);
        await d.lock({ files: [], scratch: path.join(dir, `s${i}`), limits: { threads: 1, memory: '256MB' } });
        expect(await setting(d, 'threads')).toBe('1');
        await expect(d.conn.run('SET threads = 2')).rejects.toThrow(/lock/i);
      } finally {
        await d.close();
      }
    }
  });

  it('gives two tasks open at the same time two different instances', async () => {
    const [a, b] = await Promise.all([openDuck(), openDuck()]);
    try {
      await a.conn.run('CREATE TABLE only_in_a AS SELECT 1 AS v');
      await expect(b.conn.run('SELECT * FROM only_in_a')).rejects.toThrow(/only_in_a does not exist/);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
