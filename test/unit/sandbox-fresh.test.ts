/**
 * openDuck hands out an instance made ahead of need (the spare): it must be as fresh as one
 * made on demand — nothing another task created, none of another grant's locked settings.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDuck, RETIRE_IDLE_MS, whileDuckWorks } from '../../activities/sql/sandbox.js';
import { waitFor } from '../harness/specs.js';

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

  it("holds a task to the worker's memory limit (set as the instance is made), or to its grant's own, locked either way", async () => {
    const mib = async (d: Awaited<ReturnType<typeof openDuck>>) =>
      Number(/^([\d.]+) MiB$/.exec(await setting(d, 'memory_limit'))?.[1]);
    const locked = async (limits?: { memory: string }) => {
      const d = await openDuck();
      try {
        await d.lock({ files: [], scratch: path.join(dir, 'mem'), ...(limits ? { limits } : {}) });
        await expect(d.conn.run("SET memory_limit = '8GB'")).rejects.toThrow(/lock/i);
        return await mib(d);
      } finally {
        await d.close();
      }
    };
    // The default (1GB) from the instance's creation on: the lock needs not set it.
    expect(await locked()).toBeCloseTo(953.6, 0);
    expect(await locked({ memory: '300MB' })).toBeCloseTo(286.1, 0);
    // The worker's limit changed: the spare made before still ends with the new one once locked.
    process.env.STRATA_SQL_MEMORY_LIMIT = '512MB';
    try {
      for (let i = 0; i < 3; i++) expect(await locked()).toBeCloseTo(488.2, 0);
    } finally {
      delete process.env.STRATA_SQL_MEMORY_LIMIT;
    }
    expect(await locked()).toBeCloseTo(953.6, 0);
  });

  it("retires a task's instance off the path to the next task: closed while the next task's statement runs, or when none comes", async () => {
    const events: string[] = [];
    const first = await openDuck();
    await first.lock({ files: [], scratch: path.join(dir, 'r1') });
    await first.conn.run('SELECT 1');
    first.retire(async () => void events.push('first closed'));
    // Not closed as the task returns …
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);
    // … nor when the next task's instance is opened and locked …
    const second = await openDuck();
    await second.lock({ files: [], scratch: path.join(dir, 'r2') });
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);
    // … but while that task's statement runs on DuckDB's threads.
    const rows = await whileDuckWorks(
      second.conn.runAndReadAll('SELECT sum(i) FROM range(3000000) t(i)').then((r) => {
        events.push('statement done');
        return r.getRows();
      }),
    );
    expect(rows).toEqual([[4499998500000n]]);
    await waitFor(async () => events.includes('first closed'), 10_000);
    expect(events.sort()).toEqual(['first closed', 'statement done']);
    // The closed instance answers nothing more.
    await expect(first.conn.run('SELECT 1')).rejects.toThrow();
    // Alone, a retired instance is closed after RETIRE_IDLE_MS.
    const t0 = Date.now();
    second.retire(async () => void events.push('second closed'));
    await waitFor(async () => events.includes('second closed'), RETIRE_IDLE_MS + 10_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(RETIRE_IDLE_MS - 50);
    await expect(second.conn.run('SELECT 1')).rejects.toThrow();
  });
});
