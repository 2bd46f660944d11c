import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetsService } from '../../client/datasets.js';
import { createKey } from '../../store/keys.js';
import type { RunState } from '../../schemas/run.js';
import { runCli } from '../harness/processes.js';
import { stackApi } from '../harness/api.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let svc: DatasetsService;
beforeAll(async () => {
  stack = await testStack('catalog', { lake: 'file' });
  svc = new DatasetsService(stack.lake!);
});
afterAll(async () => stack?.close());

const run = (s: ReturnType<typeof spec>): Promise<RunState> => stack.withWorker(() => stack.runToEnd(s));

const pipeline = (select: string, checks = '[]') =>
  spec(`
id: catalog_demo
tasks:
  - id: land
    kind: ingest.file
    source: landing/people.jsonl
    format: jsonl
    columns: { id: { type: int, nullable: false }, name: string, born: date }
    output: bronze.people
  - id: clean
    kind: sql
    layer: silver
    needs: [land]
    sql: ${select}
    output: silver.people
    checks: ${checks}
`);

describe('catalog service and CLI on a folder lake', () => {
  it('records versions with schema changes, lineage, preview; vacuum keeps the current version', async () => {
    await stack.store!.putBytes(
      'landing/people.jsonl',
      '{"id": 1, "name": "Ada", "born": "1815-12-10"}\n{"id": "x"}\n{broken\n{"id": 2, "name": "Alan", "born": "1912-06-23"}\n',
    );
    expect((await run(pipeline('SELECT id, name FROM bronze.people'))).status).toBe('success');
    const second = await run(
      pipeline(
        'SELECT CAST(id AS BIGINT) AS id, born FROM bronze.people',
        `[{ freshness: { column: born, max_age: 1d }, severity: warn }, { expect: "id > 0 AND born < DATE '2000-01-01'" }, { row_count: { min_ratio: 0.9, max_ratio: 1.0 } }]`,
      ),
    );
    expect(second.tasks.clean.output!.checks).toEqual({ passed: 2, warned: ['freshness(born)'] });
    expect(second.tasks.land.output).toMatchObject({ rowCount: 2, quarantined: 2, version: 2 });
    const q = await svc.preview(stack.tenant, 'bronze.people_quarantine', 10);
    expect(q.rows.map((r) => r._reason).sort()).toEqual(['id: x is not a valid int', 'line is not valid JSON']);

    const list = await svc.list(stack.tenant);
    expect(list.map((d) => [d.dataset, d.version])).toEqual([
      ['bronze.people', 2],
      ['bronze.people_quarantine', 2],
      ['silver.people', 2],
    ]);
    const got = await svc.get(stack.tenant, 'silver.people');
    expect(got.schema.map((c) => `${c.name}:${c.type}`)).toEqual(['id:BIGINT', 'born:DATE']);
    expect(got.versions[0].schemaChanges).toEqual([
      { column: 'id', change: 'type_changed', from: 'INTEGER', to: 'BIGINT' },
      { column: 'born', change: 'added', to: 'DATE' },
      { column: 'name', change: 'removed', from: 'VARCHAR' },
    ]);
    expect((await svc.lineage(stack.tenant, 'silver.people', 1)).edges).toEqual([
      { from: 'bronze.people', to: 'silver.people' },
    ]);
    expect((await svc.preview(stack.tenant, 'silver.people@1', 1)).rows).toEqual([{ id: 1, name: 'Ada' }]);
    // as of a time: the version current then
    const v1 = got.versions.find((v) => v.version === 1)!;
    expect((await svc.preview(stack.tenant, `silver.people@${v1.promotedAt}`, 1)).version).toBe(1);
    expect((await svc.preview(stack.tenant, `silver.people@${new Date().toISOString()}`, 1)).version).toBe(2);
    await expect(svc.preview(stack.tenant, 'silver.people@2001-01-01T00:00:00Z', 1)).rejects.toMatchObject({
      status: 404,
    });
    expect(got.versions[0].checks.find((c) => c.name === 'freshness(born)')).toMatchObject({
      severity: 'warn',
      passed: false,
      message: expect.stringMatching(/newest born is 1912-06-23T00:00:00.000Z, older than 1d/),
    });
    await expect(svc.get(stack.tenant, 'gold.nothing')).rejects.toMatchObject({ status: 404 });
    await expect(svc.get(stack.tenant, 'Silver.People')).rejects.toMatchObject({ status: 400 });
    await expect(svc.lineage(stack.tenant, 'silver.people', 0)).rejects.toMatchObject({ status: 400 });
    await expect(svc.preview(stack.tenant, 'silver.people', 5000)).rejects.toMatchObject({ status: 400 });
    await expect(svc.preview(stack.tenant, 'silver.people@9', 5)).rejects.toMatchObject({ status: 404 });

    // the CLI, as users run it, against the same metastore and lake
    const env = {
      DATABASE_URL: stack.metastoreUrl!,
      STRATA_LAKE_ROOT: stack.lake!.store.root,
      STRATA_TENANT: stack.tenant,
    };
    const ls = await runCli(['datasets', 'list'], env);
    expect(ls.code, ls.out).toBe(0);
    expect(ls.out).toMatch(/silver\.people\s+2\s+2\s+/);
    const hist = await runCli(['datasets', 'history', 'silver.people'], env);
    expect(hist.out).toMatch(/2\*\s+committed\s+2 .* ~id \+born -name/);
    const show = await runCli(['datasets', 'show', 'silver.people', '--preview', '2', '--lineage', '2'], env);
    expect(show.out).toContain('bronze.people -> silver.people');
    expect(show.out).toMatch(/id\s+born\n1\s+1815-12-10\n2\s+1912-06-23/);
    const bad = await runCli(['datasets', 'show', 'silver.nope'], env);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('no dataset silver.nope');

    const dry = await runCli(['datasets', 'vacuum', '--older-than', '0', '--dry-run'], env);
    expect(dry.out).toContain('would delete 3 version(s)');
    const vac = await svc.vacuum(stack.tenant, { olderThanDays: 0 });
    expect(vac.versions.map((v) => `${v.dataset}@${v.version}`).sort()).toEqual([
      'bronze.people@1',
      'bronze.people_quarantine@1',
      'silver.people@1',
    ]);
    expect((await stack.store!.list('silver/default/people/data/')).length).toBe(1);
    await expect(svc.preview(stack.tenant, 'silver.people@1', 1)).rejects.toMatchObject({ status: 410 });
    expect((await svc.preview(stack.tenant, 'silver.people', 5)).rows.length).toBe(2);
    expect((await svc.vacuum(stack.tenant, { olderThanDays: 0 })).versions).toEqual([]);
  });

  it('strata lake-layout moves a lake written before tenant prefixes: catalogued files to their tenant, the rest to --tenant; nothing lost, safe to run twice', async () => {
    const root = stack.lake!.store;
    // Make the layout of old: this tenant's objects moved up to the lake's root, plus a landing file nobody catalogued.
    const mine = await stack.store!.list('');
    expect(mine.length).toBeGreaterThan(2);
    for (const o of mine) {
      await root.copy(`${stack.tenant}/${o.key}`, o.key);
      await root.delete([`${stack.tenant}/${o.key}`]);
    }
    await root.putBytes('landing/orphan.csv', 'x\n1\n');
    await expect(svc.preview(stack.tenant, 'silver.people', 5)).rejects.toThrow();
    const env = { DATABASE_URL: stack.metastoreUrl!, STRATA_LAKE_ROOT: root.root, STRATA_TENANT: stack.tenant };
    const dry = await runCli(['lake-layout', '--tenant', 'legacy', '--dry-run'], env);
    expect(dry.code, dry.out).toBe(0);
    expect(dry.out).toContain(`would move ${mine.length + 1} object(s)`);
    expect((await root.list('')).some((o) => o.key === 'landing/orphan.csv')).toBe(true);
    const moved = await runCli(['lake-layout', '--tenant', 'legacy'], env);
    expect(moved.code, moved.out).toBe(0);
    // Catalogued files go to the tenant whose versions read them; landing files no version names, to --tenant.
    const catalogued = mine
      .filter((o) => !o.key.startsWith('landing/'))
      .map((o) => o.key)
      .sort();
    expect(moved.out).toMatch(
      new RegExp(
        `moved ${mine.length + 1} object\\(s\\), .* \\(${stack.tenant}: ${catalogued.length}, legacy: ${mine.length + 1 - catalogued.length}\\)`,
      ),
    );
    expect((await stack.store!.list('')).map((o) => o.key).sort()).toEqual(catalogued);
    expect((await root.getBytes('legacy/landing/orphan.csv')).toString()).toBe('x\n1\n');
    expect(
      (await root.list('')).every((o) => o.key.startsWith(`${stack.tenant}/`) || o.key.startsWith('legacy/')),
    ).toBe(true);
    expect((await svc.preview(stack.tenant, 'silver.people', 5)).rows.length).toBe(2);
    const again = await runCli(['lake-layout', '--tenant', 'legacy'], env);
    expect(again.out).toMatch(/moved 0 object\(s\)/);
  });

  it('the run page links each task’s dataset to its preview, which answers through the query path (sandbox, one SELECT, its tenant only)', async () => {
    const st = await run(
      spec(`
id: catalog_page
tasks:
  - { id: make, kind: sql, layer: silver, sql: "SELECT * FROM (VALUES (1, DATE '2026-01-02'), (2, DATE '2026-01-03')) t(id, day)", output: silver.page_people }
  - { id: after, kind: noop, needs: [make] }
`),
    );
    expect(st.status).toBe('success');
    const { app } = await stackApi(stack);
    try {
      const mine = { authorization: `Bearer ${(await createKey(stack.db, stack.tenant, 'viewer')).secret}` };
      const theirs = { authorization: `Bearer ${(await createKey(stack.db, 'catalog_other', 'viewer')).secret}` };
      const page = await app.inject({ method: 'GET', url: `/runs/${encodeURIComponent(st.runId)}`, headers: mine });
      expect(page.statusCode).toBe(200);
      const links = [...page.body.matchAll(/<a class="preview" href="([^"]+)">([^<]+)<\/a> \((\d+) rows\)/g)];
      expect(links.map((m) => [m[1], m[2], m[3]])).toEqual([
        ['/api/v1/datasets/silver.page_people%401/preview', 'silver.page_people@1', '2'],
      ]);
      const preview = await app.inject({ method: 'GET', url: links[0][1], headers: mine });
      expect(preview.statusCode, preview.body).toBe(200);
      expect(preview.json()).toEqual({
        dataset: 'silver.page_people',
        version: 1,
        columns: ['id', 'day'],
        rows: [
          { id: 1, day: '2026-01-02' },
          { id: 2, day: '2026-01-03' },
        ],
      });
      // Another tenant's key finds neither the run nor the dataset.
      expect(
        (await app.inject({ method: 'GET', url: `/runs/${encodeURIComponent(st.runId)}`, headers: theirs })).statusCode,
      ).toBe(404);
      expect((await app.inject({ method: 'GET', url: links[0][1], headers: theirs })).statusCode).toBe(404);
    } finally {
      await app.close();
    }
  });
});
